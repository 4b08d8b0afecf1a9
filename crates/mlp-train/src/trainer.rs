//! The training loop, top to bottom: shuffle, mini-batch forward/backward/step, validate,
//! keep the best parameters.

use std::time::Instant;

use mlp_core::{BatchMetrics, Mlp, ModelError, Shape, Workspace};
use ndarray::{Array2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::CheckedConfig;
use crate::data::LabelledData;
use crate::evaluate::Evaluator;
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
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<TrainOutcome, TrainError> {
    check_data(train_data, val_data)?;
    let shape = Shape {
        inputs: train_data.features(),
        hidden: config.hidden,
        classes: train_data.classes(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut model = Mlp::new(shape, config.activation, &mut rng)?;
    let schedule = ExponentialDecay {
        initial: config.lr,
        decay: config.lr_decay,
    };
    let mut sgd = Sgd::new(config.lr, config.l2);

    // Every buffer the loop needs, allocated once.
    let batch_size = config.batch_size.min(train_data.len());
    let mut x = Array2::<f32>::zeros((batch_size, shape.inputs));
    let mut y = vec![0usize; batch_size];
    let mut ws = Workspace::new(shape, batch_size);
    let mut evaluator = Evaluator::new(&model);
    let mut order: Vec<usize> = (0..train_data.len()).collect();

    let mut history = History::default();
    let mut best = TrainOutcome {
        best_model: model.clone(),
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
        let diverged = |loss| TrainError::Diverged {
            epoch: epoch + 1,
            loss,
            lr: sgd.lr,
        };

        for batch in order.chunks(batch_size) {
            let n = batch.len();
            let x_rows = &mut x.as_slice_mut().expect("standard layout")[..n * shape.inputs];
            train_data.gather(batch, x_rows, &mut y[..n]);
            let (xb, yb) = (x.slice(s![..n, ..]), &y[..n]);

            let metrics = model.forward(xb, yb, &mut ws);
            if !metrics.loss_sum.is_finite() {
                return Err(diverged(metrics.loss_sum));
            }
            let grads = model.backward(xb, yb, &mut ws);
            grad_norm_sum += grads.norm() as f64;
            sgd.step(&mut model, grads);
            train_metrics.merge(metrics);
        }

        let val = evaluator.evaluate(&model, val_data);
        if !val.loss.is_finite() {
            return Err(diverged(val.loss));
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
            best.best_model.clone_from(&model);
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
