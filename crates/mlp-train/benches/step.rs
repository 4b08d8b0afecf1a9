//! Criterion benchmarks of the training step and of inference.
//!
//! cargo bench -p mlp-train --bench step
//!
//! Inputs are synthetic "images": a random ellipse of non-zero pixels on a zero background,
//! covering about half of the 784 pixels like Fashion-MNIST's objects (49.8 % non-zero), so
//! the sparse kernels see realistic structure without needing the data files. They are
//! bytes ([`ByteImages`]), as the `mlp` binary feeds Fashion-MNIST to the engine.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlp_core::{Activation, Mlp, Shape, Workspace};
use mlp_train::{ByteImages, Engine, InMemoryData, LabelledData, Sgd};
use ndarray::Array2;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The pixels and labels of `n` synthetic images.
struct Synthetic {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Synthetic {
    fn images(&self) -> ByteImages<'_> {
        ByteImages::new(&self.pixels, &self.labels, 784, 10).expect("consistent sizes")
    }
}

fn synthetic_images(n: usize, rng: &mut impl Rng) -> Synthetic {
    let mut pixels = vec![0u8; n * 784];
    for image in pixels.chunks_exact_mut(784) {
        let (cy, cx) = (
            rng.random_range(11.0..17.0f32),
            rng.random_range(11.0..17.0f32),
        );
        let (ry, rx) = (
            rng.random_range(9.0..14.0f32),
            rng.random_range(5.0..13.0f32),
        );
        for (p, v) in image.iter_mut().enumerate() {
            let (y, x) = ((p / 28) as f32, (p % 28) as f32);
            if ((y - cy) / ry).powi(2) + ((x - cx) / rx).powi(2) < 1.0 {
                *v = rng.random_range(1..=255);
            }
        }
    }
    let labels = (0..n).map(|_| rng.random_range(0..10)).collect();
    Synthetic { pixels, labels }
}

fn bench_reference_passes(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let synthetic = synthetic_images(256, &mut rng);
    let data = synthetic.images();
    let mut group = c.benchmark_group("reference");
    for hidden in [128, 512] {
        let model = Mlp::new(Shape::fashion_mnist(hidden), Activation::Relu, &mut rng).unwrap();
        for batch in [64, 256] {
            let indices: Vec<usize> = (0..batch).collect();
            let mut x = Array2::zeros((batch, 784));
            let mut y = vec![0; batch];
            data.gather(&indices, x.as_slice_mut().unwrap(), &mut y);
            let mut ws = Workspace::new(model.shape(), batch);
            let id = format!("hidden{hidden}/batch{batch}");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new("forward", &id), |b| {
                b.iter(|| model.forward(x.view(), &y, &mut ws))
            });
            model.forward(x.view(), &y, &mut ws);
            group.bench_function(BenchmarkId::new("backward", &id), |b| {
                b.iter(|| {
                    model.backward(x.view(), &y, &mut ws);
                })
            });
        }
    }
    group.finish();
}

fn bench_engine_step(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let synthetic = synthetic_images(4096, &mut rng);
    let bytes = synthetic.images();
    // The same images as `f32`s: the path of data that is not bytes (`InMemoryData`).
    let mut x = Array2::zeros((bytes.len(), 784));
    let mut y = vec![0; bytes.len()];
    let all: Vec<usize> = (0..bytes.len()).collect();
    bytes.gather(&all, x.as_slice_mut().unwrap(), &mut y);
    let floats = InMemoryData::new(x, y, 10).expect("consistent sizes");
    let sgd = Sgd::new(0.01, 1e-4);
    let mut group = c.benchmark_group("engine_step");
    // (hidden, batch, as f32s): every size on bytes, as the `mlp` binary trains, and the
    // default size on `f32`s too.
    let cases = [
        (128, 64, false),
        (128, 64, true),
        (128, 256, false),
        (512, 64, false),
        (512, 256, false),
    ];
    for (hidden, batch, as_f32) in cases {
        let model = Mlp::new(Shape::fashion_mnist(hidden), Activation::Relu, &mut rng).unwrap();
        let (data, name): (&dyn LabelledData, _) = if as_f32 {
            (&floats, "sgd_step_f32")
        } else {
            (&bytes, "sgd_step")
        };
        let order: Vec<usize> = (0..data.len()).collect();
        let batches: Vec<&[usize]> = order.chunks_exact(batch).collect();
        group.throughput(Throughput::Elements(batch as u64));
        for threads in [1, 2] {
            let mut engine = Engine::new(&model, batch, threads);
            let id = format!("hidden{hidden}/batch{batch}/threads{threads}");
            let mut k = 0;
            group.bench_function(BenchmarkId::new(name, id), |b| {
                b.iter(|| {
                    k = (k + 1) % batches.len();
                    engine.train_step(data, batches[k], batches[(k + 1) % batches.len()], &sgd)
                })
            });
        }
    }
    group.finish();
}

fn bench_inference(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let synthetic = synthetic_images(10_000, &mut rng);
    let data = synthetic.images();
    let model = Mlp::new(Shape::fashion_mnist(128), Activation::Relu, &mut rng).unwrap();
    let mut group = c.benchmark_group("inference");
    group.throughput(Throughput::Elements(data.len() as u64));
    group.sample_size(20);
    for threads in [1, 2] {
        let mut engine = Engine::new(&model, 1, threads);
        group.bench_function(
            BenchmarkId::new("evaluate_10000", format!("hidden128/threads{threads}")),
            |b| b.iter(|| engine.evaluate(&data)),
        );
    }
    group.finish();
}

/// Packing a batch's blocks of terms, as the AVX2 step does on every thread (the forward
/// pass's 16 blocks of 4 rows, the dW1 step's 196 blocks of 4 pixel columns), through a
/// table of quotients and through the same values as a plain table: rows are packed with
/// vectors from the first on a level with FMA, one entry at a time from the second;
/// columns one entry at a time from both (vectors were no quicker there).
fn bench_packing(c: &mut Criterion) {
    use mlp_core::kernels::{
        ByteTable, Entries, PackedBlock, Panels, SparseBlock, mask_words, row_and_column_masks,
    };
    let (rows, cols) = (64, 784);
    let synthetic = synthetic_images(rows, &mut ChaCha8Rng::seed_from_u64(3));
    let bytes = &synthetic.pixels;
    let quotients = ByteTable::quotients(255.0, 1.0);
    let plain = ByteTable::new(*quotients.values());
    let level = mlp_core::SimdLevel::best()
        .token()
        .expect("the best level runs");
    let words = mask_words(cols);
    let (mut row_masks, mut column_masks) = (vec![0; rows * words], vec![0; cols]);
    let all = Entries::Bytes {
        bytes,
        table: &quotients,
    };
    fearless_simd::dispatch!(level, simd => row_and_column_masks(
        simd, all, rows, cols, &mut row_masks, &mut column_masks, 1
    ));
    let mut group = c.benchmark_group("packing");
    let mut blocks = vec![PackedBlock::default(); cols / 4];
    for (name, table) in [("quotients", &quotients), ("table", &plain)] {
        let vals = Entries::Bytes { bytes, table };
        group.bench_function(BenchmarkId::new("rows_64x784", name), |b| {
            b.iter(|| {
                let mut union = vec![0; words];
                for (k, packed) in blocks[..rows / 4].iter_mut().enumerate() {
                    union.fill(0);
                    for r in 4 * k..4 * k + 4 {
                        let mask = &row_masks[r * words..][..words];
                        union.iter_mut().zip(mask).for_each(|(u, m)| *u |= m);
                    }
                    let starts: [usize; 4] = std::array::from_fn(|q| (4 * k + q) * cols);
                    let block = SparseBlock {
                        vals,
                        rows: &starts,
                        step: 1,
                        union: &union,
                        m: &[],
                        layout: Panels::row_major(0),
                    };
                    fearless_simd::dispatch!(level, simd => packed.pack_block(simd, &block));
                }
            })
        });
        group.bench_function(BenchmarkId::new("columns_64x784", name), |b| {
            b.iter(|| {
                for (k, packed) in blocks.iter_mut().enumerate() {
                    let union = [column_masks[4 * k..4 * k + 4].iter().fold(0, |u, m| u | m)];
                    let starts: [usize; 4] = std::array::from_fn(|q| 4 * k + q);
                    let block = SparseBlock {
                        vals,
                        rows: &starts,
                        step: cols,
                        union: &union,
                        m: &[],
                        layout: Panels::row_major(0),
                    };
                    fearless_simd::dispatch!(level, simd => packed.pack_block(simd, &block));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_reference_passes,
    bench_engine_step,
    bench_inference,
    bench_packing
);
criterion_main!(benches);
