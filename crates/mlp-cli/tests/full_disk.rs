//! A full disk: writes fail with one line naming the file, and leave no partial file. Runs
//! where a small tmpfs can be mounted (as root); reports itself skipped elsewhere.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted at a fresh folder, unmounted when dropped (the folder holding
/// the mount point goes after the unmount).
struct SmallDisk(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .output()
            .ok()?;
        ok.status.success().then_some(SmallDisk(point, dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Gives the disk room again (64 MB), as freeing space would.
    fn grow(&self) {
        let remount = Command::new("mount")
            .args(["-o", "remount,size=64m"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(remount.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .flat_map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        vec![e.path()]
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn writes_to_a_full_disk_fail_cleanly() {
    let Some(disk) = SmallDisk::mount("128k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/fmnist-mlp-784-128-10.msgpack"
    );

    // An export of ~400 KB into 128 KB.
    let out = disk.path().join("w.npz");
    let o = mlp(&[
        "export",
        "--model",
        model,
        "--format",
        "npz",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("w.npz: cannot write: No space left on device"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        files_in(disk.path()).is_empty(),
        "left behind: {:?}",
        files_in(disk.path())
    );

    // Training whose checkpoint (~500 KB at hidden 256 over 784 pixels) cannot fit.
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let run = disk.path().join("run");
    let o = mlp(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--hidden",
        "4096",
        "--epochs",
        "3",
        "--val-size",
        "20",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("No space left on device") && err.lines().count() == 1,
        "{err}"
    );
    for name in files_in(disk.path()) {
        assert!(!name.contains(".tmp-"), "a temporary file was left: {name}");
        // Whatever was completed is whole: config.json parses, metrics lines are JSON.
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(
                &std::fs::read(disk.path().join(&name)).unwrap(),
            )
            .unwrap();
        }
    }
    assert!(!run.join("model.msgpack").exists());
}

/// Regression: a checkpoint written in the background that failed was reported only when
/// training ended. On a disk with room for one checkpoint but not for the next (each is
/// written beside the last, then renamed over it), the run must stop within an epoch with
/// the one-line error, keep the last good checkpoint, and resume from it, once there is
/// space, to the model an uninterrupted run trains.
#[test]
fn a_failed_background_checkpoint_stops_the_run_and_the_last_good_one_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let train = |out: &Path, epochs: &str| {
        mlp(&[
            "train",
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-unverified",
            "--hidden",
            "2048",
            "--epochs",
            epochs,
            "--val-size",
            "20",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    // The uninterrupted run, and the size of a checkpoint.
    let whole = tmp.path().join("whole");
    let o = train(&whole, "50");
    assert!(o.status.success(), "{}", stderr(&o));
    let checkpoint_size = std::fs::metadata(whole.join("checkpoint.msgpack"))
        .unwrap()
        .len();

    let size = format!("{}k", checkpoint_size * 3 / 2 / 1024);
    let Some(disk) = SmallDisk::mount(&size) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let run = disk.path().join("run");
    let o = train(&run, "50");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("checkpoint.msgpack: cannot write: No space left on device")
            && err.lines().count() == 1,
        "{err}"
    );
    let epochs_logged = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    // The second checkpoint fails; the run stops at the mini-batch after the writer says
    // so (the epochs here take milliseconds, so a few may end first; never all 50).
    assert!(
        epochs_logged < 50,
        "the run went on to its last epoch after its checkpoint failed"
    );
    assert!(!run.join("model.msgpack").exists());
    for name in files_in(disk.path()) {
        assert!(!name.contains(".tmp-"), "a temporary file was left: {name}");
    }

    // Space returns: the run continues from its last good checkpoint.
    disk.grow();
    let o = mlp(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(run.join("model.msgpack")).unwrap()
            == std::fs::read(whole.join("model.msgpack")).unwrap(),
        "the resumed run trained another model than the uninterrupted one"
    );
}

/// A search on a disk that fills up: it stops with one line (the trial's checkpoint that
/// could not be written), and once there is space the same command continues it to the
/// results of a search that never ran out.
#[test]
fn a_search_on_a_full_disk_stops_in_one_line_and_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let search = |out: &Path| {
        mlp(&[
            "search",
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-unverified",
            "--lr",
            "0.05,0.1",
            "--hidden",
            "2048",
            "--l2",
            "0",
            "--epochs",
            "30",
            "--val-size",
            "20",
            "--jobs",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let whole = tmp.path().join("whole");
    let o = search(&whole);
    assert!(o.status.success(), "{}", stderr(&o));
    // A trial's checkpoint is about the size of two of its models.
    let model_size = std::fs::metadata(whole.join("best/model.msgpack"))
        .unwrap()
        .len();

    let Some(disk) = SmallDisk::mount(&format!("{}k", model_size * 3 / 1024)) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = disk.path().join("search");
    let o = search(&dir);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("checkpoint.msgpack: cannot write: No space left on device")
            && err.lines().count() == 1,
        "{err}"
    );
    for name in files_in(disk.path()) {
        assert!(!name.contains(".tmp-"), "a temporary file was left: {name}");
    }

    disk.grow();
    let o = search(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(search_results(&dir), search_results(&whole));
    assert!(
        std::fs::read(dir.join("best/model.msgpack")).unwrap()
            == std::fs::read(whole.join("best/model.msgpack")).unwrap()
    );
}
