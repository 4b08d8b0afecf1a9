//! Training for `mlp-core` networks: mini-batch SGD (plain, with momentum or Nesterov
//! momentum), Adam and AdamW, with L2 or decoupled weight decay; learning-rate schedules
//! (exponential per epoch, cosine with warm-up per step); dropout, label smoothing and image
//! augmentation; the training loop with validation and best-model selection, checkpoints
//! that resume bit for bit, the per-epoch history, evaluation (loss, accuracy, confusion
//! matrix) and model files (ours, and safetensors in our layout or PyTorch's).
//!
//! It trains on any [`LabelledData`], not only images:
//! ```
//! use mlp_train::{InMemoryData, TrainConfig, train};
//! use ndarray::Array2;
//!
//! // Two classes: is x0 + x1 above 1?
//! let x = Array2::from_shape_fn((400, 2), |(i, j)| ((i * 7 + j * 13) % 20) as f32 / 10.0);
//! let y: Vec<usize> = x.rows().into_iter().map(|r| (r[0] + r[1] > 1.0) as usize).collect();
//! let data = InMemoryData::new(x, y, 2)?;
//! let config = TrainConfig { hidden: 16, epochs: 30, batch_size: 16, lr: 0.2, ..Default::default() };
//! let outcome = train(&config.validate()?, &data, &data, |_| {})?;
//! assert!(outcome.best_val_acc.unwrap() > 0.9);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod engine;
pub mod evaluate;
pub mod fsio;
pub mod history;
pub mod model_file;
pub mod optim;
pub mod recipe;
pub mod regularise;
pub mod safetensors_file;
pub mod schedule;
pub mod sgd;
pub mod trainer;

pub use checkpoint::{CheckpointError, PartialEpoch, TrainState, load_checkpoint, save_checkpoint};
pub use config::{CheckedConfig, ConfigError, TrainConfig, checked_whole};
pub use data::{ByteImages, InMemoryData, LabelledData, PIXEL_VALUES};
pub use engine::{Engine, EngineError, Sample, StepStats};
pub use evaluate::{Evaluation, Evaluator, evaluate};
pub use fsio::{WriteError, write_atomic, write_json_atomic};
pub use history::{EpochRecord, History};
pub use model_file::{ModelFileError, SavedModel, load_model, save_model};
pub use optim::{Optimizer, OptimizerKind};
pub use regularise::{Augmentation, Regularisers};
pub use safetensors_file::{
    Layout, SafetensorsError, model_from_safetensors, model_to_safetensors,
};
pub use schedule::{Cosine, ExponentialDecay, Schedule, ScheduleKind};
pub use sgd::Sgd;
pub use trainer::{EpochHook, Hooks, RunEnd, Start, TrainError, TrainOutcome, run, train};

/// The README's example, compiled and run as a test so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
