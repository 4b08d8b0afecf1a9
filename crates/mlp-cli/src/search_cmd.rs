//! `mlp search`: every combination of a grid of hyperparameters, trained in parallel, ranked
//! by validation accuracy (never by test accuracy).
//!
//! ```text
//! DIR/trials/<id>/   checkpoint.msgpack while the trial trains (every epoch, as `mlp train`
//!                    writes it: a rerun continues the trial from it), then model.msgpack,
//!                    history.json, config.json and result.json (last: a trial with
//!                    result.json is finished, and a rerun skips it)
//! DIR/results.json   every trial's row, best first;  DIR/results.csv the same as CSV
//! DIR/best/          model.msgpack, history.json, config.json of the best trial
//! ```
//! A trial's seed comes from the search seed and the trial's own settings, and a trial trains
//! the same on any number of threads, so results do not depend on `--jobs` or on `--shard`;
//! and a trial continued from its checkpoint trains the model it would have without the
//! interruption, so a search killed and rerun (or stopped with Ctrl-C, which checkpoints the
//! running trials) ends with the results of one never stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use fmnist_data::{CLASS_NAMES, Dataset, Split};
use indicatif::{ProgressBar, ProgressStyle};
use mlp_core::Activation;
use mlp_train::{
    ConfigError, Hooks, RunEnd, Start, TrainConfig, TrainError, load_checkpoint, save_checkpoint,
    save_model, write_json_atomic,
};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;

use crate::cli::{SearchArgs, SearchCommand};
use crate::data::{self, images};
use crate::run_dir::CheckpointWriter;
use crate::search_results::{merge, write_summary};

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

pub fn run_search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    if let Some(SearchCommand::Merge { dirs, out }) = &args.command {
        merge(dirs, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args
        .out
        .clone()
        .expect("clap requires --out without a subcommand");
    let flag = |e: ConfigError| anyhow::anyhow!("--{}", e.to_string().replace('_', "-"));
    let mut trials = grid(&args).map_err(flag)?;
    for t in &trials {
        t.validate().map_err(flag)?;
    }
    let jobs = args
        .jobs
        .map(|j| mlp_train::checked_whole("jobs", j.into(), 1, 1024))
        .transpose()
        .map_err(flag)?;
    if let Some((k, n)) = args.shard {
        trials = trials
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, t)| t)
            .collect();
    }

    let all = data::load(&args.data, Split::Train)?;
    let val_size = crate::train_cmd::val_size(args.val_size, all.len())?;
    let (train_set, val_set) = all.split_last(val_size);

    // A finished trial from another search (another seed or validation split) in this folder
    // would pass for one of ours: refuse the folder rather than mix the two.
    for t in &trials {
        if let Some(r) = read_result(&trial_dir(&dir, t))
            && (r.seed != t.seed || r.val_size != val_set.len())
        {
            bail!(
                "{}: holds trials of another search (seed or --val-size differ); use another --out",
                dir.display()
            );
        }
    }
    let mut pending: Vec<&TrainConfig> = trials
        .iter()
        .filter(|t| read_result(&trial_dir(&dir, t)).is_none())
        .collect();
    // The longest trials first, so that the workers finish together instead of one training
    // the last big trial alone. Hidden size × epochs is a rough estimate of a trial's time:
    // the batch size changes the number of steps more than the work of an epoch. The order
    // changes no result: each trial's seed comes from its settings.
    pending.sort_by_key(|t| std::cmp::Reverse(t.hidden.saturating_mul(t.epochs)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = jobs.unwrap_or(cores).clamp(1, pending.len().max(1));
    if !args.quiet {
        let continued = pending
            .iter()
            .filter(|t| trial_dir(&dir, t).join("checkpoint.msgpack").exists())
            .count();
        println!(
            "{} trials in the grid{}, {} already finished, {} to run ({continued} continued from a checkpoint) on {jobs} worker(s)",
            trials.len(),
            args.shard
                .map_or(String::new(), |(k, n)| format!(" slice {k}/{n}")),
            trials.len() - pending.len(),
            pending.len()
        );
    }
    // Ctrl-C stops every running trial at its next mini-batch, checkpointed (a second one
    // exits at once).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(crate::train_cmd::INTERRUPTED.into());
        }
    });
    // With several trials at once each trains on one thread; alone, a trial takes both.
    let threads = if jobs > 1 { 1 } else { 0 };
    let simd = Some(crate::simd_level()?);
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(pending.len() as u64);
        let style = ProgressStyle::with_template("trials [{bar:30}] {pos}/{len} eta {eta}")
            .expect("valid template");
        bar.set_style(style.progress_chars("=> "));
        bar
    });
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                // After Ctrl-C, no trial starts.
                while !interrupted.load(Ordering::SeqCst)
                    && let Some(config) = pending.get(next.fetch_add(1, Ordering::SeqCst))
                {
                    let config = TrainConfig {
                        threads,
                        simd,
                        ..TrainConfig::clone(config)
                    };
                    match run_trial(&dir, &config, &train_set, &val_set, &interrupted) {
                        Ok(None) => {} // interrupted, checkpointed
                        Ok(Some(r)) if !args.quiet => {
                            let k = finished.fetch_add(1, Ordering::SeqCst) + 1;
                            let outcome = match (r.best_val_acc, r.best_epoch) {
                                (Some(acc), Some(epoch)) => {
                                    format!("val_acc {acc:.4} at epoch {epoch}")
                                }
                                _ => r.status.clone(),
                            };
                            let line = format!(
                                "[{k}/{}] {}: {outcome}, {:.1}s",
                                pending.len(),
                                r.id,
                                r.seconds
                            );
                            match &bar {
                                Some(bar) => {
                                    bar.inc(1);
                                    bar.println(line);
                                }
                                None => println!("{line}"),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failure.lock().expect("not poisoned").get_or_insert(e);
                            next.store(usize::MAX / 2, Ordering::SeqCst); // stop handing out trials
                        }
                    }
                }
            });
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e);
    }
    if interrupted.load(Ordering::SeqCst) {
        let command: Vec<String> = std::env::args()
            .skip(1)
            .map(|a| {
                if a.contains(char::is_whitespace) {
                    format!("'{a}'")
                } else {
                    a
                }
            })
            .collect();
        eprintln!(
            "interrupted; the running trials are checkpointed; continue with: mlp {}",
            command.join(" ")
        );
        return Ok(ExitCode::from(crate::train_cmd::INTERRUPTED));
    }

    let results: Vec<(TrialResult, PathBuf)> = trials
        .iter()
        .map(|t| {
            let d = trial_dir(&dir, t);
            read_result(&d)
                .map(|r| (r, d))
                .context("a trial finished without its result.json")
        })
        .collect::<anyhow::Result<_>>()?;
    write_summary(&dir, results)?;
    Ok(ExitCode::SUCCESS)
}

/// Every combination, in a fixed order: learning rate, hidden size, L2, activation.
fn grid(args: &SearchArgs) -> Result<Vec<TrainConfig>, ConfigError> {
    let (epochs, batch_size, seed) = (
        TrainConfig::whole("epochs", args.epochs)?,
        TrainConfig::whole("batch_size", args.batch_size)?,
        crate::cli::seed(args.seed)?,
    );
    let mut trials = Vec::new();
    for &lr in &args.lr {
        for &hidden in &args.hidden {
            let hidden = TrainConfig::whole("hidden", hidden)?;
            for &l2 in &args.l2 {
                for &activation in &args.activation {
                    let mut config = TrainConfig {
                        hidden,
                        activation,
                        epochs,
                        batch_size,
                        lr,
                        lr_decay: args.lr_decay,
                        l2,
                        seed: 0,
                        threads: 0,
                        patience: None,
                        simd: None,
                    };
                    config.seed = trial_seed(seed, &trial_id(&config));
                    // A value listed twice would train the same trial twice, into one folder.
                    if !trials
                        .iter()
                        .any(|t: &TrainConfig| trial_id(t) == trial_id(&config))
                    {
                        trials.push(config);
                    }
                }
            }
        }
    }
    Ok(trials)
}

/// A name for the trial's settings, usable as a folder name.
fn trial_id(c: &TrainConfig) -> String {
    format!(
        "lr{}_h{}_l2-{}_{}_b{}_e{}_d{}",
        c.lr, c.hidden, c.l2, c.activation, c.batch_size, c.epochs, c.lr_decay
    )
}

/// FNV-1a of the trial's name, mixed with the search seed: stable across builds and
/// platforms, unlike std's hasher.
fn trial_seed(search_seed: u64, id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ search_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn trial_dir(dir: &Path, config: &TrainConfig) -> PathBuf {
    dir.join("trials").join(trial_id(&TrainConfig {
        threads: 0,
        simd: None,
        ..config.clone()
    }))
}

pub(crate) fn read_result(trial_dir: &Path) -> Option<TrialResult> {
    let text = std::fs::read_to_string(trial_dir.join("result.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Trains one trial, or continues it from its checkpoint, checkpointing every epoch; then
/// writes its folder, result.json last. `None` if `stop` interrupted it (its state is then
/// in its checkpoint).
fn run_trial(
    dir: &Path,
    config: &TrainConfig,
    train_set: &Dataset,
    val_set: &Dataset,
    stop: &AtomicBool,
) -> anyhow::Result<Option<TrialResult>> {
    let tdir = trial_dir(dir, config);
    let started = Instant::now();
    let checked = config.validate()?;
    let path = tdir.join("checkpoint.msgpack");
    // What a killed search was writing (never renamed into place) is of no use.
    crate::run_dir::RunDir { path: tdir.clone() }.remove_stale_temporaries();
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
    let checkpoints = CheckpointWriter::new(path.clone());
    let hooks = Hooks {
        on_epoch: Box::new(|_, state| checkpoints.save(state)),
        stop: Box::new(|| stop.load(Ordering::SeqCst) || checkpoints.failed()),
        ..Hooks::default()
    };
    let end = mlp_train::run(start, &images(train_set), &images(val_set), hooks);
    checkpoints.finish()?;
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
            result.best_val_acc = Some(o.best_val_acc);
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
