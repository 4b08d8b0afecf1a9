//! The optimised step (sparse, fused, sharded) against the reference maths of mlp-core
//! (`Mlp::forward`, `Mlp::backward`, `Sgd::step`).

use mlp_core::noise::Dropout;
use mlp_core::{Activation, Mlp, Shape, Workspace};
use mlp_train::{Engine, Evaluator, InMemoryData, LabelledData, Regularisers, Sample, Sgd};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Image-like data: about half of the inputs exactly 0, the rest in (0, 1].
fn sparse_data(n: usize, inputs: usize, classes: usize, seed: u64) -> InMemoryData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n, inputs), || {
        if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.01..1.0)
        }
    });
    let y = (0..n).map(|_| rng.random_range(0..classes)).collect();
    InMemoryData::new(x, y, classes).unwrap()
}

/// Byte images like `sparse_data`'s (about half the pixels 0) and their labels.
fn byte_images(n: usize, inputs: usize, classes: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..n * inputs)
        .map(|_| {
            if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(1..=255)
            }
        })
        .collect();
    let labels = (0..n).map(|_| rng.random_range(0..classes as u8)).collect();
    (pixels, labels)
}

/// Batches of the given lengths over `n` examples, batch b taking every 7th from b · 41.
fn strided_batches(lens: &[usize], n: usize) -> Vec<Vec<usize>> {
    lens.iter()
        .enumerate()
        .map(|(b, &len)| (0..len).map(|k| (b * 41 + k * 7) % n).collect())
        .collect()
}

fn reference_steps(
    model: &mut Mlp,
    data: &InMemoryData,
    batches: &[Vec<usize>],
    sgd: &Sgd,
) -> Vec<(f64, f64)> {
    let mut ws = Workspace::new(model.shape(), 64);
    let mut out = Vec::new();
    for batch in batches {
        let mut x = Array2::zeros((batch.len(), data.features()));
        let mut y = vec![0; batch.len()];
        data.gather(batch, x.as_slice_mut().unwrap(), &mut y);
        let m = model.forward(x.view(), &y, &mut ws);
        let g = model.backward(x.view(), &y, &mut ws);
        out.push((m.loss_sum, g.norm() as f64));
        sgd.step(model, g);
    }
    out
}

fn check(shape: Shape, activation: Activation) {
    let data = sparse_data(300, shape.inputs, shape.classes, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let start = Mlp::new(shape, activation, &mut rng).unwrap();
    let batches: Vec<Vec<usize>> = (0..12)
        .map(|b| {
            // Full batches, then an odd one and a single example (one half of the rows empty).
            (0..(match b {
                10 => 7,
                11 => 1,
                _ => 32,
            }))
                .map(|k| (b * 37 + k * 11) % 300)
                .collect()
        })
        .collect();
    let sgd = Sgd::new(0.1, 1e-3);

    let mut reference = start.clone();
    let expected = reference_steps(&mut reference, &data, &batches, &sgd);

    for threads in [1, 2, 3] {
        let mut engine = Engine::new(&start, 32, threads);
        for (batch, (loss_sum, norm)) in batches.iter().zip(&expected) {
            let stats = engine.train_step(&data, batch, &[], &sgd);
            assert!(
                (stats.metrics.loss_sum - loss_sum).abs() < 1e-3 * loss_sum,
                "{shape} {activation}: loss {} vs {loss_sum}",
                stats.metrics.loss_sum
            );
            assert!(
                (stats.grad_norm - norm).abs() < 1e-3 * norm + 1e-6,
                "{shape} {activation}: norm {} vs {norm}",
                stats.grad_norm
            );
        }
        let trained = engine.to_model();
        for ((name, got), (_, want)) in trained
            .named_parameters()
            .iter()
            .zip(reference.named_parameters())
        {
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{shape} {activation} threads={threads}: {name} differs by {worst}"
            );
        }
        // The engine's sparse evaluation against the dense reference one, on the same data.
        let (e, r) = (
            engine.evaluate(&data),
            Evaluator::new(&reference).evaluate(&reference, &data),
        );
        assert!(
            (e.loss - r.loss).abs() < 1e-4,
            "evaluation loss {} vs {}",
            e.loss,
            r.loss
        );
    }
}

#[test]
fn engine_matches_the_reference_step_for_every_activation() {
    for activation in Activation::ALL {
        check(
            Shape {
                inputs: 50,
                hidden: 40,
                classes: 10,
            },
            activation,
        );
    }
}

#[test]
fn engine_matches_the_reference_for_awkward_shapes() {
    check(
        Shape {
            inputs: 784,
            hidden: 128,
            classes: 10,
        },
        Activation::Relu,
    );
    check(
        Shape {
            inputs: 17,
            hidden: 5,
            classes: 3,
        },
        Activation::Relu,
    ); // one shard
    check(
        Shape {
            inputs: 33,
            hidden: 300,
            classes: 2,
        },
        Activation::Tanh,
    ); // five shards, the last of 44 columns
}

/// The hidden layer's partition is fixed (64-column shards), whatever the thread count: pins
/// that 1 to 16 threads (more than this machine's cores, more than the shards, and counts
/// that split the shards unevenly) train and evaluate the same bits.
#[test]
fn every_thread_count_trains_and_evaluates_the_same_bits() {
    let shape = Shape {
        inputs: 784,
        hidden: 300,
        classes: 10,
    };
    // 4000 rows: sixteen evaluation chunks, the last partial.
    let data = sparse_data(4000, 784, 10, 3);
    let start = Mlp::new(shape, Activation::Relu, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    let sgd = Sgd::new(0.1, 1e-4);
    let batches = strided_batches(&[64, 64, 64, 64, 27, 1], 4000);
    let run = |threads: usize| {
        let mut engine = Engine::new(&start, 64, threads);
        let mut stats = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            let next = batches.get(b + 1).map_or(&[][..], |v| v.as_slice());
            let step = engine.train_step(&data, batch, next, &sgd);
            stats.push((step.metrics.loss_sum.to_bits(), step.grad_norm.to_bits()));
        }
        let eval = engine.evaluate(&data);
        (
            engine.to_model(),
            stats,
            eval.loss.to_bits(),
            eval.confusion,
        )
    };
    let expected = run(1);
    for threads in [2, 3, 4, 5, 7, 16] {
        assert!(run(threads) == expected, "{threads} threads differ from 1");
    }
}

#[test]
fn copy_to_and_new_round_trip_exactly() {
    let model = Mlp::new(
        Shape {
            inputs: 30,
            hidden: 70,
            classes: 4,
        },
        Activation::Sigmoid,
        &mut ChaCha8Rng::seed_from_u64(9),
    )
    .unwrap();
    assert_eq!(Engine::new(&model, 8, 1).to_model(), model);
    assert_eq!(Engine::new(&model, 8, 3).to_model(), model);
}

#[test]
fn fast_and_reference_evaluation_agree_on_one_model() {
    let shape = Shape {
        inputs: 784,
        hidden: 100,
        classes: 10,
    };
    let model = Mlp::new(
        shape,
        Activation::LeakyRelu,
        &mut ChaCha8Rng::seed_from_u64(21),
    )
    .unwrap();
    let data = sparse_data(2500, 784, 10, 22);
    let fast = mlp_train::evaluate(&model, &data);
    let reference = Evaluator::new(&model).evaluate(&model, &data);
    assert!(
        (fast.loss - reference.loss).abs() < 1e-5,
        "{} vs {}",
        fast.loss,
        reference.loss
    );
    assert_eq!(fast.confusion, reference.confusion);
    assert_eq!(fast.count(), 2500);
}

/// `next` lets the engine gather the following batch ahead and run its forward pass at the
/// end of the step before. Pins that it never changes a result: not when the next call asks
/// for other indices than announced, or for the announced indices under another key (hidden
/// dropout draws its mask in the forward pass), not when it passes other data with the same
/// indices, not when an evaluation reuses the buffers in between, and not when the
/// regularisers change between two steps.
#[test]
fn gathering_and_forwarding_ahead_never_change_a_result() {
    let shape = Shape {
        inputs: 40,
        hidden: 48,
        classes: 5,
    };
    let data = sparse_data(200, shape.inputs, shape.classes, 7);
    let other = sparse_data(200, shape.inputs, shape.classes, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let start = Mlp::new(shape, Activation::Relu, &mut rng).unwrap();
    let sgd = Sgd::new(0.1, 1e-4);
    // Mostly full batches, one odd and one of a single example (one half of its rows empty).
    let batch = |b: usize| -> Vec<usize> {
        let len = match b {
            3 => 15,
            4 => 1,
            _ => 16,
        };
        (0..len).map(|k| (b * 29 + k * 13) % 200).collect()
    };
    let dropout = Regularisers {
        hidden_dropout: Dropout::new(0.3),
        input_dropout: Dropout::new(0.2),
        label_smoothing: 0.1,
        augmentation: None,
    };
    // (data of this step, its batch and key, the `next` announced and its key)
    type Step<'a> = (&'a InMemoryData, Vec<usize>, u64, Vec<usize>, u64);
    let plan: Vec<Step> = vec![
        (&data, batch(0), 10, batch(1), 11),
        (&data, batch(1), 11, batch(2), 12),
        (&data, batch(5), 15, batch(3), 13), // not what was announced
        (&other, batch(3), 13, batch(4), 14), // announced indices and key, other data
        (&other, batch(4), 14, batch(6), 16), // as announced, but an evaluation comes first
        (&other, batch(6), 17, batch(7), 17), // announced indices, another key
        (&other, batch(7), 17, batch(8), 18), // as announced, but the regularisers change
        (&data, batch(8), 18, vec![], 0),
    ];
    for (threads, regularisers) in [1, 2]
        .into_iter()
        .flat_map(|t| [Regularisers::default(), dropout].map(|r| (t, r)))
    {
        let run = |ahead: bool| {
            let mut engine = Engine::new(&start, 16, threads);
            engine.set_regularisers(regularisers).unwrap();
            let mut losses = Vec::new();
            for (step, (d, b, key, next, next_key)) in plan.iter().enumerate() {
                if step == 4 {
                    engine.evaluate(&data);
                }
                if step == 6 {
                    // Another hidden dropout: the forward pass run ahead is stale.
                    let changed = Regularisers {
                        hidden_dropout: Dropout::new(0.1),
                        ..regularisers
                    };
                    engine.set_regularisers(changed).unwrap();
                }
                let next: &[usize] = if ahead { next } else { &[] };
                let this = Sample {
                    indices: b,
                    key: *key,
                };
                let next = Sample {
                    indices: next,
                    key: *next_key,
                };
                losses.push(engine.train_step(*d, this, next, &sgd).metrics.loss_sum);
            }
            (engine.to_model(), losses)
        };
        let (ahead, ahead_losses) = run(true);
        let (plain, plain_losses) = run(false);
        let case = format!("{threads} threads, {regularisers:?}");
        assert_eq!(ahead_losses, plain_losses, "{case}");
        assert_eq!(ahead.w1, plain.w1, "{case}");
        assert_eq!(ahead.w2, plain.w2, "{case}");
        assert_eq!(ahead.b1, plain.b1, "{case}");
        assert_eq!(ahead.b2, plain.b2, "{case}");
    }
}

/// Byte images are gathered as bytes and read through `PIXEL_VALUES`; pins that this trains
/// the same bits as the same features gathered as `f32`s, on one thread and two, with batches
/// gathered ahead, an odd batch, and a switch between the two kinds of data mid-run, at
/// hidden sizes whose shards are 64 and 32, 64 and 64, and 64, 64, 64 and 8 columns wide
/// (whole and partial tiles of every level); and evaluate to the same bits.
#[test]
fn byte_images_train_the_bits_of_their_features_as_floats() {
    let (n, inputs, classes) = (150, 784, 10);
    let (pixels, labels) = byte_images(n, inputs, classes, 11);
    let bytes = mlp_train::ByteImages::new(&pixels, &labels, inputs, classes).unwrap();
    let mut x = Array2::zeros((n, inputs));
    let mut y = vec![0; n];
    let all: Vec<usize> = (0..n).collect();
    bytes.gather(&all, x.as_slice_mut().unwrap(), &mut y);
    let floats = InMemoryData::new(x, y, classes).unwrap();

    let sgd = Sgd::new(0.1, 1e-4);
    let batches = strided_batches(&[64, 64, 64, 64, 33, 64], n);
    for (hidden, threads) in [96, 128, 200].into_iter().flat_map(|h| [(h, 1), (h, 2)]) {
        let shape = Shape {
            inputs,
            hidden,
            classes,
        };
        let start = Mlp::new(shape, Activation::Relu, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        // `kinds[b]`: whether batch b comes from the byte images.
        let run = |kinds: [bool; 6]| {
            let mut engine = Engine::new(&start, 64, threads);
            let data = |b: usize| -> &dyn LabelledData { if kinds[b] { &bytes } else { &floats } };
            let mut stats = Vec::new();
            for (b, batch) in batches.iter().enumerate() {
                let next = batches.get(b + 1).map_or(&[][..], |v| v.as_slice());
                let step = engine.train_step(data(b), batch, next, &sgd);
                stats.push((step.metrics.loss_sum.to_bits(), step.grad_norm.to_bits()));
            }
            // Evaluation reads the byte images as bytes too (150 rows: a partial chunk).
            let (of_bytes, of_floats) = (engine.evaluate(&bytes), engine.evaluate(&floats));
            assert_eq!(of_bytes.loss.to_bits(), of_floats.loss.to_bits(), "loss");
            assert_eq!(of_bytes.confusion, of_floats.confusion, "confusion");
            (engine.to_model(), stats)
        };
        let expected = run([false; 6]);
        assert_eq!(
            run([true; 6]),
            expected,
            "hidden {hidden}, {threads} threads: bytes"
        );
        let mixed = [true, false, false, true, true, false];
        assert_eq!(
            run(mixed),
            expected,
            "hidden {hidden}, {threads} threads: mixed"
        );
    }
}

/// The same bits on every SIMD level this CPU can run: models, each step's loss and gradient
/// norm, and the evaluation, at hidden sizes whose shards end in partial vectors (40: one
/// shard of 40 columns; 200: 64 + 64 + 64 + 8) or are narrower than a vector (16), for
/// piecewise-linear and smooth activations, batches of 64, 27 and 1, on one to three
/// threads, from byte images and from `f32` features.
#[test]
fn every_simd_level_trains_the_same_bits() {
    use mlp_core::SimdLevel;
    let (n, inputs, classes) = (120, 784, 10);
    let floats = sparse_data(n, inputs, classes, 21);
    let (pixels, labels) = byte_images(n, inputs, classes, 22);
    let bytes = mlp_train::ByteImages::new(&pixels, &labels, inputs, classes).unwrap();
    let sgd = Sgd::new(0.1, 1e-4);
    let batches = strided_batches(&[64, 64, 64, 27, 1], n);
    let levels = SimdLevel::supported();
    assert!(levels.len() >= 2, "{levels:?}");
    for (hidden, activation) in [
        (16, Activation::Sigmoid),
        (40, Activation::Relu),
        (200, Activation::Tanh),
    ] {
        let shape = Shape {
            inputs,
            hidden,
            classes,
        };
        let start = Mlp::new(shape, activation, &mut ChaCha8Rng::seed_from_u64(23)).unwrap();
        for (data, kind) in [(&bytes as &dyn LabelledData, "bytes"), (&floats, "floats")] {
            let run = |level: SimdLevel, threads: usize| {
                let mut engine = Engine::with_level(&start, 64, threads, level).unwrap();
                assert_eq!(engine.level(), level);
                let mut stats = Vec::new();
                for (b, batch) in batches.iter().enumerate() {
                    let next = batches.get(b + 1).map_or(&[][..], |v| v.as_slice());
                    let step = engine.train_step(data, batch, next, &sgd);
                    stats.push((step.metrics.loss_sum.to_bits(), step.grad_norm.to_bits()));
                }
                let eval = engine.evaluate(data);
                (
                    engine.to_model(),
                    stats,
                    eval.loss.to_bits(),
                    eval.confusion,
                )
            };
            let expected = run(levels[0], 2);
            for &level in &levels {
                for threads in [1, 2, 3] {
                    assert!(
                        run(level, threads) == expected,
                        "hidden {hidden} {activation}, {kind}: {level}, {threads} threads \
                         differs from {}",
                        levels[0]
                    );
                }
            }
        }
    }
}
