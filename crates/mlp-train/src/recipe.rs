//! What a checked configuration means to the training loop (its optimiser, learning-rate
//! schedule and regularisers, each a small value of its own module), and the named recipe
//! `mlp train --recipe best`.

use mlp_core::noise::Dropout;

use crate::config::{CheckedConfig, TrainConfig};
use crate::optim::{Optimizer, OptimizerKind};
use crate::regularise::{Augmentation, Regularisers};
use crate::schedule::{Cosine, ExponentialDecay, Schedule, ScheduleKind};

impl TrainConfig {
    /// The most accurate recipe we found (`mlp train --recipe best`; how it was chosen, on
    /// the validation set only, is in docs/ACCURACY.md). Trained on all 60,000 images.
    pub fn best() -> Self {
        Self {
            hidden: 1024,
            epochs: 100,
            lr: 0.02,
            l2: 5e-5,
            optimizer: OptimizerKind::Nesterov,
            momentum: 0.9,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 1,
            hidden_dropout: 0.2,
            input_dropout: 0.1,
            flip: true,
            ..Self::default()
        }
    }
}

impl CheckedConfig {
    /// The optimiser these settings describe.
    pub fn optimizer(&self) -> Optimizer {
        Optimizer {
            kind: self.optimizer,
            l2: self.l2,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }

    /// The learning-rate schedule, for epochs of `steps_per_epoch` steps.
    pub fn lr_schedule(&self, steps_per_epoch: usize) -> Schedule {
        match self.schedule {
            ScheduleKind::Exponential => Schedule::Exponential(ExponentialDecay {
                initial: self.lr,
                decay: self.lr_decay,
            }),
            ScheduleKind::Cosine => Schedule::Cosine(Cosine {
                peak: self.lr,
                floor: self.lr_floor,
                warmup: self.warmup_epochs * steps_per_epoch,
                total: self.epochs * steps_per_epoch,
            }),
        }
    }

    /// The regularisers of a training step (L2 is the optimiser's).
    pub fn regularisers(&self) -> Regularisers {
        Regularisers {
            hidden_dropout: Dropout::new(self.hidden_dropout),
            input_dropout: Dropout::new(self.input_dropout),
            label_smoothing: self.label_smoothing,
            augmentation: (self.translate > 0 || self.flip).then_some(Augmentation {
                translate: self.translate,
                flip: self.flip,
            }),
        }
    }
}
