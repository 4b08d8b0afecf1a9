//! The results of `mlp search`: the ranked table (results.json, results.csv, printed), the
//! best trial's files copied to best/, and the merging of sharded searches' folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mlp_train::{write_atomic, write_json_atomic};

use crate::search_trial::{TrialResult, read_result};

/// Ranks the rows (best validation accuracy first, diverged last, ties by name), writes
/// results.json, results.csv and best/, and prints the table.
pub(crate) fn write_summary(
    dir: &Path,
    mut results: Vec<(TrialResult, PathBuf)>,
) -> anyhow::Result<()> {
    results.sort_by(|(a, _), (b, _)| {
        let key = |r: &TrialResult| r.best_val_acc.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then_with(|| a.id.cmp(&b.id))
    });
    let rows: Vec<&TrialResult> = results.iter().map(|(r, _)| r).collect();
    write_json_atomic(&dir.join("results.json"), &rows)?;
    write_atomic(&dir.join("results.csv"), to_csv(&rows).as_bytes())?;

    // The recipe column only when some trial has settings beyond the seed's.
    let recipes = rows.iter().any(|r| !r.recipe.is_empty());
    let recipe = |r: &str| {
        if recipes {
            format!("  {r}")
        } else {
            String::new()
        }
    };
    println!(
        "{:>4}  {:>8}  {:>6}  {:>8}  {:<10}  {:>7}  {:>5}  status{}",
        "rank",
        "lr",
        "hidden",
        "l2",
        "activation",
        "val_acc",
        "epoch",
        recipe("recipe")
    );
    for (rank, r) in rows.iter().enumerate() {
        let acc = r.best_val_acc.map_or("-".to_owned(), |a| format!("{a:.4}"));
        let epoch = r.best_epoch.map_or("-".to_owned(), |e| e.to_string());
        println!(
            "{:>4}  {:>8}  {:>6}  {:>8}  {:<10}  {acc:>7}  {epoch:>5}  {}{}",
            rank + 1,
            r.lr,
            r.hidden,
            r.l2,
            r.activation.name(),
            r.status,
            recipe(&r.recipe)
        );
    }
    match results.iter().find(|(r, _)| r.status == "ok") {
        Some((best, from)) => {
            let best_dir = dir.join("best");
            let mut files = Vec::new();
            for name in ["model.msgpack", "history.json", "config.json"] {
                let bytes = std::fs::read(from.join(name))
                    .with_context(|| format!("{}: cannot read", from.join(name).display()))?;
                files.push((name, bytes));
            }
            replace_dir(&best_dir, &files)?;
            println!(
                "best: {} (validation accuracy {:.4}); next: mlp test --model {}",
                best.id,
                best.best_val_acc.unwrap_or(f64::NAN),
                best_dir.join("model.msgpack").display()
            );
        }
        None => println!("no trial finished without diverging; try smaller learning rates"),
    }
    Ok(())
}

/// Makes `target` a folder holding exactly `files`, as a whole: they are written into a
/// sibling folder, which then takes `target`'s place in one rename (on Linux an exchange of
/// the two, so that `target` never stops existing; elsewhere the old folder is moved aside
/// first, and a kill between the two renames leaves it aside, where the next call puts it
/// back). A kill at any moment leaves `target` as it was or as it is meant to be (or, in
/// that window elsewhere, aside), never one trial's model beside another's history; what a
/// killed call left beside it is removed by the next.
fn replace_dir(target: &Path, files: &[(&str, Vec<u8>)]) -> anyhow::Result<()> {
    replace_dir_with(target, files, exchange)
}

/// [`replace_dir`] with the exchange of two paths given (tests take the fallback with one
/// that always fails).
fn replace_dir_with(
    target: &Path,
    files: &[(&str, Vec<u8>)],
    exchange: fn(&Path, &Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .context("not a folder path")?
        .to_string_lossy()
        .into_owned();
    let (fresh, old) = (
        parent.join(format!(".{name}.new")),
        parent.join(format!(".{name}.old")),
    );
    let renamed = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .with_context(|| format!("{}: cannot rename to {}", from.display(), to.display()))
    };
    // Killed between moving the old folder aside and renaming the new one in: put it back.
    if !target.exists() && old.exists() {
        renamed(&old, target)?;
    }
    for stale in [&fresh, &old] {
        remove_if_present(stale)?;
    }
    std::fs::create_dir(&fresh).with_context(|| format!("{}: cannot create", fresh.display()))?;
    for (file, bytes) in files {
        write_atomic(&fresh.join(file), bytes)?;
    }
    if !target.exists() {
        renamed(&fresh, target)?;
    } else if exchange(&fresh, target).is_err() {
        renamed(target, &old)?;
        renamed(&fresh, target)?;
        remove_if_present(&old)?;
    } else {
        // `fresh` now holds the old files.
        remove_if_present(&fresh)?;
    }
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the folder `path` and what it holds, if it exists.
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove", path.display()))
        }
        _ => Ok(()),
    }
}

/// Swaps two paths in one step (Linux's `renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call; AT_FDCWD makes them
    // relative to the working directory, as `std::fs::rename` does.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// No atomic exchange here: the caller moves the old folder aside instead.
#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

fn to_csv(rows: &[&TrialResult]) -> String {
    let mut csv = String::from(
        "rank,id,lr,hidden,l2,activation,batch_size,epochs,lr_decay,recipe,seed,status,best_val_acc,best_epoch,final_train_loss,final_val_loss,seconds\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (rank, r) in rows.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}\n",
            rank + 1,
            r.id,
            r.lr,
            r.hidden,
            r.l2,
            r.activation.name(),
            r.batch_size,
            r.epochs,
            r.lr_decay,
            r.recipe,
            r.seed,
            r.status,
            opt(r.best_val_acc),
            r.best_epoch.map_or(String::new(), |e| e.to_string()),
            opt(r.final_train_loss),
            opt(r.final_val_loss),
            r.seconds
        ));
    }
    csv
}

/// Combines the trials of several search folders (the slices of a sharded search).
pub(crate) fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut by_id: BTreeMap<String, (TrialResult, PathBuf)> = BTreeMap::new();
    for dir in dirs {
        let trials = dir.join("trials");
        let entries = std::fs::read_dir(&trials)
            .with_context(|| format!("{}: not a search folder (no trials/)", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("{}: cannot list", trials.display()))?
                .path();
            if let Some(result) = read_result(&path) {
                by_id.entry(result.id.clone()).or_insert((result, path));
            }
        }
    }
    if by_id.is_empty() {
        bail!(
            "no finished trials in {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_summary(out, by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn replace_dir_swaps_the_whole_folder_and_cleans_what_a_kill_left() {
        fn no_exchange(_: &Path, _: &Path) -> std::io::Result<()> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        for exchange in [exchange, no_exchange] {
            let tmp = tempfile::tempdir().unwrap();
            let best = tmp.path().join("best");
            let replace = |files: &[(&str, Vec<u8>)]| replace_dir_with(&best, files, exchange);
            replace(&[("a", b"1".to_vec()), ("b", b"2".to_vec())]).unwrap();
            assert_eq!(
                listing(&best),
                [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
            );
            // What a call killed half-way leaves beside the folder.
            std::fs::create_dir(tmp.path().join(".best.new")).unwrap();
            std::fs::write(tmp.path().join(".best.new/a"), b"half").unwrap();
            replace(&[("a", b"3".to_vec())]).unwrap();
            assert_eq!(
                listing(&best),
                [("a".into(), b"3".to_vec())],
                "b is gone too"
            );
            // Killed between the fallback's two renames: the old folder aside, none in place.
            // The next call puts it back first, so that it is there even if that call fails.
            std::fs::rename(&best, tmp.path().join(".best.old")).unwrap();
            std::fs::create_dir(tmp.path().join(".best.new")).unwrap();
            assert!(replace(&[("no/such/folder", b"x".to_vec())]).is_err());
            assert_eq!(listing(&best), [("a".into(), b"3".to_vec())], "put back");
            replace(&[("a", b"4".to_vec())]).unwrap();
            assert_eq!(listing(&best), [("a".into(), b"4".to_vec())]);
            let names: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["best"], "only best/ is left");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn exchange_swaps_two_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for (dir, text) in [(&a, "from a"), (&b, "from b")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("f"), text).unwrap();
        }
        match exchange(&a, &b) {
            Ok(()) => {
                assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "from b");
                assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "from a");
            }
            // Some file systems (older overlayfs) lack the exchange; replace_dir then moves
            // the old folder aside, as elsewhere.
            Err(e) => eprintln!("skipped: no RENAME_EXCHANGE here ({e})"),
        }
    }
}
