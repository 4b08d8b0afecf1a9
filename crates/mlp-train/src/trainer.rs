//! The training loop, top to bottom: shuffle, mini-batch forward/backward/step, validate,
//! keep the best parameters.

use std::time::Instant;

use mlp_core::{BatchMetrics, Mlp, ModelError, Shape};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::CheckedConfig;
use crate::data::LabelledData;
use crate::engine::Engine;
use crate::history::{EpochRecord, History};
use crate::sgd::{ExponentialDecay, Sgd};

/// What a finished training run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The parameters after the epoch with the highest validation accuracy.
    pub best_model: Mlp,
    /// That epoch (1-based).
    pub best_epoch: usize,
    /// Its validation accuracy.
    pub best_val_acc: f64,
    /// Every epoch's measurements.
    pub history: History,
}

/// Why training stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error(
        "training diverged in epoch {epoch} (loss {loss}); try a smaller learning rate than {lr}"
    )]
    Diverged {
        /// The epoch (1-based).
        epoch: usize,
        /// The offending loss value.
        loss: f64,
        /// The learning rate in use.
        lr: f32,
    },
    /// Training or validation data is unusable with this model.
    #[error("{0}")]
    Data(String),
    /// The network could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The worker threads could not be started.
    #[error("cannot start {threads} training threads: {reason}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// What the system said.
        reason: String,
    },
}

/// Trains a network on `train_data`, choosing the parameters by accuracy on `val_data`.
/// `on_epoch` sees each epoch's record as soon as it is measured (for logs and progress).
///
/// Deterministic: the same config and data give bit-identical results, because one seeded RNG
/// drives initialisation and shuffling and every reduction runs in a fixed order.
pub fn train(
    config: &CheckedConfig,
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    on_epoch: impl FnMut(&EpochRecord) + Send,
) -> Result<TrainOutcome, TrainError> {
    check_data(train_data, val_data)?;
    let threads = config.step_threads();
    if threads == 1 {
        return train_loop(config, train_data, val_data, false, on_epoch);
    }
    // A pool of exactly the step's threads, with the loop itself on one of them, so that the
    // joins inside each step are cheap.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| TrainError::Threads {
            threads,
            reason: e.to_string(),
        })?;
    pool.install(|| train_loop(config, train_data, val_data, true, on_epoch))
}

fn train_loop(
    config: &CheckedConfig,
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    parallel: bool,
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<TrainOutcome, TrainError> {
    let shape = Shape {
        inputs: train_data.features(),
        hidden: config.hidden,
        classes: train_data.classes(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let initial = Mlp::new(shape, config.activation, &mut rng)?;
    let schedule = ExponentialDecay {
        initial: config.lr,
        decay: config.lr_decay,
    };
    let mut sgd = Sgd::new(config.lr, config.l2);

    // The optimised step computes Mlp::forward, Mlp::backward and Sgd::step (see engine.rs);
    // it owns every buffer the loop needs, allocated once.
    let batch_size = config.batch_size.min(train_data.len());
    let mut engine = Engine::new(&initial, batch_size, parallel);
    let mut order: Vec<usize> = (0..train_data.len()).collect();

    let mut history = History::default();
    let mut best = TrainOutcome {
        best_model: initial,
        best_epoch: 0,
        best_val_acc: f64::NEG_INFINITY,
        history: History::default(),
    };
    for epoch in 0..config.epochs {
        let started = Instant::now();
        sgd.lr = schedule.at(epoch);
        order.shuffle(&mut rng);
        let mut train_metrics = BatchMetrics::default();
        let mut grad_norm_sum = 0.0;

        for (k, batch) in order.chunks(batch_size).enumerate() {
            let next = order
                .get((k + 1) * batch_size..)
                .map_or(&[][..], |rest| &rest[..rest.len().min(batch_size)]);
            let step = engine.train_step(train_data, batch, next, &sgd);
            if !step.metrics.loss_sum.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    loss: step.metrics.loss_sum,
                    lr: sgd.lr,
                });
            }
            grad_norm_sum += step.grad_norm;
            train_metrics.merge(step.metrics);
        }

        let val = engine.evaluate(val_data);
        if !val.loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch: epoch + 1,
                loss: val.loss,
                lr: sgd.lr,
            });
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: train_metrics.mean_loss(),
            train_acc: train_metrics.accuracy(),
            val_loss: val.loss,
            val_acc: val.accuracy(),
            grad_norm: grad_norm_sum / order.len().div_ceil(batch_size) as f64,
            lr: sgd.lr as f64,
            epoch_seconds: started.elapsed().as_secs_f64(),
        };
        history.push(&record);
        if record.val_acc > best.best_val_acc {
            engine.copy_to(&mut best.best_model);
            best.best_epoch = record.epoch;
            best.best_val_acc = record.val_acc;
        }
        on_epoch(&record);
    }
    best.history = history;
    Ok(best)
}

fn check_data(
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
) -> Result<(), TrainError> {
    let problem = if train_data.is_empty() {
        Some("the training set is empty".to_owned())
    } else if val_data.is_empty() {
        Some("the validation set is empty".to_owned())
    } else if train_data.features() != val_data.features()
        || train_data.classes() != val_data.classes()
    {
        Some(format!(
            "training data has {} features and {} classes, validation data {} and {}",
            train_data.features(),
            train_data.classes(),
            val_data.features(),
            val_data.classes()
        ))
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(TrainError::Data(p)))
}
