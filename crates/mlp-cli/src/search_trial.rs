//! One trial of `mlp search`: its folder, its row of the results table, and training it,
//! from the start or from its checkpoint.
//!
//! ```text
//! DIR/trials/<id>/   checkpoint.msgpack while the trial trains (every epoch, as `mlp train`
//!                    writes it: a rerun continues the trial from it), then model.msgpack,
//!                    history.json, config.json and result.json (last: a trial with
//!                    result.json is finished, and a rerun skips it)
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use fmnist_data::{CLASS_NAMES, Dataset};
use mlp_core::Activation;
use mlp_train::{
    Hooks, RunEnd, Start, TrainConfig, TrainError, load_checkpoint, save_checkpoint, save_model,
    write_json_atomic,
};
use serde::{Deserialize, Serialize};

use crate::data::images;
use crate::run_dir::{CheckpointWriter, RunDir};
use crate::search_cmd::trial_id;
use crate::tensorboard::EventWriter;

/// One row of the results table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub id: String,
    pub lr: f32,
    pub hidden: usize,
    pub l2: f32,
    pub activation: Activation,
    pub batch_size: usize,
    pub epochs: usize,
    pub lr_decay: f32,
    /// The settings beyond the seed's that differ from their defaults (see
    /// `search_cmd::recipe_tags`); empty for the seed's recipe and in older results.
    #[serde(default)]
    pub recipe: String,
    pub seed: u64,
    /// Training examples held out for validation.
    pub val_size: usize,
    /// "ok", or "diverged" (then the accuracy fields are empty).
    pub status: String,
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub seconds: f64,
    /// What went wrong, for a trial that did not finish normally.
    pub detail: Option<String>,
}

/// The folder of the trial `config` in the search folder `dir`.
pub(crate) fn trial_dir(dir: &Path, config: &TrainConfig) -> PathBuf {
    dir.join("trials").join(trial_id(&TrainConfig {
        threads: 0,
        simd: None,
        ..config.clone()
    }))
}

/// The trial's result, if it finished.
pub(crate) fn read_result(trial_dir: &Path) -> Option<TrialResult> {
    let text = std::fs::read_to_string(trial_dir.join("result.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Trains one trial, or continues it from its checkpoint, checkpointing every epoch; then
/// writes its folder, result.json last. `None` if `stop` said so before it finished (its
/// state is then in its checkpoint).
pub(crate) fn run_trial(
    dir: &Path,
    config: &TrainConfig,
    train_set: &Dataset,
    val_set: &Dataset,
    stop: &(dyn Fn() -> bool + Sync),
    tensorboard: bool,
) -> anyhow::Result<Option<TrialResult>> {
    let tdir = trial_dir(dir, config);
    let started = Instant::now();
    let checked = config.validate()?;
    let path = tdir.join("checkpoint.msgpack");
    // What a killed search was writing (never renamed into place) is of no use.
    RunDir { path: tdir.clone() }.remove_stale_temporaries();
    let (start, seconds_before) = if path.exists() {
        let mut state = load_checkpoint(&path)?;
        let settings = |c: &TrainConfig| TrainConfig {
            threads: 0,
            simd: None,
            ..c.clone()
        };
        if settings(&state.config) != settings(config) {
            bail!(
                "{}: a checkpoint of another search (seed or settings differ); use another --out",
                path.display()
            );
        }
        // Results depend on neither.
        (state.config.threads, state.config.simd) = (config.threads, config.simd);
        let before: f64 = state.history.epoch_seconds.iter().sum();
        (Start::Resume(Box::new(state)), before)
    } else {
        (Start::Fresh(checked), 0.0)
    };
    std::fs::create_dir_all(&tdir).with_context(|| format!("{}: cannot create", tdir.display()))?;
    // A continued trial goes on writing the events it wrote before, cut back to its
    // checkpoint first.
    let tensorboard = tensorboard || tdir.join(crate::tensorboard::FILE_NAME).exists();
    let mut events = match &start {
        Start::Resume(state) if tensorboard => Some(EventWriter::open(&tdir, state.epochs_done)?),
        _ => None,
    };
    let checkpoints = CheckpointWriter::new(path.clone());
    let mut events_error = None;
    let events_failed = std::sync::atomic::AtomicBool::new(false);
    let hooks = Hooks {
        on_epoch: Box::new(|record, state| {
            checkpoints.save(state);
            if tensorboard && events_error.is_none() {
                let written = match &mut events {
                    Some(events) => events,
                    None => match EventWriter::open(&tdir, record.epoch - 1) {
                        Ok(opened) => events.insert(opened),
                        Err(e) => {
                            events_error = Some(e);
                            events_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                    },
                }
                .epoch(record, &state.model);
                if let Err(e) = written {
                    events_error = Some(e);
                    events_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }),
        stop: Box::new(|| {
            stop()
                || checkpoints.failed()
                || events_failed.load(std::sync::atomic::Ordering::SeqCst)
        }),
        ..Hooks::default()
    };
    let end = mlp_train::run(start, &images(train_set), &images(val_set), hooks);
    checkpoints.finish()?;
    if let Some(e) = events_error {
        return Err(e);
    }
    let outcome = match end {
        Ok(RunEnd::Interrupted(state)) => {
            save_checkpoint(&path, &state)?;
            return Ok(None);
        }
        Ok(RunEnd::Finished(outcome)) => Ok(*outcome),
        Err(e) => Err(e),
    };
    let mut result = TrialResult {
        id: trial_id(&TrainConfig {
            threads: 0,
            simd: None,
            ..config.clone()
        }),
        lr: config.lr,
        hidden: config.hidden,
        l2: config.l2,
        activation: config.activation,
        batch_size: config.batch_size,
        epochs: config.epochs,
        lr_decay: config.lr_decay,
        recipe: crate::search_cmd::recipe_tags(config),
        seed: config.seed,
        val_size: val_set.len(),
        status: "ok".to_owned(),
        best_val_acc: None,
        best_epoch: None,
        final_train_loss: None,
        final_val_loss: None,
        seconds: 0.0,
        detail: None,
    };
    match outcome {
        Ok(o) => {
            let class_names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
            save_model(&tdir.join("model.msgpack"), &o.best_model, &class_names)?;
            write_json_atomic(&tdir.join("history.json"), &o.history)?;
            write_json_atomic(
                &tdir.join("config.json"),
                &TrainConfig {
                    threads: 0,
                    simd: None,
                    ..config.clone()
                },
            )?;
            result.best_val_acc = o.best_val_acc;
            result.best_epoch = Some(o.best_epoch);
            result.final_train_loss = o.history.train_loss.last().copied();
            result.final_val_loss = o.history.val_loss.last().copied();
        }
        Err(e @ (TrainError::Diverged { .. } | TrainError::DivergedWeights { .. })) => {
            result.status = "diverged".to_owned();
            result.detail = Some(e.to_string());
        }
        Err(e) => return Err(e.into()),
    }
    result.seconds = seconds_before + started.elapsed().as_secs_f64();
    write_json_atomic(&tdir.join("result.json"), &result)?;
    // Finished: its checkpoint has served (a rerun skips the trial for its result.json).
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("{}: cannot remove", path.display()));
        }
        _ => {}
    }
    Ok(Some(result))
}
