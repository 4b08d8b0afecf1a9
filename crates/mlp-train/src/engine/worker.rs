//! The threads of a step and what each owns: the hidden layer's fixed partition into shards,
//! a worker per thread running a contiguous run of them, and the fork-join that runs the
//! workers on the engine's [`Team`] without allocating.
//!
//! The partition depends on the hidden width only, never on the thread count: the thread
//! count decides which worker runs which shards, and every sum is taken shard by shard in
//! the same order whoever computed the shards, so that 1, 2, 3 or 16 threads give the
//! same bits.

use std::ops::Range;

use fearless_simd::Level;
use mlp_core::kernels::Update;
use mlp_core::{Activation, BatchMetrics, loss};
use ndarray::{ArrayView2, ArrayViewMut2};

use super::batch::Batch;
use super::input_noise::InputNoise;
use super::shard::{HiddenDropout, Scratch, Shard, SparseRows};
use super::shared::{SharedBlocks, shares_blocks};
use super::team::{Split, Team};
use crate::data::LabelledData;

/// Columns per shard (the last may have fewer): four 16-column chunks, AVX-512's widest
/// tile. A shard's W1 (200 KB at 784 inputs) stays in a core's L2 cache for the whole batch,
/// and the 784-128-10 network gets the two 64-column shards it has always had.
pub const SHARD_WIDTH: usize = 64;

/// The hidden layer's columns split into shards of [`SHARD_WIDTH`] (at least one shard,
/// empty when the layer is).
pub(super) fn partition(hidden: usize) -> Vec<Range<usize>> {
    let mut shards: Vec<_> = (0..hidden)
        .step_by(SHARD_WIDTH)
        .map(|start| start..hidden.min(start + SHARD_WIDTH))
        .collect();
    if shards.is_empty() {
        shards.push(0..0);
    }
    shards
}

/// The shards `0..shards` split between `workers` threads in contiguous runs whose lengths
/// differ by at most one.
pub(super) fn assign(shards: usize, workers: usize) -> Vec<Range<usize>> {
    (0..workers)
        .map(|t| t * shards / workers..(t + 1) * shards / workers)
        .collect()
}

/// One thread's share of a step: its shards (by index), its own copy of the batch, its
/// scratch buffers and its own softmax of the logits.
#[derive(Debug)]
pub(super) struct Worker {
    /// Its place among the workers (the order of their runs of shards).
    pub id: usize,
    pub shards: Range<usize>,
    /// The batch this worker's thread gathered, which only that thread reads.
    pub batch: Batch,
    pub scratch: Scratch,
    /// Its passes' blocks, packed once for all its shards where that saves packing.
    shared: SharedBlocks,
    classes: usize,
    /// The logits, then the probabilities, and dz2 of the whole batch, (capacity, classes):
    /// every worker computes them (identically), so that none waits for another.
    probs: Vec<f32>,
    dz2: Vec<f32>,
    /// The batch's loss and accuracy counts from the last backward pass.
    pub metrics: BatchMetrics,
    /// Each of its shards' squared gradient norm from the last backward pass, in order.
    pub grad_sq: Vec<f64>,
}

impl Worker {
    pub fn new(
        id: usize,
        shards: Range<usize>,
        inputs: usize,
        batch_size: usize,
        classes: usize,
        widest: usize,
    ) -> Self {
        Self {
            id,
            batch: Batch::new(inputs, batch_size),
            scratch: Scratch::new(batch_size.max(inputs), widest),
            shared: SharedBlocks::default(),
            classes,
            probs: vec![0.0; batch_size * classes],
            dz2: vec![0.0; batch_size * classes],
            metrics: BatchMetrics::default(),
            grad_sq: vec![0.0; shards.len()],
            shards,
        }
    }

    /// The forward pass of this worker's `shards` over its batch of `n` rows, into their
    /// parts of the logits (`parts`, one `part_len` stretch per shard).
    pub fn forward(
        &mut self,
        token: Level,
        shards: &mut [Shard],
        parts: &mut [f32],
        part_len: usize,
        activation: Activation,
        dropout: Option<HiddenDropout>,
    ) {
        let Self {
            batch,
            scratch,
            shared,
            ..
        } = self;
        let inputs = batch.inputs();
        let rows = SparseRows {
            values: batch.values(),
            masks: &batch.x_masks,
            len: inputs,
            stride: inputs,
            mask_stride: mlp_core::kernels::mask_words(inputs),
        };
        let order = batch.order.rows();
        let terms = shared.row_terms(token, shards.len(), &rows, order);
        for (shard, part) in shards.iter_mut().zip(parts.chunks_exact_mut(part_len)) {
            shard.forward(token, scratch, &terms, order, activation, dropout, part);
        }
    }

    /// Softmax and cross-entropy (against labels smoothed by `smoothing`) of the logits,
    /// z2 = ((z2_0 + b2) + z2_1) + … summed over every shard's part in shard order, then the
    /// backward pass and update of this worker's `shards`, each shard's squared gradient
    /// norm into [`Worker::grad_sq`].
    #[allow(clippy::too_many_arguments)]
    pub fn backward_update(
        &mut self,
        token: Level,
        n: usize,
        parts: &[f32],
        part_len: usize,
        shards: &mut [Shard],
        (activation, dropped, smoothing): (Activation, bool, f32),
        update: Update,
    ) {
        let classes = self.classes;
        let logits = &mut self.probs[..n * classes];
        logits.copy_from_slice(&parts[..n * classes]);
        for part in parts.chunks_exact(part_len).skip(1) {
            for (z, &p) in logits.iter_mut().zip(part) {
                *z += p;
            }
        }
        // p = softmax(z2) and dz2 = (p − t) / n, t the (smoothed) one-hot labels, as in
        // mlp-core's loss module.
        let labels = &self.batch.y[..n];
        let shape = (n, classes);
        self.metrics = loss::smoothed_cross_entropy_on(
            token,
            ArrayViewMut2::from_shape(shape, logits).expect("sized"),
            labels,
            smoothing,
        );
        let probs = ArrayView2::from_shape(shape, &self.probs[..n * classes]).expect("sized");
        let dz2 = ArrayViewMut2::from_shape(shape, &mut self.dz2[..n * classes]).expect("sized");
        loss::smoothed_cross_entropy_backward(probs, labels, smoothing, dz2);

        let pixels = self.batch.pixels(n);
        let packed =
            shares_blocks(token, shards.len()).then(|| self.shared.pack_columns(token, &pixels));
        for (shard, sq) in shards.iter_mut().zip(&mut self.grad_sq) {
            *sq = shard.backward_update(
                token,
                &self.dz2,
                (&pixels, packed),
                activation,
                dropped,
                update,
                &mut self.scratch,
            );
        }
    }

    /// Gathers the examples at `indices` of `data` into this worker's batch, augmented and
    /// with input dropout as `noise` says under `key`.
    pub fn gather(
        &mut self,
        token: Level,
        data: &dyn LabelledData,
        indices: &[usize],
        noise: &InputNoise,
        key: u64,
    ) {
        self.batch.fill(token, data, indices, noise, key);
    }
}

/// Runs `f(worker, its shards, its stretch of out)` for every worker, in parallel on `team`
/// (worker t on thread t, the calling thread taking worker 0). `out` holds `per_shard`
/// values per shard (0 when `f` writes nothing there).
pub(super) fn each_worker<T: Send>(
    team: &mut Team,
    workers: &mut [Worker],
    shards: &mut [Shard],
    out: &mut [T],
    per_shard: usize,
    f: &(impl Fn(&mut Worker, &mut [Shard], &mut [T]) + Sync),
) {
    // The workers' runs tile the shards in order (as `assign` makes them), so the stretches
    // taken below are disjoint.
    let mut next = 0;
    for worker in workers.iter() {
        let run = &worker.shards;
        assert!(
            run.start == next && run.start <= run.end,
            "runs of shards in order"
        );
        next = run.end;
    }
    assert_eq!(next, shards.len(), "the runs cover every shard");
    assert_eq!(
        out.len(),
        shards.len() * per_shard,
        "per_shard values per shard"
    );
    let count = workers.len();
    let (workers, shards, out) = (Split::new(workers), Split::new(shards), Split::new(out));
    team.run(count, &|t| {
        // SAFETY: `run` calls each t once, and the workers' runs of shards are disjoint
        // (checked above), so no two threads take the same items.
        let (worker, shards, out) = unsafe {
            let worker = &mut workers.take(t..t + 1)[0];
            let run = worker.shards.clone();
            let out = out.take(run.start * per_shard..run.end * per_shard);
            (worker, shards.take(run), out)
        };
        f(worker, shards, out)
    });
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // lists of one range, not ranges
mod tests {
    use super::*;

    #[test]
    fn the_partition_takes_64_columns_at_a_time() {
        assert_eq!(partition(0), vec![0..0]);
        assert_eq!(partition(10), vec![0..10]);
        assert_eq!(partition(128), [0..64, 64..128]);
        assert_eq!(partition(200), [0..64, 64..128, 128..192, 192..200]);
    }

    #[test]
    fn shards_are_split_evenly_and_in_order() {
        assert_eq!(assign(2, 1), vec![0..2]);
        assert_eq!(assign(2, 2), [0..1, 1..2]);
        assert_eq!(assign(16, 3), [0..5, 5..10, 10..16]);
        assert_eq!(assign(4, 4), [0..1, 1..2, 2..3, 3..4]);
    }
}
