//! Training hyperparameters, checked once into a [`CheckedConfig`] that the trainer trusts.

use mlp_core::{Activation, SimdLevel, SimdLevelError};
use serde::{Deserialize, Serialize};

use crate::optim::OptimizerKind;
use crate::schedule::ScheduleKind;

/// Hyperparameters of a training run, as a user writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Hidden units.
    pub hidden: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Learning rate of the first epoch (the peak, after the warm-up, of a cosine schedule).
    pub lr: f32,
    /// Factor applied to the learning rate after each epoch: lr · decay^epoch.
    pub lr_decay: f32,
    /// L2 strength λ on the weights (not the biases): the loss gains λ/2 · ‖W‖².
    pub l2: f32,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Threads for training (0: as many as the machine has). The step runs the hidden
    /// layer's 64-column shards on up to one thread each; evaluation splits the rows between
    /// all of them. Results do not depend on it.
    #[serde(default)]
    pub threads: usize,
    /// Stop early after this many epochs without a better validation accuracy (None: never).
    #[serde(default)]
    pub patience: Option<usize>,
    /// The SIMD level the training step runs on (None: the best this CPU has). Results do not
    /// depend on it; `mlp train` records the level a run used in its config.json (a search's
    /// trials record none: they may be trained on several machines).
    #[serde(default)]
    pub simd: Option<SimdLevel>,
    /// The optimiser (SGD by default).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// μ of momentum and Nesterov.
    #[serde(default = "defaults::momentum")]
    pub momentum: f32,
    /// Adam's β1.
    #[serde(default = "defaults::beta1")]
    pub beta1: f32,
    /// Adam's β2.
    #[serde(default = "defaults::beta2")]
    pub beta2: f32,
    /// Adam's ε.
    #[serde(default = "defaults::eps")]
    pub eps: f32,
    /// AdamW's decoupled weight decay (the weights shrink by lr·wd each step).
    #[serde(default)]
    pub weight_decay: f32,
    /// The learning-rate schedule (exponential decay per epoch by default).
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Epochs of linear warm-up before the cosine decay.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// The rate the cosine schedule ends at.
    #[serde(default)]
    pub lr_floor: f32,
    /// Dropout rate of the hidden layer.
    #[serde(default)]
    pub hidden_dropout: f32,
    /// Dropout rate of the input pixels.
    #[serde(default)]
    pub input_dropout: f32,
    /// Label smoothing ε.
    #[serde(default)]
    pub label_smoothing: f32,
    /// Largest random shift of a training image, in pixels along each axis (0: none).
    #[serde(default)]
    pub translate: usize,
    /// Flip half the training images left to right.
    #[serde(default)]
    pub flip: bool,
}

/// The defaults that are not zero, for configurations written before the settings existed.
mod defaults {
    pub fn momentum() -> f32 {
        0.9
    }
    pub fn beta1() -> f32 {
        0.9
    }
    pub fn beta2() -> f32 {
        0.999
    }
    pub fn eps() -> f32 {
        1e-8
    }
}

impl Default for TrainConfig {
    /// The original project's setup (784-128-10, ReLU, 50 epochs, batch 64), with decay 0.95
    /// and L2 1e-4 as in the numpy reference, and the learning rate chosen on the validation
    /// set: mean best validation accuracy over seeds 0–2 was 0.8928 for lr 0.1, 0.8953 for
    /// 0.15 and 0.8955 for 0.2.
    fn default() -> Self {
        Self {
            hidden: 128,
            activation: Activation::Relu,
            epochs: 50,
            batch_size: 64,
            lr: 0.2,
            lr_decay: 0.95,
            l2: 1e-4,
            seed: 0,
            threads: 0,
            patience: None,
            simd: None,
            optimizer: OptimizerKind::Sgd,
            momentum: defaults::momentum(),
            beta1: defaults::beta1(),
            beta2: defaults::beta2(),
            eps: defaults::eps(),
            weight_decay: 0.0,
            schedule: ScheduleKind::Exponential,
            warmup_epochs: 0,
            lr_floor: 0.0,
            hidden_dropout: 0.0,
            input_dropout: 0.0,
            label_smoothing: 0.0,
            translate: 0,
            flip: false,
        }
    }
}

/// Largest hidden layer accepted: far beyond useful, small enough to allocate.
pub const MAX_HIDDEN: usize = 1 << 16;
/// Largest random shift accepted, in pixels (half a 28-pixel image).
pub const MAX_TRANSLATE: usize = 14;
/// Largest mini-batch accepted.
pub const MAX_BATCH_SIZE: usize = 1 << 16;
/// Largest hidden size × max(batch size, 1,024) accepted: about 400 MB per step buffer.
pub const MAX_HIDDEN_TIMES_ROWS: usize = 1 << 27;

/// A hyperparameter outside its valid range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// An integer setting out of range.
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// Its value (signed, so that a negative one typed on a command line is reported as
        /// typed: see [`TrainConfig::whole`]).
        value: i128,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A real-valued setting out of range or not a number.
    #[error("{name} must be {expected}, got {value}")]
    BadNumber {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: f32,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A SIMD level this CPU cannot run.
    #[error(transparent)]
    Simd(SimdLevelError),
}

impl ConfigError {
    /// The name of the offending setting, as in [`TrainConfig`] (e.g. `batch_size`).
    pub fn setting(&self) -> &'static str {
        match self {
            Self::OutOfRange { name, .. } | Self::BadNumber { name, .. } => name,
            Self::Simd(_) => "simd",
        }
    }
}

/// A [`TrainConfig`] whose every value is in range.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedConfig(TrainConfig);

impl TrainConfig {
    /// The smallest and largest values [`TrainConfig::validate`] accepts for the integer
    /// setting `name` (`None` for the others).
    pub fn integer_range(name: &str) -> Option<(usize, usize)> {
        Some(match name {
            "hidden" => (1, MAX_HIDDEN),
            "epochs" => (1, 1_000_000),
            "batch_size" => (1, MAX_BATCH_SIZE),
            "threads" => (0, 1024),
            "patience" => (1, 1_000_000),
            "warmup_epochs" => (0, 1_000_000),
            "translate" => (0, MAX_TRANSLATE),
            _ => return None,
        })
    }

    /// `value` for the integer setting `name` (one of [`TrainConfig::integer_range`]'s) if
    /// it is in range, else the error `validate` would give, with the value as given: what
    /// a command line that reads signed numbers (so that `--epochs -3` is a number, not an
    /// unknown flag) converts them with.
    pub fn whole(name: &'static str, value: impl Into<i128>) -> Result<usize, ConfigError> {
        let (min, max) = Self::integer_range(name).expect("an integer setting");
        checked_whole(name, value.into(), min, max)
    }

    /// Checks every value once, so the training loop need not.
    pub fn validate(&self) -> Result<CheckedConfig, ConfigError> {
        let int = |name, value: usize| {
            let (min, max) = Self::integer_range(name).expect("an integer setting");
            checked_whole(name, value as i128, min, max).map(|_| ())
        };
        let real = |name, value: f32, ok: bool, expected| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(ConfigError::BadNumber {
                    name,
                    value,
                    expected,
                })
            }
        };
        int("hidden", self.hidden)?;
        int("epochs", self.epochs)?;
        int("batch_size", self.batch_size)?;
        real("lr", self.lr, self.lr > 0.0, "a positive number")?;
        real(
            "lr_decay",
            self.lr_decay,
            self.lr_decay > 0.0 && self.lr_decay <= 1.0,
            "in (0, 1]",
        )?;
        real("l2", self.l2, self.l2 >= 0.0, "zero or a positive number")?;
        int("threads", self.threads)?;
        let unit = |name, value: f32| real(name, value, (0.0..1.0).contains(&value), "in [0, 1)");
        unit("momentum", self.momentum)?;
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        // Below 1e-30, Adam's ε·√(1 − β2ᵗ) can round to 0 and give 0/0 for weights that never
        // see a gradient.
        real(
            "eps",
            self.eps,
            self.eps >= 1e-30,
            "a positive number, at least 1e-30",
        )?;
        real(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
            "zero or a positive number",
        )?;
        int("warmup_epochs", self.warmup_epochs)?;
        if self.warmup_epochs > self.epochs {
            return Err(ConfigError::OutOfRange {
                name: "warmup_epochs",
                value: self.warmup_epochs as i128,
                min: 0,
                max: self.epochs,
            });
        }
        real(
            "lr_floor",
            self.lr_floor,
            (0.0..=self.lr).contains(&self.lr_floor),
            "between 0 and the learning rate",
        )?;
        unit("hidden_dropout", self.hidden_dropout)?;
        unit("input_dropout", self.input_dropout)?;
        unit("label_smoothing", self.label_smoothing)?;
        int("translate", self.translate)?;
        // The step keeps a few (batch × hidden) buffers and the reference evaluation
        // (EVAL_BATCH × hidden) ones; past this they would not fit in memory anywhere.
        let rows = self.batch_size.max(crate::evaluate::EVAL_BATCH);
        checked_whole(
            "hidden×batch_size",
            (self.hidden * rows) as i128,
            1,
            MAX_HIDDEN_TIMES_ROWS,
        )?;
        if let Some(patience) = self.patience {
            int("patience", patience)?;
        }
        if let Some(level) = self.simd
            && !level.is_supported()
        {
            return Err(ConfigError::Simd(SimdLevelError::Unsupported { level }));
        }
        Ok(CheckedConfig(self.clone()))
    }
}

/// `value` as a `usize` if it is in `min..=max`, else [`ConfigError::OutOfRange`].
pub fn checked_whole(
    name: &'static str,
    value: i128,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    match usize::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        }),
    }
}

impl CheckedConfig {
    /// Threads training will use: `threads`, or all cores when 0. (The step uses at most
    /// one per shard of [`SHARD_WIDTH`](crate::engine::SHARD_WIDTH) hidden units; evaluation
    /// uses them all.)
    pub fn train_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            wanted => wanted,
        }
    }
}

impl std::ops::Deref for CheckedConfig {
    type Target = TrainConfig;

    fn deref(&self) -> &TrainConfig {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(TrainConfig::default().validate().is_ok());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let bad = |f: fn(&mut TrainConfig)| {
            let mut c = TrainConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.batch_size = 0),
            "batch_size must be between 1 and 65536, got 0"
        );
        assert_eq!(
            bad(|c| c.hidden = 0),
            "hidden must be between 1 and 65536, got 0"
        );
        assert_eq!(bad(|c| c.lr = 0.0), "lr must be a positive number, got 0");
        assert_eq!(
            bad(|c| c.lr = f32::NAN),
            "lr must be a positive number, got NaN"
        );
        assert_eq!(
            bad(|c| c.lr = f32::INFINITY),
            "lr must be a positive number, got inf"
        );
        assert_eq!(
            bad(|c| c.lr_decay = 1.5),
            "lr_decay must be in (0, 1], got 1.5"
        );
        assert_eq!(
            bad(|c| c.l2 = -1.0),
            "l2 must be zero or a positive number, got -1"
        );
    }
}
