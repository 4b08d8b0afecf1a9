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
