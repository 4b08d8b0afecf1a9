//! Per-epoch measurements of a training run, kept as parallel series (one value per epoch) so
//! that `history.json` plots directly.

use serde::{Deserialize, Serialize};

/// What one epoch measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's mini-batches, measured as the weights changed.
    pub train_loss: f64,
    /// Accuracy over the epoch's mini-batches, measured the same way.
    pub train_acc: f64,
    /// Mean cross-entropy on the validation set after the epoch.
    pub val_loss: f64,
    /// Accuracy on the validation set after the epoch.
    pub val_acc: f64,
    /// Mean over mini-batches of the Euclidean norm of the data-loss gradient (all parameters).
    pub grad_norm: f64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Wall-clock seconds of the epoch, validation included.
    pub epoch_seconds: f64,
}

/// Every epoch's measurements, one series per quantity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// See [`EpochRecord::train_loss`].
    pub train_loss: Vec<f64>,
    /// See [`EpochRecord::train_acc`].
    pub train_acc: Vec<f64>,
    /// See [`EpochRecord::val_loss`].
    pub val_loss: Vec<f64>,
    /// See [`EpochRecord::val_acc`].
    pub val_acc: Vec<f64>,
    /// See [`EpochRecord::grad_norm`].
    pub grad_norm: Vec<f64>,
    /// See [`EpochRecord::lr`].
    pub lr: Vec<f64>,
    /// See [`EpochRecord::epoch_seconds`].
    pub epoch_seconds: Vec<f64>,
}

impl History {
    /// Appends one epoch.
    pub fn push(&mut self, r: &EpochRecord) {
        self.train_loss.push(r.train_loss);
        self.train_acc.push(r.train_acc);
        self.val_loss.push(r.val_loss);
        self.val_acc.push(r.val_acc);
        self.grad_norm.push(r.grad_norm);
        self.lr.push(r.lr);
        self.epoch_seconds.push(r.epoch_seconds);
    }

    /// Number of epochs recorded.
    pub fn len(&self) -> usize {
        self.val_acc.len()
    }

    /// True before the first epoch.
    pub fn is_empty(&self) -> bool {
        self.val_acc.is_empty()
    }
}
