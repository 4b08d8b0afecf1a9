//! The training loop, top to bottom: shuffle, mini-batch forward/backward/step, validate,
//! keep the best parameters; and its state, so that a run can stop between two mini-batches
//! and continue later exactly as if it never had.

use std::time::Instant;

use mlp_core::{BatchMetrics, Mlp, ModelError, Shape, SimdLevel, SimdLevelError};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{PartialEpoch, TrainState};
use crate::config::{CheckedConfig, TrainConfig};
use crate::data::LabelledData;
use crate::engine::{Engine, Sample};
use crate::history::{EpochRecord, History};
use crate::regularise::batch_key;

/// What a finished training run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The parameters after the epoch with the highest validation accuracy (the last epoch's
    /// in a run without a validation set).
    pub best_model: Mlp,
    /// That epoch (1-based).
    pub best_epoch: usize,
    /// Its validation accuracy (none without a validation set).
    pub best_val_acc: Option<f64>,
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
    /// A parameter became NaN or infinite while the losses stayed finite (the sparse passes
    /// never multiply the weights of pixels that are 0 in every image they see). Caught
    /// before such parameters reach a checkpoint, which could not be resumed.
    #[error(
        "training diverged in epoch {epoch} ({parameter}{}{of} is no longer finite); try a smaller learning rate than {lr}",
        if of.is_empty() { "" } else { " of " }
    )]
    DivergedWeights {
        /// The epoch (1-based).
        epoch: usize,
        /// The first parameter holding NaN or an infinity.
        parameter: &'static str,
        /// Empty for the parameter itself, else which of the optimiser's moments of it.
        of: &'static str,
        /// The learning rate in use.
        lr: f32,
    },
    /// Training or validation data is unusable with this model.
    #[error("{0}")]
    Data(String),
    /// The network could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A saved state does not fit this data or is inconsistent.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// The configured SIMD level cannot run on this CPU (a run resumed on another machine).
    #[error(transparent)]
    Simd(#[from] SimdLevelError),
}

/// How a run ended.
#[derive(Debug)]
pub enum RunEnd {
    /// All epochs ran, or early stopping ended the run.
    Finished(Box<TrainOutcome>),
    /// `Hooks::stop` asked to stop; the state continues the run with [`run`].
    Interrupted(Box<TrainState>),
}

/// Where a run starts.
#[derive(Debug)]
pub enum Start {
    /// A new run of this configuration.
    Fresh(CheckedConfig),
    /// A saved run, continued.
    Resume(Box<TrainState>),
}

/// Called after each epoch with its record and the run's state (to checkpoint, if wanted).
pub type EpochHook<'a> = Box<dyn FnMut(&EpochRecord, &TrainState) + Send + 'a>;

/// What the caller hears from a run, and how it stops one.
pub struct Hooks<'a> {
    /// After each epoch: its record, and the run's state (to checkpoint, if wanted).
    pub on_epoch: EpochHook<'a>,
    /// After each mini-batch: the epoch (1-based), batches done in it, batches in it, and the
    /// running mean training loss.
    pub on_batch: Box<dyn FnMut(usize, usize, usize, f64) + Send + 'a>,
    /// Checked after each mini-batch; `true` ends the run with [`RunEnd::Interrupted`].
    pub stop: Box<dyn Fn() -> bool + Send + 'a>,
}

impl Default for Hooks<'_> {
    fn default() -> Self {
        Self {
            on_epoch: Box::new(|_, _| {}),
            on_batch: Box::new(|_, _, _, _| {}),
            stop: Box::new(|| false),
        }
    }
}

/// Trains a network on `train_data`, choosing the parameters by accuracy on `val_data`; an
/// empty `val_data` trains without validation and keeps the last epoch's parameters.
/// `on_epoch` sees each epoch's record as soon as it is measured (for logs and progress).
///
/// Deterministic: the same config and data give bit-identical results, because one seeded RNG
/// drives initialisation and shuffling and every reduction runs in a fixed order.
pub fn train(
    config: &CheckedConfig,
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    mut on_epoch: impl FnMut(&EpochRecord) + Send,
) -> Result<TrainOutcome, TrainError> {
    let hooks = Hooks {
        on_epoch: Box::new(|record, _| on_epoch(record)),
        ..Hooks::default()
    };
    match run(Start::Fresh(config.clone()), train_data, val_data, hooks)? {
        RunEnd::Finished(outcome) => Ok(*outcome),
        RunEnd::Interrupted(_) => unreachable!("the default hooks never stop a run"),
    }
}

/// Runs (or continues) training, reporting through `hooks`, until the last epoch, early
/// stopping, or `hooks.stop`. A run interrupted and continued with its state gives the same
/// parameters, bit for bit, as one never interrupted.
pub fn run(
    start: Start,
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    hooks: Hooks,
) -> Result<RunEnd, TrainError> {
    let state = match start {
        Start::Fresh(config) => {
            let shape = Shape {
                inputs: train_data.features(),
                hidden: config.hidden,
                classes: train_data.classes(),
            };
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            let model = Mlp::new(shape, config.activation, &mut rng)?;
            let mut state = TrainState::new(TrainConfig::clone(&config), model, rng);
            state.moments = vec![Mlp::zeros(shape, config.activation); config.optimizer.moments()];
            state
        }
        Start::Resume(state) => {
            check_resume(&state, train_data)?;
            *state
        }
    };
    let config = state
        .config
        .validate()
        .map_err(|e| TrainError::Resume(e.to_string()))?;
    check_data(train_data, val_data, config.patience)?;
    // The engine starts the run's threads itself (the loop runs on this one).
    train_loop(state, train_data, val_data, config.train_threads(), hooks)
}

fn train_loop(
    mut state: TrainState,
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    threads: usize,
    mut hooks: Hooks,
) -> Result<RunEnd, TrainError> {
    let config = state
        .config
        .validate()
        .map_err(|e| TrainError::Resume(e.to_string()))?;
    let optimizer = config.optimizer();
    let regularisers = config.regularisers();

    // The optimised step computes Mlp::forward_training, Mlp::backward_training and
    // Optimizer::step (see engine/); it owns every buffer the loop needs, allocated once.
    let batch_size = config.batch_size.min(train_data.len());
    let level = config.simd.unwrap_or_else(SimdLevel::best);
    let mut engine = Engine::with_level(&state.model, batch_size, threads, level)?;
    engine.set_moments(&state.moments);
    engine
        .set_regularisers(regularisers)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let mut order: Vec<usize> = (0..train_data.len()).collect();
    let batches = order.len().div_ceil(batch_size);
    let schedule = config.lr_schedule(batches);

    // Early stopping is checked before each epoch, so that a run resumed after it stopped
    // stops again rather than training on.
    let patience_spent = |s: &TrainState| {
        config
            .patience
            .is_some_and(|p| s.epochs_done - s.best_epoch >= p)
    };
    while state.epochs_done < config.epochs && !patience_spent(&state) {
        let epoch = state.epochs_done;
        let started = Instant::now();
        let epoch_lr = schedule.at(epoch, 0, batches);
        let mut lr = epoch_lr;
        // A fresh epoch shuffles (and draws its key, if anything is random); an interrupted
        // one continues its own order, key and sums.
        let (mut metrics, mut grad_norm_sum, first_batch, seconds_before, epoch_key) =
            match state.partial.take() {
                Some(p) => {
                    order
                        .iter_mut()
                        .zip(&p.order)
                        .for_each(|(o, &i)| *o = i as usize);
                    (
                        BatchMetrics {
                            loss_sum: p.loss_sum,
                            correct: p.correct,
                            count: p.count,
                        },
                        p.grad_norm_sum,
                        p.batches_done,
                        p.seconds,
                        p.key.unwrap_or(0),
                    )
                }
                None => {
                    // Shuffle from the identity, so that an epoch's order depends on the RNG
                    // state alone (and a resumed run needs nothing else to reproduce it).
                    order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
                    order.shuffle(&mut state.rng);
                    // Only then, so that a run without noise draws what the seed's recipe did.
                    let key = if regularisers.is_random() {
                        state.rng.next_u64()
                    } else {
                        0
                    };
                    (BatchMetrics::default(), 0.0, 0, 0.0, key)
                }
            };
        let key = |k: usize| {
            if regularisers.is_random() {
                batch_key(epoch_key, k)
            } else {
                0
            }
        };

        for k in first_batch..batches {
            let batch = &order[k * batch_size..((k + 1) * batch_size).min(order.len())];
            let next = order
                .get((k + 1) * batch_size..)
                .map_or(&[][..], |rest| &rest[..rest.len().min(batch_size)]);
            lr = schedule.at(epoch, k, batches);
            // Step t of the run, 1-based (Adam's bias correction counts from 1).
            let t = (epoch * batches + k + 1) as u64;
            let step = engine.train_step(
                train_data,
                Sample {
                    indices: batch,
                    key: key(k),
                },
                Sample {
                    indices: next,
                    key: key(k + 1),
                },
                optimizer.update(lr, t),
            );
            if !step.metrics.loss_sum.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    loss: step.metrics.loss_sum,
                    lr,
                });
            }
            grad_norm_sum += step.grad_norm;
            metrics.merge(step.metrics);
            (hooks.on_batch)(epoch + 1, k + 1, batches, metrics.mean_loss());
            if k + 1 < batches && (hooks.stop)() {
                engine.copy_to(&mut state.model);
                state.moments = engine.moments();
                finite(&state, epoch + 1, lr)?;
                state.partial = Some(PartialEpoch {
                    order: order.iter().map(|&i| i as u32).collect(),
                    batches_done: k + 1,
                    loss_sum: metrics.loss_sum,
                    correct: metrics.correct,
                    count: metrics.count,
                    grad_norm_sum,
                    seconds: seconds_before + started.elapsed().as_secs_f64(),
                    key: regularisers.is_random().then_some(epoch_key),
                });
                return Ok(RunEnd::Interrupted(Box::new(state)));
            }
        }

        let val = (!val_data.is_empty()).then(|| engine.evaluate(val_data));
        if let Some(val) = &val
            && !val.loss.is_finite()
        {
            return Err(TrainError::Diverged {
                epoch: epoch + 1,
                loss: val.loss,
                lr,
            });
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: metrics.mean_loss(),
            train_acc: metrics.accuracy(),
            val_loss: val.as_ref().map(|v| v.loss),
            val_acc: val.as_ref().map(|v| v.accuracy()),
            grad_norm: grad_norm_sum / batches as f64,
            lr: epoch_lr as f64,
            epoch_seconds: seconds_before + started.elapsed().as_secs_f64(),
        };
        state.history.push(&record);
        state.epochs_done += 1;
        engine.copy_to(&mut state.model);
        state.moments = engine.moments();
        finite(&state, epoch + 1, lr)?;
        // Without validation, the latest epoch is the one kept.
        let val_acc = record.val_acc.unwrap_or(f64::NEG_INFINITY);
        if val_acc > state.best_val_acc || record.val_acc.is_none() {
            state.best_model.clone_from(&state.model);
            state.best_epoch = record.epoch;
            state.best_val_acc = val_acc;
        }
        (hooks.on_epoch)(&record, &state);
        if state.epochs_done < config.epochs && !patience_spent(&state) && (hooks.stop)() {
            return Ok(RunEnd::Interrupted(Box::new(state)));
        }
    }
    Ok(RunEnd::Finished(Box::new(TrainOutcome {
        best_model: state.best_model,
        best_epoch: state.best_epoch,
        best_val_acc: (!val_data.is_empty()).then_some(state.best_val_acc),
        history: state.history,
    })))
}

/// An error unless every parameter of the state's model, and every moment of its optimiser,
/// is finite: checked before a state leaves the loop (to a checkpoint or an interrupted
/// run's file, which could not be read back otherwise).
fn finite(state: &TrainState, epoch: usize, lr: f32) -> Result<(), TrainError> {
    let moments = state
        .moments
        .iter()
        .zip(["the first moment", "the second moment"]);
    let bad = std::iter::once((&state.model, ""))
        .chain(moments)
        .find_map(|(m, of)| m.first_non_finite().map(|p| (p, of)));
    match bad {
        Some((parameter, of)) => Err(TrainError::DivergedWeights {
            epoch,
            parameter,
            of,
            lr,
        }),
        None => Ok(()),
    }
}

fn check_resume(state: &TrainState, train_data: &dyn LabelledData) -> Result<(), TrainError> {
    let shape = state.model.shape();
    if shape.inputs != train_data.features() || shape.classes != train_data.classes() {
        return Err(TrainError::Resume(format!(
            "the saved model is {shape}, but the data has {} features and {} classes",
            train_data.features(),
            train_data.classes()
        )));
    }
    let moments = state.config.optimizer.moments();
    if state.moments.len() != moments || state.moments.iter().any(|m| m.shape() != shape) {
        return Err(TrainError::Resume(format!(
            "the {} optimiser keeps {moments} moments of the model's shape, the state has {}",
            state.config.optimizer,
            state.moments.len()
        )));
    }
    if let Some(p) = &state.partial
        && (p.order.len() != train_data.len()
            || p.order.iter().any(|&i| i as usize >= train_data.len()))
    {
        return Err(TrainError::Resume(format!(
            "the saved epoch covers {} training examples, but the data has {}",
            p.order.len(),
            train_data.len()
        )));
    }
    // An epoch interrupted in a run that draws noise must have its key (the validation of
    // the config has made the regularisers safe to build).
    if let (Some(p), Ok(config)) = (&state.partial, state.config.validate())
        && config.regularisers().is_random() != p.key.is_some()
    {
        return Err(TrainError::Resume(
            "the saved epoch's key for dropout and augmentation does not match the settings"
                .to_owned(),
        ));
    }
    Ok(())
}

fn check_data(
    train_data: &dyn LabelledData,
    val_data: &dyn LabelledData,
    patience: Option<usize>,
) -> Result<(), TrainError> {
    let problem = if train_data.is_empty() {
        Some("the training set is empty".to_owned())
    } else if val_data.is_empty() && patience.is_some() {
        Some("early stopping (patience) needs a validation set".to_owned())
    } else if val_data.is_empty() {
        None
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
