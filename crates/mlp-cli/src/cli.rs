//! The command-line interface: commands, flags and their defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mlp_core::Activation;
use mlp_train::{ConfigError, OptimizerKind, ScheduleKind, TrainConfig};

pub use crate::recipe_args::{RECIPE_SETTINGS, Recipe, RecipeArgs};

/// Default location of the Fashion-MNIST files (what `cargo xtask fetch-data` writes).
pub const DEFAULT_DATA_DIR: &str = "data/fashion-mnist";

/// Train and test a three-layer neural network on Fashion-MNIST.
#[derive(Debug, Parser)]
#[command(name = "mlp", version, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Train a network; writes model.msgpack, history.json and config.json to the run folder.
    Train(TrainArgs),
    /// Report a saved model's accuracy on the 10,000 test images.
    Test(TestArgs),
    /// Train every combination of a grid of hyperparameters; pick the best by validation.
    Search(SearchArgs),
    /// Write a model's weights for numpy or PyTorch (safetensors, npz), or back to native.
    Export(ExportArgs),
    /// Classify pictures (PNG or JPEG, any size, colour or grey), or an image of the test set.
    Predict(PredictArgs),
}

// Whole-number flags are read as signed numbers and every command allows negative ones, so
// that `--epochs -3` reaches the flag's own range check (`--epochs must be between 1 and
// 1000000, got -3`, as `--epochs 0` does) rather than clap's "unexpected argument '-3'".

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct PredictArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The model: model.msgpack from `mlp train`, or a .safetensors file (ours, or a
    /// PyTorch nn.Sequential's state dict).
    #[arg(long)]
    pub model: PathBuf,
    /// The hidden activation of a .safetensors file that does not name it (PyTorch's own).
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Classify image N of the test set and show its true class.
    #[arg(long, value_name = "N")]
    pub test_index: Option<i64>,
    /// Print one JSON array instead of a line per image.
    #[arg(long)]
    pub json: bool,
    /// Pictures to classify.
    #[arg(required_unless_present = "test_index")]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model: model.msgpack from `mlp train`, or a .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// The hidden activation of a .safetensors file that does not name it (PyTorch's own).
    #[arg(long)]
    pub activation: Option<Activation>,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: crate::export::Format,
    /// The tensors of a safetensors export: ours (w1 inputs × hidden, …) or PyTorch's
    /// nn.Sequential state dict (0.weight hidden × inputs, 0.bias, 2.weight, 2.bias).
    #[arg(long, value_enum, default_value = "ours")]
    pub layout: TensorLayout,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// The tensor layouts of a safetensors export (`mlp_train::Layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TensorLayout {
    /// w1 (inputs × hidden), b1, w2 (hidden × classes), b2, as the model file.
    Ours,
    /// 0.weight (hidden × inputs), 0.bias, 2.weight (classes × hidden), 2.bias.
    Torch,
}

impl From<TensorLayout> for mlp_train::Layout {
    fn from(l: TensorLayout) -> Self {
        match l {
            TensorLayout::Ours => Self::Ours,
            TensorLayout::Torch => Self::Torch,
        }
    }
}

/// Where the data is and whether to insist it is Fashion-MNIST.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Folder holding the four IDX files (raw or .gz).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Accept IDX files that are not Fashion-MNIST (skip the content digest check).
    #[arg(long)]
    pub allow_unverified: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Hidden units.
    #[arg(long, default_value_t = TrainConfig::default().hidden as i64)]
    pub hidden: i64,
    /// Hidden activation: relu, leaky_relu, tanh or sigmoid.
    #[arg(long, default_value_t = TrainConfig::default().activation)]
    pub activation: Activation,
    /// Passes over the training data.
    #[arg(long, default_value_t = TrainConfig::default().epochs as i64)]
    pub epochs: i64,
    /// Examples per mini-batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_size as i64)]
    pub batch_size: i64,
    /// Learning rate of the first epoch.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f32,
    /// Learning-rate factor per epoch (lr · decay^epoch).
    #[arg(long, default_value_t = TrainConfig::default().lr_decay)]
    pub lr_decay: f32,
    /// L2 regularisation strength on the weights.
    #[arg(long, default_value_t = TrainConfig::default().l2)]
    pub l2: f32,
    #[command(flatten)]
    pub settings: RecipeArgs,
    /// Training examples held out for validation (the last ones of the training file; 0:
    /// train on all of them and keep the last epoch's model). Default 10000, or the
    /// recipe's.
    #[arg(long)]
    pub val_size: Option<i64>,
    /// Seed for initialisation and shuffling.
    #[arg(long, default_value_t = TrainConfig::default().seed.into())]
    pub seed: i128,
    /// A named recipe instead of the settings flags: `best`, the most accurate network we
    /// found (docs/ACCURACY.md; trains on all 60,000 images unless --val-size says
    /// otherwise). --seed, --threads, --val-size and the output flags still apply.
    #[arg(long, value_enum, conflicts_with_all = RECIPE_SETTINGS)]
    pub recipe: Option<Recipe>,
    /// Threads for training (0: all cores; the step uses one per 64 hidden units at most);
    /// results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: i64,
    /// Stop after this many epochs without a better validation accuracy.
    #[arg(long)]
    pub patience: Option<i64>,
    /// Write the run folder's checkpoint every K epochs (0: only on Ctrl-C).
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: i64,
    /// Print only the result: no progress bar, no line per epoch.
    #[arg(long)]
    pub quiet: bool,
    /// Write TensorBoard events into the run folder as each epoch ends (`tensorboard
    /// --logdir runs`); a resumed run continues the file it finds.
    #[arg(long)]
    pub tensorboard: bool,
    /// Run folder to write (default: a new `runs/<date-time>/`).
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this folder, with its own settings and data.
    #[arg(long, value_name = "DIR", conflicts_with_all = [RECIPE_SETTINGS, &[
        "val_size", "seed", "data_dir", "allow_unverified", "recipe",
    ]].concat())]
    pub resume: Option<PathBuf>,
}

impl TrainArgs {
    /// The flags' settings, each whole number checked against its range (the rest are
    /// checked by `TrainConfig::validate`).
    pub fn config(&self) -> Result<TrainConfig, ConfigError> {
        if let Some(Recipe::Best) = self.recipe {
            return Ok(TrainConfig {
                seed: seed(self.seed)?,
                threads: TrainConfig::whole("threads", self.threads)?,
                ..TrainConfig::best()
            });
        }
        self.settings.apply(TrainConfig {
            hidden: TrainConfig::whole("hidden", self.hidden)?,
            activation: self.activation,
            epochs: TrainConfig::whole("epochs", self.epochs)?,
            batch_size: TrainConfig::whole("batch_size", self.batch_size)?,
            lr: self.lr,
            lr_decay: self.lr_decay,
            l2: self.l2,
            seed: seed(self.seed)?,
            threads: TrainConfig::whole("threads", self.threads)?,
            patience: self
                .patience
                .map(|p| TrainConfig::whole("patience", p))
                .transpose()?,
            simd: None,
            ..TrainConfig::default()
        })
    }

    /// `--val-size` as given, or its default: 10,000, or 0 for `--recipe best` (which was
    /// chosen on a validation set, and then trains on every image).
    pub fn val_size(&self) -> i64 {
        self.val_size.unwrap_or(match self.recipe {
            Some(Recipe::Best) => 0,
            None => 10_000,
        })
    }

    /// `--checkpoint-every`, checked.
    pub fn checkpoint_every(&self) -> Result<usize, ConfigError> {
        mlp_train::checked_whole(
            "checkpoint_every",
            self.checkpoint_every.into(),
            0,
            1_000_000,
        )
    }
}

/// `--seed` (read as a signed number, like every whole-number flag), checked.
pub fn seed(value: i128) -> Result<u64, ConfigError> {
    mlp_train::checked_whole("seed", value, 0, u64::MAX as usize).map(|s| s as u64)
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The model file (model.msgpack from `mlp train`, or a .safetensors file: ours, or a
    /// PyTorch nn.Sequential's state dict).
    #[arg(long)]
    pub model: PathBuf,
    /// The hidden activation of a .safetensors file that does not name it (PyTorch's own).
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A comma-separated list of values on the command line. (An alias, so that clap's derive
/// treats it as one value rather than as a repeated flag.)
pub type List<T> = Vec<T>;

/// A comma-separated list of values, parsed as T.
fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    let values: Result<Vec<T>, String> = s
        .split(',')
        .map(|v| v.trim().parse::<T>().map_err(|e| format!("{v:?}: {e}")))
        .collect();
    match values? {
        v if v.is_empty() => Err("the list is empty".to_owned()),
        v => Ok(v),
    }
}

/// `K/N`: the K-th (1-based) of N slices.
fn shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 2/4")?;
    let (k, n): (usize, usize) = (
        k.parse().map_err(|_| "K is not a number")?,
        n.parse().map_err(|_| "N is not a number")?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(format!("expected 1 ≤ K ≤ N, got {k}/{n}"));
    }
    Ok((k, n))
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    allow_negative_numbers = true
)]
pub struct SearchArgs {
    #[command(subcommand)]
    pub command: Option<SearchCommand>,
    #[command(flatten)]
    pub data: DataArgs,
    // The lists may start with a negative number (then refused by its range check).
    /// Learning rates to try, comma-separated.
    #[arg(long, value_parser = list::<f32>, default_value = "0.05,0.1,0.2", allow_hyphen_values = true)]
    pub lr: List<f32>,
    /// Hidden sizes to try.
    #[arg(long, value_parser = list::<i64>, default_value = "64,128,256", allow_hyphen_values = true)]
    pub hidden: List<i64>,
    /// L2 strengths to try.
    #[arg(long, value_parser = list::<f32>, default_value = "0,0.0001,0.001", allow_hyphen_values = true)]
    pub l2: List<f32>,
    /// Activations to try.
    #[arg(long, value_parser = list::<Activation>, default_value = "relu")]
    pub activation: List<Activation>,
    /// Examples per mini-batch, for every trial.
    #[arg(long, default_value_t = TrainConfig::default().batch_size as i64)]
    pub batch_size: i64,
    /// Epochs per trial.
    #[arg(long, default_value_t = TrainConfig::default().epochs as i64)]
    pub epochs: i64,
    /// Learning-rate factor per epoch, for every trial.
    #[arg(long, default_value_t = TrainConfig::default().lr_decay)]
    pub lr_decay: f32,
    /// Optimisers to try (sgd, momentum, nesterov, adam, adamw).
    #[arg(long, value_parser = list::<OptimizerKind>, default_value = "sgd")]
    pub optimizer: List<OptimizerKind>,
    /// Momentum values to try (momentum and nesterov).
    #[arg(long, value_parser = list::<f32>, default_value = "0.9", allow_hyphen_values = true)]
    pub momentum: List<f32>,
    /// AdamW weight decays to try.
    #[arg(long, value_parser = list::<f32>, default_value = "0", allow_hyphen_values = true)]
    pub weight_decay: List<f32>,
    /// Schedules to try (exponential, cosine).
    #[arg(long, value_parser = list::<ScheduleKind>, default_value = "exponential")]
    pub schedule: List<ScheduleKind>,
    /// Hidden dropout rates to try.
    #[arg(long, value_parser = list::<f32>, default_value = "0", allow_hyphen_values = true)]
    pub hidden_dropout: List<f32>,
    /// Input dropout rates to try.
    #[arg(long, value_parser = list::<f32>, default_value = "0", allow_hyphen_values = true)]
    pub input_dropout: List<f32>,
    /// Label smoothing strengths to try.
    #[arg(long, value_parser = list::<f32>, default_value = "0", allow_hyphen_values = true)]
    pub label_smoothing: List<f32>,
    /// Largest shifts (pixels) to try.
    #[arg(long, value_parser = list::<i64>, default_value = "0", allow_hyphen_values = true)]
    pub translate: List<i64>,
    /// Whether to flip, to try: false, true or both.
    #[arg(long, value_parser = list::<bool>, default_value = "false")]
    pub flip: List<bool>,
    /// Warm-up epochs of the cosine schedule, for every trial.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: i64,
    /// The cosine schedule's final learning rate, for every trial.
    #[arg(long, default_value_t = 0.0)]
    pub lr_floor: f32,
    /// Adam's β1, for every trial.
    #[arg(long, default_value_t = TrainConfig::default().beta1)]
    pub beta1: f32,
    /// Adam's β2, for every trial.
    #[arg(long, default_value_t = TrainConfig::default().beta2)]
    pub beta2: f32,
    /// Adam's ε, for every trial.
    #[arg(long, default_value_t = TrainConfig::default().eps)]
    pub eps: f32,
    /// Training examples held out for validation.
    #[arg(long, default_value_t = 10_000)]
    pub val_size: i64,
    /// Seed of the search; each trial's seed is derived from it and the trial's settings.
    #[arg(long, default_value_t = 0)]
    pub seed: i128,
    /// Trials trained at once (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<i64>,
    /// Run only the K-th of N disjoint slices of the grid (for job arrays); combine the
    /// slices with `mlp search merge`.
    #[arg(long, value_parser = shard, value_name = "K/N")]
    pub shard: Option<(usize, usize)>,
    /// Print only the result table.
    #[arg(long)]
    pub quiet: bool,
    /// Write TensorBoard events into each trial's folder (`tensorboard --logdir
    /// DIR/trials` compares the trials).
    #[arg(long)]
    pub tensorboard: bool,
    /// Search folder (results, trials/, best/); running again in it skips finished trials.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Combine the folders of sharded searches into one results table and one best model.
    Merge {
        /// Search folders to combine.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Folder for the combined results.
        #[arg(long)]
        out: PathBuf,
    },
}
