//! Everything needed to continue a training run bit for bit, and its file, checkpoint.msgpack.
//!
//! A checkpoint is a MessagePack map whose first two entries are `magic`
//! (`"fmnist-mlp checkpoint"`) and `version` (2), like the model file, so that a model file,
//! a damaged checkpoint or one from another version each get their own message. The rest:
//! `config`, `model` and `best_model` (each a complete model file, as bytes), `best_epoch`,
//! `best_val_acc`, `history`, `epochs_done`, `rng` (the ChaCha8 state), `partial`, the
//! progress through an epoch that was interrupted between two mini-batches (its shuffled
//! order, the next batch, the running sums, and the epoch's key when the run draws noise), or
//! nil at an epoch boundary, and `moments`, the optimiser's (each a complete model file, as
//! bytes: none for SGD, and none in checkpoints written before optimisers had them).

use std::path::{Path, PathBuf};

use mlp_core::Mlp;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::fsio::{WriteError, write_atomic};
use crate::history::History;
use crate::model_file::{Envelope, ModelFileError, envelope, model_from_bytes, model_to_bytes};

/// The value of the `magic` field.
pub const CHECKPOINT_MAGIC: &str = "fmnist-mlp checkpoint";
/// The format version this build writes and reads. 2 since the arithmetic became the same on
/// every CPU (fused multiply-adds everywhere, `libm`): a run saved by version 1 would not
/// continue as it started.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;

/// A training run between two mini-batches.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The run's hyperparameters.
    pub config: TrainConfig,
    /// Current parameters.
    pub model: Mlp,
    /// Parameters after the best validation epoch so far.
    pub best_model: Mlp,
    /// That epoch (1-based; 0 before the first).
    pub best_epoch: usize,
    /// Its validation accuracy.
    pub best_val_acc: f64,
    /// Every finished epoch's measurements.
    pub history: History,
    /// Epochs finished.
    pub epochs_done: usize,
    /// The random generator, as it will continue.
    pub rng: ChaCha8Rng,
    /// How far the current epoch got, if it was interrupted in the middle.
    pub partial: Option<PartialEpoch>,
    /// The optimiser's moments, each laid out as the model (none for SGD).
    pub moments: Vec<Mlp>,
}

impl TrainState {
    /// The state before the first epoch: `model` freshly initialised, `rng` as left by that.
    pub fn new(config: TrainConfig, model: Mlp, rng: ChaCha8Rng) -> Self {
        Self {
            config,
            best_model: model.clone(),
            model,
            best_epoch: 0,
            best_val_acc: f64::NEG_INFINITY,
            history: History::default(),
            epochs_done: 0,
            rng,
            partial: None,
            moments: Vec::new(),
        }
    }
}

/// Progress through an interrupted epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// The epoch's shuffled order of training examples.
    pub order: Vec<u32>,
    /// Mini-batches already done.
    pub batches_done: usize,
    /// Running sums of the epoch's training loss, correct count, examples and gradient norms.
    pub loss_sum: f64,
    /// See `loss_sum`.
    pub correct: usize,
    /// See `loss_sum`.
    pub count: usize,
    /// See `loss_sum`.
    pub grad_norm_sum: f64,
    /// Seconds spent on the epoch so far.
    pub seconds: f64,
    /// The epoch's key for augmentation and dropout (see `regularise`), if the run draws any.
    #[serde(default)]
    pub key: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointRecord {
    magic: String,
    version: u32,
    config: TrainConfig,
    #[serde(with = "serde_bytes")]
    model: Vec<u8>,
    #[serde(with = "serde_bytes")]
    best_model: Vec<u8>,
    best_epoch: usize,
    best_val_acc: f64,
    history: History,
    epochs_done: usize,
    rng: ChaCha8Rng,
    partial: Option<PartialEpoch>,
    #[serde(default)]
    moments: Vec<serde_bytes::ByteBuf>,
}

/// A checkpoint that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a checkpoint.
    #[error("{}: not an fmnist-mlp checkpoint (expected the checkpoint.msgpack that `mlp train` writes)", path.display())]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// The checkpoint has another format version.
    #[error(
        "{}: checkpoint format version {found}, but this build reads version {supported}; \
         finish the run with the mlp version that started it, or start again",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file claims to be a checkpoint but its content is damaged or inconsistent.
    #[error("{}: damaged checkpoint: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Writes `state` to `path` atomically.
pub fn save_checkpoint(path: &Path, state: &TrainState) -> Result<(), WriteError> {
    let record = CheckpointRecord {
        magic: CHECKPOINT_MAGIC.to_owned(),
        version: CHECKPOINT_FORMAT_VERSION,
        config: state.config.clone(),
        model: model_to_bytes(&state.model, &[]),
        best_model: model_to_bytes(&state.best_model, &[]),
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        history: state.history.clone(),
        epochs_done: state.epochs_done,
        rng: state.rng.clone(),
        partial: state.partial.clone(),
        moments: state
            .moments
            .iter()
            .map(|m| serde_bytes::ByteBuf::from(model_to_bytes(m, &[])))
            .collect(),
    };
    write_atomic(
        path,
        &rmp_serde::to_vec_named(&record).expect("a checkpoint always serialises"),
    )
}

/// Reads and checks a checkpoint.
pub fn load_checkpoint(path: &Path) -> Result<TrainState, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    checkpoint_from_bytes(&bytes, path)
}

/// Decodes checkpoint bytes; `path` is only used in error messages.
pub fn checkpoint_from_bytes(bytes: &[u8], path: &Path) -> Result<TrainState, CheckpointError> {
    let path = path.to_owned();
    match envelope(bytes, CHECKPOINT_MAGIC, CHECKPOINT_FORMAT_VERSION) {
        Envelope::Current => {}
        Envelope::OtherVersion(found) => {
            return Err(CheckpointError::Version {
                path,
                found,
                supported: CHECKPOINT_FORMAT_VERSION,
            });
        }
        Envelope::Foreign => return Err(CheckpointError::NotACheckpoint { path }),
    }
    let corrupt = |detail: String| CheckpointError::Corrupt {
        path: path.clone(),
        detail,
    };
    let r: CheckpointRecord = rmp_serde::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let model = |bytes: &[u8]| {
        model_from_bytes(bytes, &path)
            .map(|m| m.model)
            .map_err(|e: ModelFileError| corrupt(e.to_string()))
    };
    let state = TrainState {
        model: model(&r.model)?,
        best_model: model(&r.best_model)?,
        config: r.config,
        best_epoch: r.best_epoch,
        best_val_acc: r.best_val_acc,
        history: r.history,
        epochs_done: r.epochs_done,
        rng: r.rng,
        partial: r.partial,
        moments: r
            .moments
            .iter()
            .map(|m| model(m))
            .collect::<Result<_, _>>()?,
    };
    if state.history.len() != state.epochs_done || state.best_epoch > state.epochs_done {
        return Err(corrupt(format!(
            "{} epochs done but {} in the history",
            state.epochs_done,
            state.history.len()
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_core::{Activation, Shape};
    use rand::SeedableRng;

    fn state() -> TrainState {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let model = Mlp::new(
            Shape {
                inputs: 4,
                hidden: 3,
                classes: 2,
            },
            Activation::Relu,
            &mut rng,
        )
        .unwrap();
        TrainState {
            partial: Some(PartialEpoch {
                order: vec![2, 0, 1],
                batches_done: 1,
                loss_sum: 1.5,
                correct: 1,
                count: 2,
                grad_norm_sum: 0.25,
                seconds: 0.1,
                key: Some(7),
            }),
            ..TrainState::new(TrainConfig::default(), model, rng)
        }
    }

    #[test]
    fn round_trip_is_exact_rng_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.msgpack");
        let mut original = state();
        save_checkpoint(&path, &original).unwrap();
        let mut loaded = load_checkpoint(&path).unwrap();
        assert_eq!(loaded, original);
        use rand::Rng;
        assert_eq!(loaded.rng.next_u64(), original.rng.next_u64());
    }

    #[test]
    fn a_model_file_is_not_a_checkpoint() {
        let m = state().model;
        let err =
            checkpoint_from_bytes(&model_to_bytes(&m, &[]), Path::new("x.msgpack")).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NotACheckpoint { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_checkpoint_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        save_checkpoint(&path, &state()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let err = checkpoint_from_bytes(&bytes[..bytes.len() / 2], &path).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }
}
