//! The results of `mlp search`: the ranked table (results.json, results.csv, printed), the
//! best trial's files copied to best/, and the merging of sharded searches' folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mlp_train::{write_atomic, write_json_atomic};

use crate::search_cmd::{TrialResult, read_result};

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

    println!(
        "{:>4}  {:>8}  {:>6}  {:>8}  {:<10}  {:>7}  {:>5}  status",
        "rank", "lr", "hidden", "l2", "activation", "val_acc", "epoch"
    );
    for (rank, r) in rows.iter().enumerate() {
        let acc = r.best_val_acc.map_or("-".to_owned(), |a| format!("{a:.4}"));
        let epoch = r.best_epoch.map_or("-".to_owned(), |e| e.to_string());
        println!(
            "{:>4}  {:>8}  {:>6}  {:>8}  {:<10}  {acc:>7}  {epoch:>5}  {}",
            rank + 1,
            r.lr,
            r.hidden,
            r.l2,
            r.activation.name(),
            r.status
        );
    }
    match results.iter().find(|(r, _)| r.status == "ok") {
        Some((best, from)) => {
            let best_dir = dir.join("best");
            std::fs::create_dir_all(&best_dir)
                .with_context(|| format!("{}: cannot create", best_dir.display()))?;
            for name in ["model.msgpack", "history.json", "config.json"] {
                let bytes = std::fs::read(from.join(name))
                    .with_context(|| format!("{}: cannot read", from.join(name).display()))?;
                write_atomic(&best_dir.join(name), &bytes)?;
            }
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

fn to_csv(rows: &[&TrialResult]) -> String {
    let mut csv = String::from(
        "rank,id,lr,hidden,l2,activation,batch_size,epochs,lr_decay,seed,status,best_val_acc,best_epoch,final_train_loss,final_val_loss,seconds\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (rank, r) in rows.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}\n",
            rank + 1,
            r.id,
            r.lr,
            r.hidden,
            r.l2,
            r.activation.name(),
            r.batch_size,
            r.epochs,
            r.lr_decay,
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
