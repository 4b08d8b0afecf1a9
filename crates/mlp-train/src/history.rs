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
    /// Mean cross-entropy on the validation set after the epoch (none in a run without one).
    pub val_loss: Option<f64>,
    /// Accuracy on the validation set after the epoch (none in a run without one).
    pub val_acc: Option<f64>,
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
    /// See [`EpochRecord::val_loss`] (empty in a run without a validation set).
    pub val_loss: Vec<f64>,
    /// See [`EpochRecord::val_acc`] (empty in a run without a validation set).
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
        self.val_loss.extend(r.val_loss);
        self.val_acc.extend(r.val_acc);
        self.grad_norm.push(r.grad_norm);
        self.lr.push(r.lr);
        self.epoch_seconds.push(r.epoch_seconds);
    }

    /// Number of epochs recorded.
    pub fn len(&self) -> usize {
        self.train_loss.len()
    }

    /// True before the first epoch.
    pub fn is_empty(&self) -> bool {
        self.train_loss.is_empty()
    }

    /// Whether the run measured a validation set (every epoch, or none).
    pub fn validated(&self) -> bool {
        !self.val_acc.is_empty() || self.is_empty()
    }

    /// Epoch `i`'s record (0-based), if there is one.
    pub fn record(&self, i: usize) -> Option<EpochRecord> {
        Some(EpochRecord {
            epoch: i + 1,
            train_loss: *self.train_loss.get(i)?,
            train_acc: *self.train_acc.get(i)?,
            val_loss: self.val_loss.get(i).copied(),
            val_acc: self.val_acc.get(i).copied(),
            grad_norm: *self.grad_norm.get(i)?,
            lr: *self.lr.get(i)?,
            epoch_seconds: *self.epoch_seconds.get(i)?,
        })
    }
}
