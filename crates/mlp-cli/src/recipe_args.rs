//! The flags of a run's optimiser, schedule and regularisers (`mlp train`'s; `mlp search`
//! takes lists of them), and the named recipes of `--recipe`.

use clap::Args;
use mlp_train::{ConfigError, OptimizerKind, ScheduleKind, TrainConfig};

/// The flags a recipe sets (and a resumed run takes from its folder).
pub const RECIPE_SETTINGS: &[&str] = &[
    "hidden",
    "activation",
    "epochs",
    "batch_size",
    "lr",
    "lr_decay",
    "l2",
    "patience",
    "optimizer",
    "momentum",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "lr_floor",
    "hidden_dropout",
    "input_dropout",
    "label_smoothing",
    "translate",
    "flip",
];

/// Named recipes of `mlp train --recipe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Recipe {
    /// [`TrainConfig::best`]: the most accurate one-hidden-layer network we found.
    Best,
}

/// The optimiser, schedule and regularisers of a run; the defaults are the seed's recipe
/// (plain SGD, exponential decay, nothing else).
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct RecipeArgs {
    /// Optimiser: sgd, momentum, nesterov, adam or adamw.
    #[arg(long, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Momentum μ (momentum and nesterov).
    #[arg(long, default_value_t = TrainConfig::default().momentum)]
    pub momentum: f32,
    /// Adam's β1.
    #[arg(long, default_value_t = TrainConfig::default().beta1)]
    pub beta1: f32,
    /// Adam's β2.
    #[arg(long, default_value_t = TrainConfig::default().beta2)]
    pub beta2: f32,
    /// Adam's ε.
    #[arg(long, default_value_t = TrainConfig::default().eps)]
    pub eps: f32,
    /// AdamW's decoupled weight decay (each step shrinks the weights by lr·wd).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Learning-rate schedule: exponential (per epoch, --lr-decay) or cosine (per step, from
    /// --lr down to --lr-floor after --warmup-epochs of linear warm-up).
    #[arg(long, default_value_t = ScheduleKind::Exponential)]
    pub schedule: ScheduleKind,
    /// Epochs of linear warm-up (cosine schedule).
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: i64,
    /// The learning rate the cosine schedule ends at.
    #[arg(long, default_value_t = 0.0)]
    pub lr_floor: f32,
    /// Dropout rate of the hidden layer (inverted: kept units are scaled by 1/(1 − rate)).
    #[arg(long, default_value_t = 0.0)]
    pub hidden_dropout: f32,
    /// Dropout rate of the input pixels.
    #[arg(long, default_value_t = 0.0)]
    pub input_dropout: f32,
    /// Label smoothing ε: the target is (1 − ε)·onehot + ε/10.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Shift each training image by up to this many pixels along each axis, afresh every
    /// epoch (zero fill; validation and test images are never changed).
    #[arg(long, default_value_t = 0)]
    pub translate: i64,
    /// Flip half the training images left to right, afresh every epoch.
    #[arg(long)]
    pub flip: bool,
}

impl RecipeArgs {
    /// `config` with these settings, the whole numbers checked against their ranges.
    pub fn apply(&self, config: TrainConfig) -> Result<TrainConfig, ConfigError> {
        Ok(TrainConfig {
            optimizer: self.optimizer,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup_epochs: TrainConfig::whole("warmup_epochs", self.warmup_epochs)?,
            lr_floor: self.lr_floor,
            hidden_dropout: self.hidden_dropout,
            input_dropout: self.input_dropout,
            label_smoothing: self.label_smoothing,
            translate: TrainConfig::whole("translate", self.translate)?,
            flip: self.flip,
            ..config
        })
    }
}
