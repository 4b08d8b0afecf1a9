//! `cargo xtask bench`: how fast one training epoch on the real data is, against a matrix
//! product peak measured on the same machine in the same run.
//!
//! Always runs in release mode: a debug `cargo xtask` re-runs itself with `--release`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use fmnist_data::{Verify, load_fashion_mnist};
use mlp_core::{Activation, Mlp, Shape, SimdLevel};
use mlp_train::{ByteImages, Engine, Sgd};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Dense floating-point work of one example through 784-H-10: forward x·W1 and a1·W2,
/// backward a1ᵀ·dz2, dz2·W2ᵀ and xᵀ·dz1, two flops per multiply-add.
pub fn dense_flops_per_example(shape: Shape) -> f64 {
    let Shape {
        inputs,
        hidden,
        classes,
    } = shape;
    2.0 * (2 * inputs * hidden + 3 * hidden * classes) as f64
}

/// Options of the benchmark.
pub struct BenchOptions<'a> {
    /// Folder with the Fashion-MNIST files.
    pub data_dir: &'a Path,
    /// Timed epochs (after one warm-up epoch).
    pub epochs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Skip measuring the sgemm peak (quick comparisons of two builds).
    pub skip_peak: bool,
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// Runs the benchmark and prints its report: every SIMD level this CPU has, fastest first,
/// or only the one `MLP_SIMD` names.
pub fn run(opts: &BenchOptions) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let levels = match std::env::var("MLP_SIMD") {
        Ok(name) => vec![SimdLevel::choose(Some(&name)).context("MLP_SIMD")?],
        Err(_) => SimdLevel::supported(),
    };
    let names: Vec<&str> = SimdLevel::supported().iter().map(|l| l.name()).collect();
    println!(
        "machine: {}, {cores} cores; SIMD levels it runs: {} (best {})",
        cpu_name(),
        names.join(", "),
        SimdLevel::best()
    );
    // (None with --skip-peak: the report then leaves out the ratios to it.)
    let peaks = (!opts.skip_peak).then(|| (sgemm_gflops(1), sgemm_gflops(cores)));
    if let Some((peak1, peak_all)) = peaks {
        println!(
            "matrix-product peak (matrixmultiply sgemm 1024³): {peak1:.1} GFLOP/s on 1 thread, {peak_all:.1} on {cores}"
        );
    }

    let started = Instant::now();
    let data = load_fashion_mnist(opts.data_dir, Verify::Catalogue)
        .with_context(|| "the benchmark needs the real data: run `cargo xtask fetch-data`")?;
    println!(
        "load and verify the four files: {:.3} s",
        started.elapsed().as_secs_f64()
    );

    let (train, _) = data.train.split_last(10_000);
    let train = ByteImages::new(
        train.pixels(),
        train.labels(),
        train.features(),
        train.classes(),
    )?;
    let test = ByteImages::new(
        data.test.pixels(),
        data.test.labels(),
        data.test.features(),
        data.test.classes(),
    )?;
    let shape = Shape {
        inputs: 784,
        hidden: opts.hidden,
        classes: 10,
    };
    let flops = dense_flops_per_example(shape) * 50_000.0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = Mlp::new(shape, Activation::Relu, &mut rng)?;
    let sgd = Sgd::new(0.05, 1e-4);
    let mut order: Vec<usize> = (0..50_000).collect();

    // Every core, then one.
    let counts = if cores > 1 { vec![cores, 1] } else { vec![1] };
    for (level, threads) in levels
        .iter()
        .flat_map(|&level| counts.iter().map(move |&threads| (level, threads)))
    {
        let mut engine = Engine::with_level(&model, opts.batch_size, threads, level)?;
        // The same shuffles for every level and thread count: they train the same model, so
        // the accuracies printed below agree (the bits do not depend on either).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        order.sort_unstable();
        let mut times = Vec::new();
        for epoch in 0..=opts.epochs {
            order.shuffle(&mut rng);
            let t = Instant::now();
            let chunks: Vec<&[usize]> = order.chunks(opts.batch_size).collect();
            for (k, batch) in chunks.iter().enumerate() {
                engine.train_step(
                    &train,
                    *batch,
                    chunks.get(k + 1).copied().unwrap_or(&[]),
                    &sgd,
                );
            }
            if epoch > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gflops = flops / median / 1e9;
        let of_peak = peaks.map_or(String::new(), |(peak1, peak_all)| {
            let peak = if threads > 1 { peak_all } else { peak1 };
            format!(" = {:.2} × the sgemm peak", gflops / peak)
        });
        println!(
            "{level:>6}: train {shape} batch {}, {threads} thread(s): {median:.4} s per 50,000-image epoch (median of {}; best {:.4}), \
             {:.0} images/s, {gflops:.1} dense-equivalent GFLOP/s{of_peak}",
            opts.batch_size,
            times.len(),
            times[0],
            50_000.0 / median,
        );

        // A pass takes tens of milliseconds: one warm-up (the buffers' first use), then the
        // median of many, which the host's noise needs.
        const INFERENCE_PASSES: usize = 21;
        let mut accuracy = engine.evaluate(&test).accuracy();
        let mut passes: Vec<f64> = (0..INFERENCE_PASSES)
            .map(|_| {
                let t = Instant::now();
                accuracy = engine.evaluate(&test).accuracy();
                t.elapsed().as_secs_f64()
            })
            .collect();
        passes.sort_by(f64::total_cmp);
        let per = passes[passes.len() / 2];
        println!(
            "{level:>6}:   inference on the 10,000 test images: {per:.4} s (median of {INFERENCE_PASSES}; best {:.4}), {:.0} images/s (accuracy {accuracy:.4})",
            passes[0],
            10_000.0 / per
        );
    }
    Ok(())
}

/// GFLOP/s of `threads` concurrent single-threaded 1024³ sgemms, best of three.
fn sgemm_gflops(threads: usize) -> f64 {
    const N: usize = 1024;
    let a = vec![0.5f32; N * N];
    let b = vec![0.25f32; N * N];
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut c = vec![0.0f32; N * N];
                    // SAFETY: the pointers and strides describe the N×N buffers above.
                    unsafe {
                        matrixmultiply::sgemm(
                            N,
                            N,
                            N,
                            1.0,
                            a.as_ptr(),
                            N as isize,
                            1,
                            b.as_ptr(),
                            N as isize,
                            1,
                            0.0,
                            c.as_mut_ptr(),
                            N as isize,
                            1,
                        );
                    }
                    std::hint::black_box(&c);
                });
            }
        });
        best =
            best.max(threads as f64 * 2.0 * (N * N * N) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}
