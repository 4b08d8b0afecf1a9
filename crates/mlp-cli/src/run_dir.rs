//! The run folder: what `mlp train` writes, and reads back to resume.
//!
//! ```text
//! config.json        the settings and data of the run (written at the first epoch, final at the end)
//! metrics.jsonl      one JSON object per epoch, appended as each ends
//! checkpoint.msgpack the state to continue from (every --checkpoint-every epochs, and on Ctrl-C)
//! model.msgpack      the best-validation parameters (at the end)
//! history.json       every epoch's series (at the end)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mlp_train::{EpochRecord, TrainConfig, write_json_atomic};
use serde::{Deserialize, Serialize};

/// What config.json records: the hyperparameters plus where the data came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub train: TrainConfig,
    pub shape: String,
    pub data_dir: PathBuf,
    pub data_verified: bool,
    pub train_examples: usize,
    pub val_size: usize,
    /// Filled in when the run finishes.
    pub best_epoch: Option<usize>,
    /// Filled in when the run finishes.
    pub best_val_acc: Option<f64>,
    pub mlp_version: String,
}

/// A run folder, created on first write.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn ensure(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("{}: cannot create the run folder", self.path.display()))
    }

    pub fn write_config(&self, config: &RunConfig) -> anyhow::Result<()> {
        self.ensure()?;
        Ok(write_json_atomic(&self.file("config.json"), config)?)
    }

    pub fn read_config(&self) -> anyhow::Result<RunConfig> {
        let path = self.file("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read the run's settings", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not the config.json of an mlp run", path.display()))
    }

    /// Appends one epoch to metrics.jsonl.
    pub fn append_metrics(&self, record: &EpochRecord) -> anyhow::Result<()> {
        self.ensure()?;
        let path = self.file("metrics.jsonl");
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        // One write per line: readers following the file never see half a record.
        file.write_all(&line)
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Removes temporary files that a killed process left behind (`.NAME.tmp-…`, see
    /// `mlp_train::write_atomic`); they were never renamed into place, so nothing needs them.
    pub fn remove_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Rewrites metrics.jsonl from a saved history: a resumed run continues from its
    /// checkpoint, and the file must hold exactly the epochs before it, whatever was
    /// appended (or lost) after the checkpoint was written.
    pub fn rewrite_metrics(&self, history: &mlp_train::History) -> anyhow::Result<()> {
        let mut text = String::new();
        for i in 0..history.len() {
            let record = history
                .record(i)
                .context("a checkpoint's history is whole")?;
            text.push_str(&serde_json::to_string(&record)?);
            text.push('\n');
        }
        self.ensure()?;
        Ok(mlp_train::write_atomic(
            &self.file("metrics.jsonl"),
            text.as_bytes(),
        )?)
    }
}

/// Refuses to start a new run in a folder that holds one: its metrics, checkpoint and model
/// would mix with the new run's.
pub fn refuse_existing_run(dir: &Path) -> anyhow::Result<()> {
    let files = [
        "config.json",
        "checkpoint.msgpack",
        "metrics.jsonl",
        "model.msgpack",
        "history.json",
    ];
    if let Some(found) = files.iter().find(|f| dir.join(f).exists()) {
        anyhow::bail!(
            "{}: already holds a run ({found}); choose another --out, or continue it with `mlp train --resume {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Creates a new `runs/<date-time>/` (with a numeric suffix if that exists already) and
/// returns it. Creating it, rather than checking that it does not exist, is what keeps two
/// runs started in the same second apart.
pub fn claim_fresh_run_dir() -> anyhow::Result<PathBuf> {
    let runs = Path::new("runs");
    std::fs::create_dir_all(runs).with_context(|| format!("{}: cannot create", runs.display()))?;
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    for n in 1.. {
        let dir = if n == 1 {
            runs.join(&stamp)
        } else {
            runs.join(format!("{stamp}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: cannot create", dir.display())),
        }
    }
    unreachable!("some suffix is free")
}

/// Writes checkpoints on a background thread, so that training does not wait for the disk
/// (a checkpoint is about 1 MB and its fsync can take longer than an epoch). When epochs end
/// faster than the disk keeps up, only the newest waiting state is written. A write that
/// fails stops the writer and raises [`CheckpointWriter::failed`], which the run polls to
/// stop at once; the file on disk is then still the last good checkpoint (writes are
/// atomic).
pub struct CheckpointWriter {
    tx: Option<std::sync::mpsc::Sender<mlp_train::TrainState>>,
    worker: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CheckpointWriter {
    pub fn new(path: PathBuf) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<mlp_train::TrainState>();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = failed.clone();
        let worker = std::thread::spawn(move || {
            while let Ok(mut state) = rx.recv() {
                while let Ok(newer) = rx.try_recv() {
                    state = newer;
                }
                if let Err(e) = mlp_train::save_checkpoint(&path, &state) {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(e.into());
                }
            }
            Ok(())
        });
        Self {
            tx: Some(tx),
            worker: Some(worker),
            failed,
        }
    }

    /// Whether a write has failed (its error comes from [`CheckpointWriter::finish`]).
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Queues `state` to be written.
    pub fn save(&self, state: &mlp_train::TrainState) {
        if let Some(tx) = &self.tx {
            // A send fails only if the writer stopped on an error, which `finish` reports.
            let _ = tx.send(state.clone());
        }
    }

    /// Waits for every queued checkpoint to be on disk; returns the first write error.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.tx.take());
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the checkpoint writer panicked"),
            None => Ok(()),
        }
    }
}
