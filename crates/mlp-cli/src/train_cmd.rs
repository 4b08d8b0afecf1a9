//! `mlp train`: check the settings, load the data, train, write the run folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use fmnist_data::{CLASS_NAMES, Split};
use mlp_train::{EpochRecord, TrainConfig, save_model, write_json_atomic};
use serde::Serialize;

use crate::cli::{DEFAULT_DATA_DIR, TrainArgs};
use crate::data::{self, images};

/// What config.json records: the hyperparameters plus where the data came from.
#[derive(Serialize)]
struct RunConfig<'a> {
    train: &'a TrainConfig,
    shape: String,
    data_dir: &'a Path,
    data_verified: bool,
    train_examples: usize,
    val_size: usize,
    best_epoch: usize,
    best_val_acc: f64,
    mlp_version: &'static str,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config();
    let checked = config.validate().map_err(|e| {
        let flag = format!("--{}", e.setting().replace('_', "-"));
        anyhow::anyhow!("{}", e.to_string().replacen(e.setting(), &flag, 1))
    })?;

    let all = data::load(&args.data, Split::Train)?;
    if all.len() < 2 {
        bail!(
            "the training file has {} examples; training needs at least 2 (one to train on, one to validate)",
            all.len()
        );
    }
    if args.val_size == 0 || args.val_size >= all.len() {
        bail!(
            "--val-size must be between 1 and {} (the training file has {} examples), got {}",
            all.len() - 1,
            all.len(),
            args.val_size
        );
    }
    let (train_set, val_set) = all.split_last(args.val_size);
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => fresh_run_dir()?,
    };

    println!(
        "training {}-{}-{} ({}) on {} examples, validating on {}: lr {} decay {} l2 {} batch {} seed {}",
        train_set.features(),
        config.hidden,
        train_set.classes(),
        config.activation,
        train_set.len(),
        val_set.len(),
        config.lr,
        config.lr_decay,
        config.l2,
        config.batch_size,
        config.seed
    );
    let outcome = mlp_train::train(&checked, &images(&train_set), &images(&val_set), |r| {
        print_epoch(r, config.epochs)
    })?;

    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the run folder", out.display()))?;
    let class_names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    save_model(
        &out.join("model.msgpack"),
        &outcome.best_model,
        &class_names,
    )?;
    write_json_atomic(&out.join("history.json"), &outcome.history)?;
    let run_config = RunConfig {
        train: &config,
        shape: outcome.best_model.shape().to_string(),
        data_dir: &args.data.data_dir,
        data_verified: !args.data.allow_unverified,
        train_examples: train_set.len(),
        val_size: val_set.len(),
        best_epoch: outcome.best_epoch,
        best_val_acc: outcome.best_val_acc,
        mlp_version: env!("CARGO_PKG_VERSION"),
    };
    write_json_atomic(&out.join("config.json"), &run_config)?;

    println!(
        "best validation accuracy {:.4} at epoch {}",
        outcome.best_val_acc, outcome.best_epoch
    );
    let data_flag = if args.data.data_dir.as_os_str() == DEFAULT_DATA_DIR {
        String::new()
    } else {
        format!(" --data-dir {}", args.data.data_dir.display())
    };
    println!(
        "run saved in {}; next: mlp test --model {}{data_flag}",
        out.display(),
        out.join("model.msgpack").display()
    );
    Ok(())
}

fn print_epoch(r: &EpochRecord, epochs: usize) {
    let width = epochs.to_string().len();
    println!(
        "epoch {:>width$}/{epochs}  train_loss {:.4}  val_loss {:.4}  val_acc {:.4}  lr {:.5}  {:.2}s",
        r.epoch, r.train_loss, r.val_loss, r.val_acc, r.lr, r.epoch_seconds
    );
}

/// `runs/<date-time>/`, with a numeric suffix if two runs start within the same second.
fn fresh_run_dir() -> anyhow::Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    let base = Path::new("runs").join(&stamp);
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = Path::new("runs").join(format!("{stamp}-{n}"));
    }
    Ok(dir)
}
