//! The optimisers and regularisers in the optimised step against their reference maths
//! (`Mlp::forward_training`, `Mlp::backward_training`, `Optimizer::step`), and their bits on
//! every SIMD level and thread count.

use mlp_core::kernels::Update;
use mlp_core::noise::Dropout;
use mlp_core::{Activation, Mlp, Regularisation, Shape, SimdLevel, Workspace};
use mlp_train::regularise::StepKeys;
use mlp_train::{
    Augmentation, ByteImages, Engine, InMemoryData, LabelledData, Optimizer, OptimizerKind,
    Regularisers, Sample,
};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: Shape = Shape {
    inputs: 784,
    hidden: 72,
    classes: 10,
};

/// 28 × 28 images whose non-zero pixels fill a random rectangle (so that shifts move them),
/// as bytes, with their labels.
fn images(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; n * 784];
    for image in pixels.chunks_exact_mut(784) {
        let (x0, y0) = (rng.random_range(0..10), rng.random_range(0..10));
        let (w, h) = (rng.random_range(8..18), rng.random_range(8..18));
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                image[y * 28 + x] = rng.random_range(1..=255);
            }
        }
    }
    let labels = (0..n).map(|_| rng.random_range(0..10)).collect();
    (pixels, labels)
}

fn optimizer(kind: OptimizerKind) -> Optimizer {
    Optimizer {
        kind,
        l2: 1e-3,
        momentum: 0.9,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    }
}

fn lr(kind: OptimizerKind) -> f32 {
    match kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => 0.003,
        _ => 0.05,
    }
}

/// Batch b: 32 examples, every 7th from b · 41 (the last batch 5).
fn batches(n: usize, count: usize) -> Vec<Vec<usize>> {
    (0..count)
        .map(|b| {
            let len = if b + 1 == count { 5 } else { 32 };
            (0..len).map(|k| (b * 41 + k * 7) % n).collect()
        })
        .collect()
}

/// The reference: each batch gathered, augmented and dropped out as the step's keys say,
/// then the dense passes and the plain optimiser step. Returns the model and its moments.
fn reference(
    start: &Mlp,
    data: &dyn LabelledData,
    batches: &[Vec<usize>],
    opt: Optimizer,
    reg: Regularisers,
) -> (Mlp, Vec<Mlp>) {
    let mut model = start.clone();
    let mut moments = vec![Mlp::zeros(SHAPE, start.activation); opt.moments()];
    let mut ws = Workspace::new(SHAPE, 32);
    for (b, batch) in batches.iter().enumerate() {
        let keys = StepKeys::of(key(b));
        let n = batch.len();
        let mut x = Array2::zeros((n, SHAPE.inputs));
        let mut y = vec![0; n];
        data.gather(batch, x.as_slice_mut().unwrap(), &mut y);
        let mut scratch = vec![0.0f32; SHAPE.inputs];
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            let row = row.as_slice_mut().unwrap();
            if let Some(aug) = reg.augmentation {
                aug.transform(keys.augment, i).apply(row, 28, &mut scratch);
            }
            if let Some(d) = reg.input_dropout {
                for (p, v) in row.iter_mut().enumerate() {
                    *v = match d.factor(keys.input, (i * SHAPE.inputs + p) as u64) {
                        0.0 => 0.0,
                        m => *v * m,
                    };
                }
            }
        }
        let mask = reg
            .hidden_dropout
            .map(|d| d.mask(keys.hidden, n, SHAPE.hidden));
        let pass = Regularisation {
            hidden_mask: mask.as_ref().map(|m| m.view()),
            smoothing: reg.label_smoothing,
        };
        model.forward_training(x.view(), &y, pass, &mut ws);
        let grads = model.backward_training(x.view(), &y, pass, &mut ws);
        let update = opt.update(lr(opt.kind), b as u64 + 1);
        Optimizer::step(update, &mut model, grads, &mut moments);
    }
    (model, moments)
}

fn key(batch: usize) -> u64 {
    0x5eed_0000 + batch as u64
}

/// The engine on `level` and `threads` threads over the same batches.
fn engine_run(
    start: &Mlp,
    data: &dyn LabelledData,
    batches: &[Vec<usize>],
    opt: Optimizer,
    reg: Regularisers,
    (level, threads): (SimdLevel, usize),
) -> (Mlp, Vec<Mlp>, Vec<u64>) {
    let mut engine = Engine::with_level(start, 32, threads, level).unwrap();
    engine.set_moments(&vec![Mlp::zeros(SHAPE, start.activation); opt.moments()]);
    engine.set_regularisers(reg).unwrap();
    let losses = {
        (0..batches.len())
            .map(|b| {
                let next = batches.get(b + 1).map_or(&[][..], |v| v.as_slice());
                let update: Update = opt.update(lr(opt.kind), b as u64 + 1);
                let step = engine.train_step(
                    data,
                    Sample {
                        indices: &batches[b],
                        key: key(b),
                    },
                    Sample {
                        indices: next,
                        key: key(b + 1),
                    },
                    update,
                );
                step.metrics.loss_sum.to_bits()
            })
            .collect()
    };
    (engine.to_model(), engine.moments(), losses)
}

fn worst_difference(a: &Mlp, b: &Mlp) -> f32 {
    a.named_parameters()
        .iter()
        .zip(b.named_parameters())
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

fn all_regularisers() -> Regularisers {
    Regularisers {
        hidden_dropout: Dropout::new(0.3),
        input_dropout: Dropout::new(0.2),
        label_smoothing: 0.1,
        augmentation: Some(Augmentation {
            translate: 2,
            flip: true,
        }),
    }
}

#[test]
fn every_optimizer_matches_its_reference_step() {
    let (pixels, labels) = images(200, 1);
    let data = ByteImages::new(&pixels, &labels, 784, 10).unwrap();
    let start = Mlp::new(SHAPE, Activation::Relu, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let batches = batches(200, 8);
    for kind in OptimizerKind::ALL {
        for reg in [Regularisers::default(), all_regularisers()] {
            let (want, want_moments) = reference(&start, &data, &batches, optimizer(kind), reg);
            let (got, got_moments, _) = engine_run(
                &start,
                &data,
                &batches,
                optimizer(kind),
                reg,
                (SimdLevel::best(), 2),
            );
            assert_ne!(
                worst_difference(&got, &start),
                0.0,
                "{kind}: nothing trained"
            );
            // Sums in another order (sparse against dense): rounding differences only.
            let worst = worst_difference(&got, &want);
            assert!(
                worst < 2e-5,
                "{kind}, {reg:?}: parameters differ by {worst}"
            );
            assert_eq!(got_moments.len(), kind.moments());
            for (g, w) in got_moments.iter().zip(&want_moments) {
                let scale = worst_difference(w, &Mlp::zeros(SHAPE, Activation::Relu));
                let worst = worst_difference(g, w);
                assert!(
                    worst <= 1e-3 * scale,
                    "{kind}: moments differ by {worst} of {scale}"
                );
            }
        }
    }
}

/// Float features give the same bits as the bytes they stand for, with every regulariser
/// (input dropout scales a byte through its table, a float by multiplying).
#[test]
fn byte_and_float_images_train_alike_with_every_regulariser() {
    let (pixels, labels) = images(100, 3);
    let bytes = ByteImages::new(&pixels, &labels, 784, 10).unwrap();
    let mut x = Array2::zeros((100, 784));
    let mut y = vec![0; 100];
    bytes.gather(
        &(0..100).collect::<Vec<_>>(),
        x.as_slice_mut().unwrap(),
        &mut y,
    );
    let floats = InMemoryData::new(x, y, 10).unwrap();
    let start = Mlp::new(SHAPE, Activation::Tanh, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    let batches = batches(100, 5);
    let opt = optimizer(OptimizerKind::Nesterov);
    let level = (SimdLevel::best(), 1);
    let a = engine_run(&start, &bytes, &batches, opt, all_regularisers(), level);
    let b = engine_run(&start, &floats, &batches, opt, all_regularisers(), level);
    assert!(a == b, "bytes and floats differ");
}

#[test]
fn every_level_and_thread_count_gives_the_same_bits_with_every_feature() {
    let (pixels, labels) = images(150, 5);
    let data = ByteImages::new(&pixels, &labels, 784, 10).unwrap();
    // 200 hidden units: shards of 64, 64, 64 and 8.
    let shape = Shape {
        hidden: 200,
        ..SHAPE
    };
    let start = Mlp::new(shape, Activation::Relu, &mut ChaCha8Rng::seed_from_u64(6)).unwrap();
    let batches = batches(150, 6);
    let levels = SimdLevel::supported();
    for kind in [OptimizerKind::Nesterov, OptimizerKind::Adamw] {
        let run = |level, threads| {
            let mut engine = Engine::with_level(&start, 32, threads, level).unwrap();
            engine.set_moments(&vec![Mlp::zeros(shape, start.activation); kind.moments()]);
            engine.set_regularisers(all_regularisers()).unwrap();
            for (b, batch) in batches.iter().enumerate() {
                let next = batches.get(b + 1).map_or(&[][..], |v| v.as_slice());
                let update = optimizer(kind).update(lr(kind), b as u64 + 1);
                let this = Sample {
                    indices: batch,
                    key: key(b),
                };
                let next = Sample {
                    indices: next,
                    key: key(b + 1),
                };
                engine.train_step(&data, this, next, update);
            }

            (engine.to_model(), engine.moments())
        };
        let expected = run(levels[0], 2);
        for &level in &levels {
            for threads in [1, 2, 3, 5] {
                assert!(
                    run(level, threads) == expected,
                    "{kind}: {level} on {threads} threads differs from {}",
                    levels[0]
                );
            }
        }
    }
}

#[test]
fn augmentation_needs_square_images() {
    let shape = Shape {
        inputs: 20,
        hidden: 4,
        classes: 2,
    };
    let model = Mlp::new(shape, Activation::Relu, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let mut engine = Engine::new(&model, 8, 1);
    let err = engine.set_regularisers(all_regularisers()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "augmentation needs square images, but the data has 20 features"
    );
}
