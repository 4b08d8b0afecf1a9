//! Stopping a run between two mini-batches, saving it, and continuing from the file gives the
//! same model, bit for bit, as never stopping.

use std::sync::atomic::{AtomicUsize, Ordering};

use mlp_core::Activation;
use mlp_train::{
    CheckedConfig, Hooks, InMemoryData, OptimizerKind, RunEnd, ScheduleKind, Start, TrainConfig,
    TrainOutcome, load_checkpoint, run, save_checkpoint,
};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn data(n: usize, seed: u64) -> InMemoryData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // 25 features: 5 × 5 images, so that augmentation applies.
    let x = Array2::from_shape_simple_fn((n, 25), || {
        if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.0..1.0)
        }
    });
    let y = x
        .rows()
        .into_iter()
        .map(|r| ((r[0] + r[1] + r[2]) * 1.5) as usize % 3)
        .collect();
    InMemoryData::new(x, y, 3).unwrap()
}

fn config(threads: usize) -> CheckedConfig {
    TrainConfig {
        hidden: 12,
        activation: Activation::Tanh,
        epochs: 4,
        batch_size: 16,
        lr: 0.3,
        seed: 5,
        threads,
        ..Default::default()
    }
    .validate()
    .unwrap()
}

/// Runs to the end, stopping after each listed count of mini-batches (counted across
/// restarts) and continuing from a checkpoint file each time.
fn run_with_stops(stops: &[usize], threads_after_stop: usize) -> TrainOutcome {
    run_config_with_stops(config(2), stops, threads_after_stop)
}

/// [`run_with_stops`] for `config`.
fn run_config_with_stops(
    config: CheckedConfig,
    stops: &[usize],
    threads_after_stop: usize,
) -> TrainOutcome {
    let (train, val) = (data(300, 1), data(60, 2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.msgpack");
    let batches = AtomicUsize::new(0);
    let mut start = Start::Fresh(config);
    loop {
        let hooks = Hooks {
            on_batch: Box::new(|_, _, _, _| {
                batches.fetch_add(1, Ordering::SeqCst);
            }),
            stop: Box::new(|| stops.contains(&batches.load(Ordering::SeqCst))),
            ..Hooks::default()
        };
        match run(start, &train, &val, hooks).unwrap() {
            RunEnd::Finished(outcome) => return *outcome,
            RunEnd::Interrupted(state) => {
                save_checkpoint(&path, &state).unwrap();
                let mut state = load_checkpoint(&path).unwrap();
                state.config.threads = threads_after_stop;
                start = Start::Resume(Box::new(state));
            }
        }
    }
}

/// The history without its wall-clock timings, which differ between any two runs.
fn without_timings(o: &TrainOutcome) -> mlp_train::History {
    mlp_train::History {
        epoch_seconds: Vec::new(),
        ..o.history.clone()
    }
}

#[test]
fn interrupted_and_resumed_runs_equal_the_uninterrupted_one() {
    let whole = run_with_stops(&[], 2);
    // 300 examples in batches of 16: 19 batches an epoch. Stop mid-epoch, at an epoch's
    // last batch, twice in one run, and continue on one thread instead of two.
    for (stops, threads) in [(vec![5], 2), (vec![19], 2), (vec![3, 40], 2), (vec![25], 1)] {
        let resumed = run_with_stops(&stops, threads);
        assert_eq!(resumed.best_model, whole.best_model, "stops {stops:?}");
        assert_eq!(
            (resumed.best_epoch, resumed.best_val_acc),
            (whole.best_epoch, whole.best_val_acc)
        );
        assert_eq!(
            without_timings(&resumed),
            without_timings(&whole),
            "stops {stops:?}"
        );
    }
}

/// The same with an optimiser that keeps moments, a per-step schedule, dropout, label
/// smoothing and augmentation: their state (moments, the epoch's key) survives a checkpoint.
#[test]
fn resumed_runs_with_every_optimizer_and_regulariser_equal_the_uninterrupted_one() {
    for optimizer in [OptimizerKind::Nesterov, OptimizerKind::Adamw] {
        let config = TrainConfig {
            optimizer,
            lr: if optimizer == OptimizerKind::Adamw {
                0.01
            } else {
                0.05
            },
            weight_decay: 0.01,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 1,
            lr_floor: 0.001,
            hidden_dropout: 0.25,
            input_dropout: 0.1,
            label_smoothing: 0.1,
            translate: 1,
            flip: true,
            ..TrainConfig::clone(&config(2))
        }
        .validate()
        .unwrap();
        let whole = run_config_with_stops(config.clone(), &[], 2);
        for (stops, threads) in [(vec![5], 2), (vec![19], 1), (vec![3, 40], 3)] {
            let resumed = run_config_with_stops(config.clone(), &stops, threads);
            assert_eq!(
                resumed.best_model, whole.best_model,
                "{optimizer}, stops {stops:?}"
            );
            assert_eq!(
                without_timings(&resumed),
                without_timings(&whole),
                "{optimizer}, stops {stops:?}"
            );
        }
        // And the noise is drawn: the same run without it trains another model.
        let plain = TrainConfig {
            hidden_dropout: 0.0,
            input_dropout: 0.0,
            translate: 0,
            flip: false,
            ..TrainConfig::clone(&config)
        };
        let plain = run_config_with_stops(plain.validate().unwrap(), &[], 2);
        assert_ne!(plain.best_model, whole.best_model);
    }
}

/// Regression: a checkpoint of a noisy run's interrupted epoch without its key resumed with
/// key 0, silently drawing other masks than the run had.
#[test]
fn an_interrupted_noisy_epoch_without_its_key_is_refused() {
    let config = TrainConfig {
        hidden_dropout: 0.25,
        ..TrainConfig::clone(&config(1))
    }
    .validate()
    .unwrap();
    let (train, val) = (data(300, 1), data(60, 2));
    let hooks = Hooks {
        stop: Box::new(|| true),
        ..Hooks::default()
    };
    let RunEnd::Interrupted(mut state) = run(Start::Fresh(config), &train, &val, hooks).unwrap()
    else {
        panic!("the run stops after its first mini-batch");
    };
    assert!(state.partial.as_ref().unwrap().key.is_some());
    state.partial.as_mut().unwrap().key = None;
    let err = run(Start::Resume(state), &train, &val, Hooks::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot resume: the saved epoch's key for dropout and augmentation does not match the settings"
    );
}

/// Without a validation set the kept model is the last epoch's, however the epochs went.
#[test]
fn without_validation_the_last_epoch_is_kept() {
    let train = data(300, 1);
    let empty = InMemoryData::new(Array2::zeros((0, 25)), Vec::new(), 3).unwrap();
    let last = std::sync::Mutex::new(None);
    let hooks = Hooks {
        on_epoch: Box::new(|record, state| {
            assert_eq!((record.val_loss, record.val_acc), (None, None));
            *last.lock().unwrap() = Some((record.epoch, state.model.clone()));
        }),
        ..Hooks::default()
    };
    let RunEnd::Finished(outcome) = run(Start::Fresh(config(2)), &train, &empty, hooks).unwrap()
    else {
        panic!("the run finished");
    };
    let (epoch, model) = last.into_inner().unwrap().unwrap();
    assert_eq!((outcome.best_epoch, epoch), (4, 4));
    assert_eq!(outcome.best_model, model);
    assert_eq!(outcome.best_val_acc, None);
    assert!(outcome.history.val_acc.is_empty() && outcome.history.len() == 4);
}

/// A run that stops improving after its first epoch (a negligible learning rate), with a
/// patience of two epochs.
fn stalling_config() -> CheckedConfig {
    TrainConfig {
        lr: 1e-9,
        patience: Some(2),
        epochs: 50,
        ..TrainConfig::clone(&config(1))
    }
    .validate()
    .unwrap()
}

#[test]
fn patience_stops_a_run_that_no_longer_improves() {
    let (train, val) = (data(300, 1), data(60, 2));
    let config = stalling_config();
    let outcome = mlp_train::train(&config, &train, &val, |_| {}).unwrap();
    // With a negligible learning rate the first epoch is the best; two more without
    // improvement end the run.
    assert_eq!(outcome.best_epoch, 1);
    assert_eq!(outcome.history.len(), 3);
}

#[test]
fn a_run_resumed_after_early_stopping_stops_again() {
    let (train, val) = (data(300, 1), data(60, 2));
    let config = stalling_config();
    let last = std::sync::Mutex::new(None);
    let hooks = Hooks {
        on_epoch: Box::new(|_, state| *last.lock().unwrap() = Some(state.clone())),
        ..Hooks::default()
    };
    let RunEnd::Finished(first) = run(Start::Fresh(config), &train, &val, hooks).unwrap() else {
        panic!("not interrupted")
    };
    // The checkpoint of the stopping epoch, resumed (as after a crash before the model file).
    let state = last.into_inner().unwrap().unwrap();
    let RunEnd::Finished(again) = run(
        Start::Resume(Box::new(state)),
        &train,
        &val,
        Hooks::default(),
    )
    .unwrap() else {
        panic!("not interrupted")
    };
    assert_eq!(
        again.history.len(),
        first.history.len(),
        "no epoch after the early stop"
    );
    assert_eq!(again.best_model, first.best_model);
}

/// Regression: weights that became NaN where every image has a 0 pixel train on with finite
/// losses (the sparse passes never multiply them), so the run checkpointed them, and the
/// checkpoint was then refused as damaged on resume. The run now stops as diverged before
/// a hook (which writes checkpoints) or an interrupted run's state ever holds them.
#[test]
fn non_finite_weights_stop_the_run_before_any_checkpoint() {
    // Pixel 0 is 0 in every image, so nothing but the guard ever reads W1's row 0.
    let without_pixel_0 = |n: usize, seed: u64| {
        let d = data(n, seed);
        let mut x = Array2::zeros((n, 20));
        let mut y = vec![0; n];
        let all: Vec<usize> = (0..n).collect();
        mlp_train::LabelledData::gather(&d, &all, x.as_slice_mut().unwrap(), &mut y);
        x.column_mut(0).fill(0.0);
        InMemoryData::new(x, y, 3).unwrap()
    };
    let (train, val) = (without_pixel_0(300, 1), without_pixel_0(60, 2));
    let stop_at_once = Hooks {
        stop: Box::new(|| true),
        ..Hooks::default()
    };
    let RunEnd::Interrupted(mut state) =
        run(Start::Fresh(config(1)), &train, &val, stop_at_once).unwrap()
    else {
        panic!("the run did not stop after its first mini-batch");
    };
    state.model.w1[[0, 3]] = f32::NAN;

    for stop_mid_epoch in [false, true] {
        let epochs_seen = AtomicUsize::new(0);
        let hooks = Hooks {
            on_epoch: Box::new(|_, _| {
                epochs_seen.fetch_add(1, Ordering::SeqCst);
            }),
            stop: Box::new(move || stop_mid_epoch),
            ..Hooks::default()
        };
        let err = run(Start::Resume(state.clone()), &train, &val, hooks).unwrap_err();
        assert!(
            matches!(
                err,
                mlp_train::TrainError::DivergedWeights {
                    epoch: 1,
                    parameter: "w1",
                    ..
                }
            ),
            "stop mid-epoch {stop_mid_epoch}: {err}"
        );
        assert_eq!(epochs_seen.load(Ordering::SeqCst), 0);
        assert!(
            err.to_string()
                .starts_with("training diverged in epoch 1 (w1 is no longer finite)")
        );
    }
}
