//! `cargo xtask report`: a training run (or a search, or a model file alone: ours, or a
//! network trained in PyTorch) turned into figures and a report.
//!
//! ```text
//! curves.png/.svg     loss, accuracy, gradient norm, learning rate per epoch (history.json;
//!                     not for a model file alone)
//! weights.png         first-layer weights as 28×28 tiles (model.msgpack)
//! confusion.png/.svg  test-set confusion matrix and per-class accuracy
//! mistakes.png        the most confidently misclassified test images
//! search.png/.svg     search folders only: validation accuracy over two hyperparameters
//! numbers.json        the numbers behind the figures (test accuracy, confusion, mistakes)
//! report.md           all of it, figures linked; report.html the same, self-contained
//! ```
//! Test-set numbers come from mlp-core's reference forward pass in 1,000-row batches.

pub mod canvas;
mod contents;
pub mod curves;
pub mod inputs;
pub mod page;
pub mod predictions;
pub mod search;
pub mod weights;

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use fmnist_data::{CLASS_NAMES, DataError, Split, Verify};
use serde::Serialize;

use canvas::Figure;
use inputs::Source;
use predictions::{ConfusionFigure, MistakeGrid, Predictions};
use search::{Hyperparameter, SearchHeatmap};
use weights::{WeightGrid, WeightScale};

/// What to report on and how.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// A run folder (`mlp train --out`), a search folder (`mlp search --out`), or a model
    /// file (`.msgpack`, or `.safetensors` in our layout or PyTorch's).
    pub run: PathBuf,
    /// The activation of a `.safetensors` file that records none (PyTorch's).
    pub activation: Option<mlp_core::Activation>,
    /// Where the report goes; `None` means `<run>/report`.
    pub out: Option<PathBuf>,
    /// Folder with the Fashion-MNIST files (the test set is evaluated).
    pub data_dir: PathBuf,
    /// Accept test files whose content is not the catalogued Fashion-MNIST (other IDX data).
    pub allow_unverified: bool,
    /// Hidden units shown in the weight grid (clamped to the model's).
    pub units: usize,
    pub weight_scale: WeightScale,
    /// Pixels per weight in the weight grid.
    pub zoom: u32,
    /// Misclassified images shown.
    pub mistakes: usize,
    /// The search heatmap's axes.
    pub x: Hyperparameter,
    pub y: Hyperparameter,
}

/// The numbers behind the figures, written as numbers.json.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Numbers {
    pub model: String,
    pub test_count: usize,
    pub test_correct: usize,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub class_names: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class_accuracy: Vec<f64>,
    /// Test-set indices of the images in mistakes.png, in order.
    pub mistakes: Vec<usize>,
    /// Hidden units whose weights weights.png shows, in order.
    pub weight_units: Vec<usize>,
    pub weight_scale: String,
}

/// Writes the report; returns the folder it went to.
pub fn run(options: &ReportOptions) -> anyhow::Result<PathBuf> {
    if options.x == options.y {
        bail!(
            "--x and --y are both {}; pick two different hyperparameters",
            options.x.name()
        );
    }
    if options.zoom == 0 || options.zoom > 16 {
        bail!("--zoom {}: must be 1 to 16 pixels per weight", options.zoom);
    }
    let source = inputs::read(&options.run, options.activation)?;
    let (run, search) = match &source {
        Source::Run(run) => (Some(run), None),
        Source::Search(search) => (Some(&search.best), Some(search)),
        Source::Model(..) => (None, None),
    };
    let (saved, model_path) = match (&source, run) {
        (Source::Model(path, saved), _) => (saved, path.clone()),
        (_, Some(run)) => (&run.model, run.dir.join("model.msgpack")),
        (_, None) => unreachable!("runs and searches have a run"),
    };
    let verify = if options.allow_unverified {
        Verify::Skip
    } else {
        Verify::Catalogue
    };
    let test = load_test_set(&options.data_dir, verify)?;
    let shape = saved.model.shape();
    if shape.inputs != test.features() || shape.classes != test.classes() {
        bail!(
            "{}: the model takes {} inputs and predicts {} classes, but the test images have {} pixels and {} classes",
            model_path.display(),
            shape.inputs,
            shape.classes,
            test.features(),
            test.classes()
        );
    }
    let class_names: Vec<String> = if saved.class_names.len() == shape.classes {
        saved.class_names.clone()
    } else {
        CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    };

    let predictions = predictions::predict(&saved.model, &test);
    let confusion = predictions.confusion(shape.classes);
    let mistakes = predictions.confident_mistakes(options.mistakes);
    let weight_grid = WeightGrid::new(
        saved.model.w1.view(),
        (test.image_shape().1 as u32, test.image_shape().0 as u32),
        options.units,
        options.weight_scale,
        options.zoom,
    );
    let numbers = numbers(
        &model_path,
        &predictions,
        &confusion,
        &class_names,
        &mistakes,
        &weight_grid,
        options,
    );

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, figure: &dyn FigureFiles| -> anyhow::Result<()> {
        files.extend(figure.files(name)?);
        Ok(())
    };
    if let Some(run) = run {
        // The run's settings give the learning rate of every step (config.json is read
        // loosely: a run from before per-step schedules has none, and gets its per-epoch
        // series).
        let config: Option<mlp_train::TrainConfig> = run
            .config
            .get("train")
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        let examples = run.config.get("train_examples").and_then(|v| v.as_u64());
        let steps = match (&config, examples) {
            (Some(c), Some(n)) if c.batch_size > 0 => (n as usize).div_ceil(c.batch_size),
            _ => 0,
        };
        add(
            "curves",
            &curves::Curves::new(&run.history, config.as_ref(), steps),
        )?;
    }
    add("weights", &weight_grid)?;
    add(
        "confusion",
        &ConfusionFigure {
            confusion: &confusion,
            class_names: &class_names,
        },
    )?;
    add(
        "mistakes",
        &MistakeGrid::new(&test, &predictions, &mistakes, &class_names),
    )?;
    if let Some(search) = search {
        let heatmap = SearchHeatmap::new(&search.trials, search.best_trial(), options.x, options.y);
        add("search", &heatmap)?;
    }
    let numbers_json = serde_json::to_vec_pretty(&numbers)?;
    files.push(("numbers.json".to_owned(), numbers_json));

    let title = format!("Training report: {}", options.run.display());
    let blocks = match run {
        Some(run) => contents::document(run, search, &numbers, options),
        None => contents::model_document(&model_path, saved, &numbers, options),
    };
    let figure = |name: &str| {
        files
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, b)| b.clone())
    };
    let html = page::html(&title, &blocks, figure);
    let md = page::markdown(&title, &blocks);
    files.push(("report.md".to_owned(), md.into_bytes()));
    files.push(("report.html".to_owned(), html.into_bytes()));

    // A run folder's report goes inside it; a model file's beside it (NAME-report/).
    let out = options.out.clone().unwrap_or_else(|| match &source {
        Source::Model(path, _) => {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            path.with_file_name(format!("{stem}-report"))
        }
        _ => options.run.join("report"),
    });
    write_folder(&out, &files)?;
    Ok(out)
}

/// Writes `files` as the folder `out`, whole or not at all: into a temporary sibling first,
/// then renamed into place, so a failure never leaves a mix of new and old figures. An
/// existing `out` is replaced only if it is empty or a report (it holds report.md), never
/// a folder of other things.
fn write_folder(out: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!(
                "{}: exists and is not a folder; choose another --out",
                out.display()
            );
        }
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("{}: cannot read", out.display()))?
            .next()
            .is_none();
        if !empty && !out.join("report.md").is_file() {
            bail!(
                "{}: exists and is not a report folder (it has no report.md); choose another --out",
                out.display()
            );
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{}: give the report folder a name", out.display()))?
        .to_string_lossy();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let unique = |kind: &str| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        parent.join(format!(".{name}.{kind}-{}-{nanos}", std::process::id()))
    };
    let staging = unique("tmp");
    std::fs::create_dir(&staging)
        .with_context(|| format!("{}: cannot create", staging.display()))?;
    let swap = || -> anyhow::Result<()> {
        for (file, bytes) in files {
            mlp_train::write_atomic(&staging.join(file), bytes)?;
        }
        let cannot = |e: std::io::Error| anyhow!("{}: cannot replace: {e}", out.display());
        if out.exists() {
            let old = unique("old");
            std::fs::rename(out, &old).map_err(cannot)?;
            if let Err(e) = std::fs::rename(&staging, out) {
                let _ = std::fs::rename(&old, out);
                return Err(cannot(e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&staging, out).map_err(cannot)?;
        }
        Ok(())
    };
    let result = swap();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// A figure's files: PNG always, SVG when it has one.
trait FigureFiles {
    fn files(&self, name: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>>;
}

impl<F: Figure> FigureFiles for F {
    fn files(&self, name: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut files = vec![(format!("{name}.png"), canvas::png(self)?)];
        if let Some(svg) = canvas::svg(self)? {
            files.push((format!("{name}.svg"), svg.into_bytes()));
        }
        Ok(files)
    }
}

fn load_test_set(dir: &Path, verify: Verify) -> anyhow::Result<fmnist_data::Dataset> {
    fmnist_data::load_split(dir, Split::Test, verify).map_err(|err| match err {
        DataError::Missing { path } => anyhow!(
            "{}: not found; the report evaluates the test set: fetch it with `cargo xtask fetch-data` or pass --data-dir",
            path.display()
        ),
        other => other.into(),
    })
}

fn numbers(
    model_path: &Path,
    predictions: &Predictions,
    confusion: &ndarray::Array2<usize>,
    class_names: &[String],
    mistakes: &[usize],
    weight_grid: &WeightGrid,
    options: &ReportOptions,
) -> Numbers {
    let test_correct = confusion.diag().sum();
    let test_count = confusion.sum();
    Numbers {
        model: model_path.display().to_string(),
        test_count,
        test_correct,
        test_accuracy: test_correct as f64 / test_count.max(1) as f64,
        test_loss: predictions.loss,
        class_names: class_names.to_vec(),
        confusion: confusion.outer_iter().map(|r| r.to_vec()).collect(),
        per_class_accuracy: predictions::per_class_accuracy(confusion),
        mistakes: mistakes.to_vec(),
        weight_units: (0..weight_grid.tiles.len()).collect(),
        weight_scale: options.weight_scale.describe().to_owned(),
    }
}
