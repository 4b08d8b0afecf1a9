//! `mlp train`: check the settings, load the data, train (or continue a saved run), and keep
//! the run folder current: metrics as each epoch ends, a checkpoint every few epochs and on
//! Ctrl-C, the model and history at the end.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;
use fmnist_data::{CLASS_NAMES, Split};
use mlp_train::{
    Hooks, OptimizerKind, RunEnd, ScheduleKind, Start, load_checkpoint, run, save_checkpoint,
    save_model, write_json_atomic,
};

use crate::cli::{DEFAULT_DATA_DIR, DataArgs, TrainArgs};
use crate::data::{self, images};
use crate::progress::Progress;
use crate::run_dir::{
    CheckpointWriter, RunConfig, RunDir, claim_fresh_run_dir, refuse_existing_run,
};

/// Exit code after Ctrl-C, as shells use for SIGINT.
use crate::signals::INTERRUPTED;
use crate::tensorboard::EventWriter;

pub fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    // The default folder is claimed at once (two runs started in the same second must not
    // share one); if the run then fails before writing anything, the empty folder goes.
    let claimed = match (&args.resume, &args.out) {
        (None, None) => Some(claim_fresh_run_dir()?),
        _ => None,
    };
    let result = train_in(&args, claimed.clone());
    if let (Err(_), Some(dir)) = (&result, &claimed) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn train_in(args: &TrainArgs, claimed: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    // The SIMD level, like the thread count, is this machine's: it never changes a result.
    let simd = Some(crate::simd_level()?);
    let checkpoint_every = args.checkpoint_every().map_err(as_flag)?;
    // A fresh run takes its settings from the flags; a resumed one from its folder.
    let (start, data_args, val_size, dir) = match &args.resume {
        Some(path) => {
            let dir = RunDir { path: path.clone() };
            let saved = dir.read_config()?;
            dir.remove_stale_temporaries();
            let threads =
                match mlp_train::TrainConfig::whole("threads", args.threads).map_err(as_flag)? {
                    0 => saved.train.threads,
                    threads => threads,
                };
            let checkpoint = dir.file("checkpoint.msgpack");
            // A run stopped before its first checkpoint (killed in its first epochs) has
            // nothing to continue from: it starts again from its saved settings.
            let start =
                if checkpoint.exists() {
                    let mut state = load_checkpoint(&checkpoint)?;
                    // Results depend on neither.
                    (state.config.threads, state.config.simd) = (threads, simd);
                    Start::Resume(Box::new(state))
                } else {
                    let config = mlp_train::TrainConfig {
                        threads,
                        simd,
                        ..saved.train.clone()
                    };
                    Start::Fresh(config.validate().map_err(|e| {
                        anyhow::anyhow!("{}: {e}", dir.file("config.json").display())
                    })?)
                };
            let data_args = DataArgs {
                data_dir: saved.data_dir.clone(),
                allow_unverified: !saved.data_verified,
            };
            (start, data_args, saved.val_size as i64, dir)
        }
        None => {
            let config = mlp_train::TrainConfig {
                simd,
                ..args.config().map_err(as_flag)?
            };
            let checked = config.validate().map_err(as_flag)?;
            let path = match (&args.out, claimed) {
                (Some(out), _) => {
                    refuse_existing_run(out)?;
                    out.clone()
                }
                (None, Some(claimed)) => claimed,
                (None, None) => unreachable!("run_train claims a folder when there is no --out"),
            };
            let dir = RunDir { path };
            let data_args = DataArgs {
                data_dir: args.data.data_dir.clone(),
                allow_unverified: args.data.allow_unverified,
            };
            (Start::Fresh(checked), data_args, args.val_size(), dir)
        }
    };

    let all = data::load(&data_args, Split::Train)?;
    if all.is_empty() {
        bail!("the training file has 0 examples; training needs at least 1");
    }
    let val_size = self::val_size(val_size, 0, all.len())?;
    let (train_set, val_set) = all.split_last(val_size);
    let config = match &start {
        Start::Fresh(c) => mlp_train::TrainConfig::clone(c),
        Start::Resume(state) => state.config.clone(),
    };
    let mut run_config = RunConfig {
        train: config.clone(),
        shape: format!(
            "{}-{}-{}",
            train_set.features(),
            config.hidden,
            train_set.classes()
        ),
        data_dir: data_args.data_dir.clone(),
        data_verified: !data_args.allow_unverified,
        train_examples: train_set.len(),
        val_size: val_set.len(),
        best_epoch: None,
        best_val_acc: None,
        mlp_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // A resumed run's metrics.jsonl holds exactly the epochs of its checkpoint, whatever was
    // appended (or lost) after the checkpoint was written.
    if args.resume.is_some() {
        let history = match &start {
            Start::Resume(state) => state.history.clone(),
            Start::Fresh(_) => mlp_train::History::default(),
        };
        dir.rewrite_metrics(&history)?;
    }
    if !args.quiet {
        match &start {
            Start::Fresh(_) if args.resume.is_some() => {
                println!(
                    "restarting {} from the beginning: it stopped before its first checkpoint",
                    dir.path.display()
                )
            }
            Start::Resume(state) => {
                println!(
                    "resuming {} after epoch {} of {}",
                    dir.path.display(),
                    state.epochs_done,
                    config.epochs
                )
            }
            Start::Fresh(_) => println!(
                "training {} ({}) on {} examples, {}: {}",
                run_config.shape,
                config.activation,
                train_set.len(),
                match val_set.len() {
                    0 => "no validation set (the last epoch's model is kept)".to_owned(),
                    n => format!("validating on {n}"),
                },
                describe(&config)
            ),
        }
    }

    // Ctrl-C asks the run to stop after the current mini-batch (a second one exits at once).
    let interrupted = crate::signals::stop_on_signal();

    let progress = Progress::new(args.quiet, config.epochs);
    let checkpoints = CheckpointWriter::new(dir.file("checkpoint.msgpack"));
    let mut write_error = None;
    // A resumed run goes on writing the events it wrote before, cut back to its checkpoint
    // at once; a fresh run's file is made when the run folder is, at its first epoch's end.
    let tensorboard = args.tensorboard || dir.file(crate::tensorboard::FILE_NAME).exists();
    let mut events = match &start {
        Start::Resume(state) if tensorboard => {
            Some(EventWriter::open(&dir.path, state.epochs_done)?)
        }
        _ => None,
    };
    // A file that cannot be written, here or by the checkpoint writer in the background,
    // stops the run at the next mini-batch, not after the last.
    let write_failed = AtomicBool::new(false);
    let hooks = Hooks {
        on_epoch: Box::new(|record, state| {
            progress.epoch(record);
            let result = (|| {
                if record.epoch == 1 || state.epochs_done == 1 {
                    dir.write_config(&run_config)?;
                }
                dir.append_metrics(record)?;
                if tensorboard {
                    if events.is_none() {
                        events = Some(EventWriter::open(&dir.path, record.epoch - 1)?);
                    }
                    if let Some(events) = &mut events {
                        events.epoch(record, &state.model)?;
                    }
                }
                if checkpoint_every > 0 && state.epochs_done % checkpoint_every == 0 {
                    checkpoints.save(state);
                }
                anyhow::Ok(())
            })();
            if let (Err(e), None) = (result, &write_error) {
                write_failed.store(true, Ordering::SeqCst);
                write_error = Some(e);
            }
        }),
        on_batch: Box::new(|epoch, done, total, loss| progress.batch(epoch, done, total, loss)),
        stop: Box::new(|| {
            interrupted.load(Ordering::SeqCst)
                || write_failed.load(Ordering::SeqCst)
                || checkpoints.failed()
        }),
    };
    let end = run(start, &images(&train_set), &images(&val_set), hooks);
    progress.finish();
    checkpoints.finish()?;
    if let Some(e) = write_error {
        return Err(e);
    }
    match end? {
        RunEnd::Interrupted(state) => {
            dir.write_config(&run_config)?;
            save_checkpoint(&dir.file("checkpoint.msgpack"), &state)?;
            let at = match &state.partial {
                Some(p) => format!(
                    "in epoch {} after {} mini-batches",
                    state.epochs_done + 1,
                    p.batches_done
                ),
                None => format!("after epoch {}", state.epochs_done),
            };
            eprintln!(
                "interrupted {at}; checkpoint saved; continue with: mlp train --resume {}",
                dir.path.display()
            );
            Ok(ExitCode::from(INTERRUPTED))
        }
        RunEnd::Finished(outcome) => {
            let class_names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
            run_config.best_epoch = Some(outcome.best_epoch);
            run_config.best_val_acc = outcome.best_val_acc;
            dir.write_config(&run_config)?;
            save_model(
                &dir.file("model.msgpack"),
                &outcome.best_model,
                &class_names,
            )?;
            write_json_atomic(&dir.file("history.json"), &outcome.history)?;
            if outcome.history.len() < config.epochs {
                println!(
                    "stopped early: no better validation accuracy for {} epochs",
                    config.patience.unwrap_or(0)
                );
            }
            match outcome.best_val_acc {
                Some(acc) => println!(
                    "best validation accuracy {acc:.4} at epoch {}",
                    outcome.best_epoch
                ),
                None => println!(
                    "no validation set (--val-size 0): kept the model of the last epoch, {}",
                    outcome.best_epoch
                ),
            }
            let data_flag = if data_args.data_dir.as_os_str() == DEFAULT_DATA_DIR {
                String::new()
            } else {
                format!(" --data-dir {}", data_args.data_dir.display())
            };
            println!(
                "run saved in {}; next: mlp test --model {}{data_flag}",
                dir.path.display(),
                dir.file("model.msgpack").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A setting's error with the setting named as its flag (`batch_size` → `--batch-size`).
pub(crate) fn as_flag(e: mlp_train::ConfigError) -> anyhow::Error {
    let flag = format!("--{}", e.setting().replace('_', "-"));
    anyhow::anyhow!("{}", e.to_string().replacen(e.setting(), &flag, 1))
}

/// `--val-size` (read as a signed number, like every whole-number flag), checked against
/// a training file of `examples`: at least `min` (0 for `mlp train`, which can train on
/// everything, 1 for a search, which ranks by validation), and at least one example left to
/// train on.
pub(crate) fn val_size(value: i64, min: usize, examples: usize) -> anyhow::Result<usize> {
    match usize::try_from(value) {
        Ok(v) if v >= min && v < examples => Ok(v),
        _ => bail!(
            "--val-size must be between {min} and {} (the training file has {examples} examples), got {value}",
            examples.saturating_sub(1),
        ),
    }
}

/// The run's settings in one line: the seed's, then each later one that differs from its
/// default.
pub(crate) fn describe(c: &mlp_train::TrainConfig) -> String {
    let mut line = format!("{} lr {}", c.optimizer, c.lr);
    let d = mlp_train::TrainConfig::default();
    let mut add = |show: bool, text: String| {
        if show {
            line.push_str(&text);
        }
    };
    let momentum = matches!(
        c.optimizer,
        OptimizerKind::Momentum | OptimizerKind::Nesterov
    );
    let adam = matches!(c.optimizer, OptimizerKind::Adam | OptimizerKind::Adamw);
    add(momentum, format!(" momentum {}", c.momentum));
    add(
        adam,
        format!(" betas {} {} eps {}", c.beta1, c.beta2, c.eps),
    );
    add(
        c.optimizer == OptimizerKind::Adamw,
        format!(" weight_decay {}", c.weight_decay),
    );
    add(
        c.schedule == ScheduleKind::Exponential,
        format!(" decay {}", c.lr_decay),
    );
    add(
        c.schedule == ScheduleKind::Cosine,
        format!(
            " cosine to {} after {} warm-up epochs",
            c.lr_floor, c.warmup_epochs
        ),
    );
    add(
        true,
        format!(" l2 {} batch {} seed {}", c.l2, c.batch_size, c.seed),
    );
    add(
        c.hidden_dropout != d.hidden_dropout,
        format!(" hidden_dropout {}", c.hidden_dropout),
    );
    add(
        c.input_dropout != d.input_dropout,
        format!(" input_dropout {}", c.input_dropout),
    );
    add(
        c.label_smoothing != d.label_smoothing,
        format!(" label_smoothing {}", c.label_smoothing),
    );
    add(c.translate > 0, format!(" translate {}", c.translate));
    add(c.flip, " flip".to_owned());
    line
}
