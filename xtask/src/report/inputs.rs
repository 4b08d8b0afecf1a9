//! Reading what `mlp train` and `mlp search` leave behind, with errors that name the missing
//! or malformed file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mlp_train::{History, SavedModel, load_model};
use serde::Deserialize;

/// A finished training run: its settings, every epoch's numbers and the kept model.
pub struct Run {
    pub dir: PathBuf,
    /// config.json as written by `mlp train` (shown as is, so it is read loosely).
    pub config: serde_json::Value,
    pub history: History,
    pub model: SavedModel,
}

/// One row of a search's results.json (the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Trial {
    pub id: String,
    pub lr: f64,
    pub hidden: usize,
    pub l2: f64,
    pub activation: String,
    pub batch_size: usize,
    pub epochs: usize,
    pub lr_decay: f64,
    pub status: String,
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub seconds: f64,
}

/// A search folder: every trial's result, best first, and the best trial's run.
pub struct Search {
    pub dir: PathBuf,
    pub trials: Vec<Trial>,
    pub best: Run,
}

impl Search {
    /// The best trial: the first that finished without diverging (results.json is ranked
    /// by validation accuracy; best/ holds this trial's files).
    pub fn best_trial(&self) -> &Trial {
        self.trials
            .iter()
            .find(|t| t.status == "ok")
            .unwrap_or(&self.trials[0])
    }
}

/// What `--run` pointed at.
pub enum Source {
    Run(Run),
    Search(Search),
    /// A model file alone (ours, or safetensors in our layout or PyTorch's): no history, no
    /// settings.
    Model(PathBuf, SavedModel),
}

/// Reads `dir` as a search folder when it has results.json, else as a run folder; or, when
/// it is a `.msgpack` or `.safetensors` file, as a model file (`activation` for a
/// safetensors file that records none, as PyTorch's do).
pub fn read(dir: &Path, activation: Option<mlp_core::Activation>) -> anyhow::Result<Source> {
    let extension = dir.extension().and_then(|e| e.to_str());
    if dir.is_file() && matches!(extension, Some("msgpack" | "safetensors")) {
        let model = if extension == Some("safetensors") {
            let bytes =
                std::fs::read(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
            mlp_train::model_from_safetensors(&bytes, dir, activation)?.0
        } else {
            load_model(dir)?
        };
        return Ok(Source::Model(dir.to_owned(), model));
    }
    if activation.is_some() {
        bail!("--activation is for a .safetensors model file, not a run folder");
    }
    if !dir.is_dir() {
        if dir.exists() {
            bail!(
                "{}: not a folder; give the folder `mlp train --out` or `mlp search --out` wrote",
                dir.display()
            );
        }
        bail!(
            "{}: no such folder; give the folder `mlp train --out` or `mlp search --out` wrote",
            dir.display()
        );
    }
    if dir.join("results.json").exists() {
        read_search(dir).map(Source::Search)
    } else if dir.join("trials").is_dir() {
        bail!(
            "{}: missing; the search has not finished: run the same `mlp search` again to finish it (or `mlp search merge` for a sharded one)",
            dir.join("results.json").display()
        )
    } else {
        read_run(dir).map(Source::Run)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not {what}", path.display()))
}

/// Reads a finished run folder.
pub fn read_run(dir: &Path) -> anyhow::Result<Run> {
    for name in ["config.json", "history.json", "model.msgpack"] {
        let path = dir.join(name);
        if !path.exists() {
            let hint = if dir.join("metrics.jsonl").exists() {
                format!(
                    "the run has not finished (history.json and model.msgpack are written at its end); finish it with `mlp train --resume {}`",
                    dir.display()
                )
            } else {
                "is this a folder `mlp train --out` wrote?".to_owned()
            };
            bail!("{}: missing; {hint}", path.display());
        }
    }
    let config = read_json(&dir.join("config.json"), "the config.json of an mlp run")?;
    let history_path = dir.join("history.json");
    let history: History = read_json(&history_path, "the history.json of an mlp run")?;
    check_history(&history).with_context(|| format!("{}: malformed", history_path.display()))?;
    let model = load_model(&dir.join("model.msgpack"))?;
    Ok(Run {
        dir: dir.to_owned(),
        config,
        history,
        model,
    })
}

/// The series must all have one value per epoch (the validation ones may both be empty: a
/// run without a validation set), and at least one epoch.
fn check_history(h: &History) -> anyhow::Result<()> {
    let n = h.len();
    if n == 0 {
        bail!("no epochs recorded");
    }
    let validated = !(h.val_loss.is_empty() && h.val_acc.is_empty());
    let lengths = [
        ("train_acc", h.train_acc.len()),
        ("val_loss", if validated { h.val_loss.len() } else { n }),
        ("val_acc", if validated { h.val_acc.len() } else { n }),
        ("grad_norm", h.grad_norm.len()),
        ("lr", h.lr.len()),
        ("epoch_seconds", h.epoch_seconds.len()),
    ];
    for (name, len) in lengths {
        if len != n {
            bail!("{name} has {len} values but train_loss has {n}");
        }
    }
    Ok(())
}

/// Reads a search folder: results.json and the run in best/.
pub fn read_search(dir: &Path) -> anyhow::Result<Search> {
    let trials: Vec<Trial> = read_json(
        &dir.join("results.json"),
        "the results.json of an mlp search",
    )?;
    if trials.is_empty() {
        bail!("{}: lists no trials", dir.join("results.json").display());
    }
    let best_dir = dir.join("best");
    if !best_dir.is_dir() {
        bail!(
            "{}: missing; a search writes it once a trial finishes without diverging",
            best_dir.display()
        );
    }
    Ok(Search {
        dir: dir.to_owned(),
        trials,
        best: read_run(&best_dir)?,
    })
}
