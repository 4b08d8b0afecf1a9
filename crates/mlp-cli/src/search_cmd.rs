//! `mlp search`: every combination of a grid of hyperparameters, trained in parallel, ranked
//! by validation accuracy (never by test accuracy).
//!
//! ```text
//! DIR/search.json    the search's seed and validation size (a rerun must match them)
//! DIR/trials/<id>/   one trial (see `search_trial.rs`)
//! DIR/results.json   every trial's row, best first;  DIR/results.csv the same as CSV
//! DIR/best/          model.msgpack, history.json, config.json of the best trial
//! ```
//! A trial's seed comes from the search seed and the trial's own settings, and a trial trains
//! the same on any number of threads, so results do not depend on `--jobs` or on `--shard`;
//! and a trial continued from its checkpoint trains the model it would have without the
//! interruption, so a search killed and rerun (or stopped with Ctrl-C, which checkpoints the
//! running trials) ends with the results of one never stopped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Context;
use fmnist_data::Split;
use indicatif::{ProgressBar, ProgressStyle};
use mlp_train::{ConfigError, OptimizerKind, ScheduleKind, TrainConfig};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;

use crate::cli::{SearchArgs, SearchCommand};
use crate::data;
use crate::search_results::{merge, write_summary};
use crate::search_trial::{TrialResult, read_result, run_trial, trial_dir};
use crate::signals::INTERRUPTED;

/// What makes a search folder one search's: DIR/search.json.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SearchIdentity {
    seed: u64,
    val_size: usize,
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
    use crate::train_cmd::as_flag;
    let mut trials = grid(&args).map_err(as_flag)?;
    for t in &trials {
        t.validate().map_err(as_flag)?;
    }
    let jobs = args
        .jobs
        .map(|j| mlp_train::checked_whole("jobs", j.into(), 1, 1024))
        .transpose()
        .map_err(as_flag)?;
    if let Some((k, n)) = args.shard {
        trials = trials
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, t)| t)
            .collect();
    }

    let all = data::load(&args.data, Split::Train)?;
    let val_size = crate::train_cmd::val_size(args.val_size, 1, all.len())?;
    let (train_set, val_set) = all.split_last(val_size);

    // A trial from another search (another seed or validation split) in this folder, finished
    // or checkpointed, would pass for one of ours: refuse the folder rather than mix the two.
    let another = || {
        anyhow::anyhow!(
            "{}: holds trials of another search (seed or --val-size differ); use another --out",
            dir.display()
        )
    };
    let identity = SearchIdentity {
        seed: crate::cli::seed(args.seed).map_err(as_flag)?,
        val_size: val_set.len(),
    };
    let identity_file = dir.join("search.json");
    match std::fs::read(&identity_file) {
        Ok(bytes) => {
            if serde_json::from_slice::<SearchIdentity>(&bytes)
                .ok()
                .as_ref()
                != Some(&identity)
            {
                return Err(another());
            }
        }
        Err(_) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            mlp_train::write_json_atomic(&identity_file, &identity)?;
        }
    }
    for t in &trials {
        if let Some(r) = read_result(&trial_dir(&dir, t))
            && (r.seed != t.seed || r.val_size != val_set.len())
        {
            return Err(another());
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
    // Ctrl-C (or SIGTERM) stops every running trial at its next mini-batch, checkpointed;
    // so does a trial that fails, rather than let the others train on for hours before the
    // error is reported.
    let interrupted = crate::signals::stop_on_signal();
    let failed = AtomicBool::new(false);
    let stop = || interrupted.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst);
    // With several trials at once each trains on one thread; alone, a trial takes every core.
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
                // Once stopped, no trial starts.
                while !stop()
                    && let Some(config) = pending.get(next.fetch_add(1, Ordering::SeqCst))
                {
                    let config = TrainConfig {
                        threads,
                        simd,
                        ..TrainConfig::clone(config)
                    };
                    let tensorboard = args.tensorboard;
                    match run_trial(&dir, &config, &train_set, &val_set, &stop, tensorboard) {
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
                            failed.store(true, Ordering::SeqCst);
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
        return Ok(ExitCode::from(INTERRUPTED));
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

/// Every combination, in a fixed order: learning rate, hidden size, L2, activation, then
/// optimiser, momentum, weight decay, schedule, hidden dropout, input dropout, label
/// smoothing, translation, flip.
fn grid(args: &SearchArgs) -> Result<Vec<TrainConfig>, ConfigError> {
    let (epochs, batch_size, seed) = (
        TrainConfig::whole("epochs", args.epochs)?,
        TrainConfig::whole("batch_size", args.batch_size)?,
        crate::cli::seed(args.seed)?,
    );
    let translates = args
        .translate
        .iter()
        .map(|&t| TrainConfig::whole("translate", t))
        .collect::<Result<Vec<_>, _>>()?;
    let common = TrainConfig {
        warmup_epochs: TrainConfig::whole("warmup_epochs", args.warmup_epochs)?,
        lr_floor: args.lr_floor,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        ..TrainConfig::default()
    };
    let mut recipes = vec![common];
    expand(&mut recipes, &args.optimizer, |c, &v| c.optimizer = v);
    expand(&mut recipes, &args.momentum, |c, &v| c.momentum = v);
    expand(&mut recipes, &args.weight_decay, |c, &v| c.weight_decay = v);
    expand(&mut recipes, &args.schedule, |c, &v| c.schedule = v);
    expand(&mut recipes, &args.hidden_dropout, |c, &v| {
        c.hidden_dropout = v
    });
    expand(&mut recipes, &args.input_dropout, |c, &v| {
        c.input_dropout = v
    });
    expand(&mut recipes, &args.label_smoothing, |c, &v| {
        c.label_smoothing = v
    });
    expand(&mut recipes, &translates, |c, &v| c.translate = v);
    expand(&mut recipes, &args.flip, |c, &v| c.flip = v);
    // A setting the trial's optimiser or schedule does not read is left at its default, so
    // that a list of it makes no trials that differ in their names alone (the trials are
    // deduplicated by name below).
    let recipes: Vec<TrainConfig> = recipes.into_iter().map(without_unused).collect();
    let mut trials = Vec::new();
    for &lr in &args.lr {
        for &hidden in &args.hidden {
            let hidden = TrainConfig::whole("hidden", hidden)?;
            for &l2 in &args.l2 {
                for (&activation, recipe) in args
                    .activation
                    .iter()
                    .flat_map(|a| recipes.iter().map(move |r| (a, r)))
                {
                    let mut config = TrainConfig {
                        hidden,
                        activation,
                        epochs,
                        batch_size,
                        lr,
                        lr_decay: args.lr_decay,
                        l2,
                        ..recipe.clone()
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

/// `c` with the settings its optimiser and schedule ignore at their defaults.
fn without_unused(c: TrainConfig) -> TrainConfig {
    let d = TrainConfig::default();
    let momentum = matches!(
        c.optimizer,
        OptimizerKind::Momentum | OptimizerKind::Nesterov
    );
    let adam = matches!(c.optimizer, OptimizerKind::Adam | OptimizerKind::Adamw);
    let cosine = c.schedule == ScheduleKind::Cosine;
    TrainConfig {
        momentum: if momentum { c.momentum } else { d.momentum },
        beta1: if adam { c.beta1 } else { d.beta1 },
        beta2: if adam { c.beta2 } else { d.beta2 },
        eps: if adam { c.eps } else { d.eps },
        weight_decay: if c.optimizer == OptimizerKind::Adamw {
            c.weight_decay
        } else {
            d.weight_decay
        },
        warmup_epochs: if cosine {
            c.warmup_epochs
        } else {
            d.warmup_epochs
        },
        lr_floor: if cosine { c.lr_floor } else { d.lr_floor },
        ..c
    }
}

/// Every config of `configs` once for each of `values`, `set` giving it the value (in the
/// order of `configs`, then of `values`).
fn expand<T>(configs: &mut Vec<TrainConfig>, values: &[T], set: impl Fn(&mut TrainConfig, &T)) {
    *configs = configs
        .iter()
        .flat_map(|c| {
            values.iter().map(|v| {
                let mut c = c.clone();
                set(&mut c, v);
                c
            })
        })
        .collect();
}

/// A name for the trial's settings, usable as a folder name: the seed's settings always,
/// then each later setting that differs from its default (so that a search of the seed's
/// settings keeps the names, and the seeds, it always had).
pub(crate) fn trial_id(c: &TrainConfig) -> String {
    let id = format!(
        "lr{}_h{}_l2-{}_{}_b{}_e{}_d{}",
        c.lr, c.hidden, c.l2, c.activation, c.batch_size, c.epochs, c.lr_decay
    );
    match recipe_tags(c) {
        tags if tags.is_empty() => id,
        tags => format!("{id}_{tags}"),
    }
}

/// The settings after the seed's that differ from their defaults, as `_`-separated tags
/// (`nesterov_hdrop0.2_flip`; empty for the seed's recipe).
pub(crate) fn recipe_tags(c: &TrainConfig) -> String {
    let mut tags = Vec::new();
    let d = TrainConfig::default();
    let mut part = |differs: bool, text: String| {
        if differs {
            tags.push(text);
        }
    };
    part(c.optimizer != d.optimizer, c.optimizer.to_string());
    part(c.momentum != d.momentum, format!("mu{}", c.momentum));
    part(c.beta1 != d.beta1, format!("b1-{}", c.beta1));
    part(c.beta2 != d.beta2, format!("b2-{}", c.beta2));
    part(c.eps != d.eps, format!("eps{}", c.eps));
    part(
        c.weight_decay != d.weight_decay,
        format!("wd{}", c.weight_decay),
    );
    part(c.schedule != d.schedule, c.schedule.to_string());
    part(
        c.warmup_epochs != d.warmup_epochs,
        format!("warm{}", c.warmup_epochs),
    );
    part(c.lr_floor != d.lr_floor, format!("floor{}", c.lr_floor));
    part(
        c.hidden_dropout != d.hidden_dropout,
        format!("hdrop{}", c.hidden_dropout),
    );
    part(
        c.input_dropout != d.input_dropout,
        format!("idrop{}", c.input_dropout),
    );
    part(
        c.label_smoothing != d.label_smoothing,
        format!("ls{}", c.label_smoothing),
    );
    part(c.translate != d.translate, format!("shift{}", c.translate));
    part(c.flip, "flip".to_owned());
    tags.join("_")
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
