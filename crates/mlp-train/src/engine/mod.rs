//! The optimised training step: the maths of `Mlp::forward`, `Mlp::backward` and `Sgd::step`
//! (read those first; they are the reference), arranged for speed.
//!
//! - **Sparse first layer.** Half of Fashion-MNIST's pixels are 0, so x·W1 and xᵀ·dz1 multiply
//!   only the non-zero entries, found by bit masks ([`mlp_core::kernels`]): half the
//!   floating-point work of the dense products, which dominate the step.
//! - **Fused update.** dW1 is applied to W1 four rows at a time as soon as they are computed,
//!   and their squares summed (`kernels::sparse_gradient_step`); dW1 is never stored.
//! - **One SIMD level per pass.** Each pass (a shard's forward, its backward and update, a
//!   batch's masks, an evaluation chunk) enters the engine's [`SimdLevel`] once with
//!   `fearless_simd::dispatch!`, and every kernel under it is compiled for that level. Every
//!   level computes the same bits (see `mlp_core::simd`).
//! - **Two shards of the hidden layer.** Shard s owns some columns of W1 and b1 and the same
//!   rows of W2. The shards are independent except for the logits,
//!   z2 = (a1_0·W2_0 + b2) + a1_1·W2_1, so a step is two phases with a join between them:
//!   forward (each shard its columns), then backward and update (each shard its parameters).
//!   With two threads each shard runs on its own core; with one, shard 0 then shard 1. The
//!   partition and the order of every sum are the same either way, so the thread count never
//!   changes a result.
//! - **Each core its own copy of the batch, gathered ahead.** Gathering copies the batch's
//!   rows, masks their non-zeros by row (for the forward pass) and by pixel (the backward
//!   pass reads x's columns in place), and orders the rows for the forward pass. Images
//!   stored as bytes are copied as bytes and read through a table by the kernels: a quarter
//!   of the memory written per batch, and the gather 2–2.5× faster (10.5–13 → 4.4–6 µs per
//!   thread and step), for about 1 µs more in the dW1 kernel (docs/PERFORMANCE.md).
//!   In training each thread gathers the whole batch into buffers of its own, right after its
//!   backward pass of the step before, so the passes read only what their own core wrote and
//!   a step needs no gather phase of its own. Sharing one copy, half gathered by each core,
//!   was slower: every line one core wrote was fetched by the other, and invalidated again
//!   at the next gather. (Evaluation splits the rows instead: see `inference.rs`.)
//! - **No allocation per step.** Every buffer is sized once for the largest batch.

mod batch;
mod inference;
mod shard;

use fearless_simd::Level;
use mlp_core::kernels::mask_words;
use mlp_core::{Activation, BatchMetrics, Mlp, Shape, SimdLevel, SimdLevelError};
use ndarray::{Array1, Array2};

use self::batch::{Batch, ReadyBatch};
use self::inference::EvalBuffers;
use self::shard::{Shard, SparseRows};
use crate::data::LabelledData;
use crate::evaluate::Evaluation;
use crate::sgd::Sgd;

/// Number of shards the hidden layer is split into (and so the most threads a step uses).
pub const SHARDS: usize = 2;

/// What one training step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Loss and accuracy counts of the batch, before the update.
    pub metrics: BatchMetrics,
    /// Euclidean norm of the data-loss gradient (all parameters).
    pub grad_norm: f64,
}

/// A network's parameters laid out for fast training, with the buffers for batches of up to
/// `batch_size` rows. Create it from an [`Mlp`], train, and read the result back with
/// [`Engine::copy_to`].
#[derive(Debug)]
pub struct Engine {
    shape: Shape,
    /// The instruction set the passes are compiled for, and its token.
    level: SimdLevel,
    token: Level,
    activation: Activation,
    shards: [Shard; SHARDS],
    b2: Vec<f32>,
    parallel: bool,
    batch_size: usize,
    /// The gathered batch: `batches[s]` is what shard s reads when each thread gathers its
    /// own copy (parallel training), else both read `batches[0]`.
    batches: [Batch; SHARDS],
    z2_parts: [Vec<f32>; SHARDS],
    /// Each thread's buffers for evaluation.
    eval: [EvalBuffers; SHARDS],
    /// Which examples the training batches already hold (see [`Engine::train_step`]).
    ready: ReadyBatch,
}

impl Engine {
    /// Lays out `model` for training on batches of at most `batch_size` rows, on the best
    /// SIMD level this CPU has. With `parallel`, the two shards (and in evaluation, two halves
    /// of the rows) run on two threads of the current rayon pool.
    pub fn new(model: &Mlp, batch_size: usize, parallel: bool) -> Self {
        Self::with_level(model, batch_size, parallel, SimdLevel::best())
            .expect("the best level is supported")
    }

    /// [`Engine::new`] on the SIMD level `level` (an error if this CPU lacks it). Every level
    /// gives the same bits.
    pub fn with_level(
        model: &Mlp,
        batch_size: usize,
        parallel: bool,
        level: SimdLevel,
    ) -> Result<Self, SimdLevelError> {
        let token = level.token().ok_or(SimdLevelError::Unsupported { level })?;
        let shape = model.shape();
        let Shape {
            inputs,
            hidden,
            classes,
        } = shape;
        // Shard 0 takes the first ⌈H/2⌉ columns rounded up to whole 16-column chunks.
        let split = hidden.div_ceil(2).next_multiple_of(16).min(hidden);
        let shard = |cols: std::ops::Range<usize>| {
            let w1 = model
                .w1
                .columns()
                .into_iter()
                .skip(cols.start)
                .take(cols.len())
                .collect::<Vec<_>>();
            let w1 = (0..inputs)
                .flat_map(|p| w1.iter().map(move |col| col[p]))
                .collect();
            let b1 = model.b1.as_slice().expect("contiguous")[cols.clone()].to_vec();
            let w2t = (0..classes)
                .flat_map(|c| cols.clone().map(move |h| model.w2[[h, c]]))
                .collect();
            Shard::new(w1, b1, w2t, batch_size, classes)
        };
        Ok(Self {
            shape,
            level,
            token,
            activation: model.activation,
            shards: [shard(0..split), shard(split..hidden)],
            b2: model.b2.to_vec(),
            parallel,
            batch_size,
            batches: [
                Batch::new(inputs, batch_size),
                // Only parallel training uses a second copy.
                Batch::new(inputs, if parallel { batch_size } else { 0 }),
            ],
            z2_parts: [
                vec![0.0; batch_size * classes],
                vec![0.0; batch_size * classes],
            ],
            eval: [(); SHARDS].map(|_| EvalBuffers::new(inputs, [split, hidden - split], classes)),
            ready: ReadyBatch::new(batch_size),
        })
    }

    /// The SIMD level the passes run on.
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Writes the current parameters into `model` (which must have the same shape).
    pub fn copy_to(&self, model: &mut Mlp) {
        assert_eq!(
            model.shape(),
            self.shape,
            "copy_to needs a model of the engine's shape"
        );
        let mut col0 = 0;
        for shard in &self.shards {
            let w = shard.width;
            for p in 0..self.shape.inputs {
                for k in 0..w {
                    model.w1[[p, col0 + k]] = shard.w1[p * w + k];
                }
            }
            for k in 0..w {
                model.b1[col0 + k] = shard.b1[k];
                for c in 0..self.shape.classes {
                    model.w2[[col0 + k, c]] = shard.w2t[c * w + k];
                }
            }
            col0 += w;
        }
        model
            .b2
            .as_slice_mut()
            .expect("contiguous")
            .copy_from_slice(&self.b2);
        model.activation = self.activation;
    }

    /// The current parameters as a new [`Mlp`].
    pub fn to_model(&self) -> Mlp {
        let Shape {
            inputs,
            hidden,
            classes,
        } = self.shape;
        let mut model = Mlp {
            w1: Array2::zeros((inputs, hidden)),
            b1: Array1::zeros(hidden),
            w2: Array2::zeros((hidden, classes)),
            b2: Array1::zeros(classes),
            activation: self.activation,
        };
        self.copy_to(&mut model);
        model
    }

    /// Runs `f` on both shards, on two threads when parallel, else one after the other.
    fn on_shards<A: Send, R: Send>(
        parallel: bool,
        args: [A; SHARDS],
        f: impl Fn(usize, A) -> R + Sync,
    ) -> [R; SHARDS] {
        let [a0, a1] = args;
        if parallel {
            let (r0, r1) = rayon::join(|| f(0, a0), || f(1, a1));
            [r0, r1]
        } else {
            [f(0, a0), f(1, a1)]
        }
    }

    /// Phase 1, training: every thread gathers the whole batch into its own [`Batch`]
    /// (one thread: one copy, read by both shards).
    fn gather_training(&mut self, data: &dyn LabelledData, indices: &[usize]) {
        let (inputs, token) = (self.shape.inputs, self.token);
        let [b0, b1] = &mut self.batches;
        if self.parallel {
            Self::on_shards(true, [b0, b1], |_, batch| {
                batch.fill(token, data, indices, inputs)
            });
        } else {
            b0.fill(token, data, indices, inputs);
        }
    }

    /// The batches shards 0 and 1 read: each its own in parallel training, else both the first.
    fn shard_batches(batches: &[Batch; SHARDS], own: bool) -> [&Batch; SHARDS] {
        [&batches[0], &batches[if own { 1 } else { 0 }]]
    }

    /// Phase 2: the forward pass of both shards, each thread first asking for its half of the
    /// next batch (`next` of `data`) to be fetched into cache, so that its gather at the end
    /// of the step does not stall on memory. A thousand prefetches take a core about 4 µs
    /// (each waits for a free miss buffer): split between the threads they cost each 2 µs,
    /// where the calling thread used to spend 4 µs alone before the fork (12 alternating
    /// bench runs: epoch quartiles 0.089 / 0.092 / 0.103 s against 0.090 / 0.102 / 0.108 s).
    fn forward(&mut self, n: usize, data: &dyn LabelledData, next: &[usize]) {
        let inputs = self.shape.inputs;
        let batches = Self::shard_batches(&self.batches, self.parallel);
        assert!(
            batches.iter().all(|b| b.order.rows().len() == n),
            "the gathered batch has {n} rows"
        );
        let rows = batches.map(|batch| SparseRows {
            values: batch.values(),
            masks: &batch.x_masks,
            len: inputs,
            stride: inputs,
            mask_stride: mask_words(inputs),
        });
        let [s0, s1] = &mut self.shards;
        let [z0, z1] = &mut self.z2_parts;
        let (activation, b2) = (self.activation, &self.b2);
        let (parallel, token) = (self.parallel, self.token);
        let (first, second) = next.split_at(next.len() / 2);
        Self::on_shards(
            self.parallel,
            [(s0, z0), (s1, z1)],
            |s, (shard, z2_part)| {
                match (parallel, s) {
                    (true, 0) => data.prefetch(first),
                    (true, _) => data.prefetch(second),
                    (false, 0) => data.prefetch(next),
                    (false, _) => {}
                }
                shard.forward(
                    token,
                    &rows[s],
                    batches[s].order.rows(),
                    activation,
                    (s == 0).then_some(b2.as_slice()),
                    z2_part,
                );
            },
        );
    }

    /// One step of mini-batch SGD on the examples at `indices` of `data`: forward, backward
    /// and update.
    ///
    /// `next` names the examples of the following step (or is empty). They are fetched into
    /// cache while this step computes and gathered at its end, by each thread right after its
    /// backward pass, which saves the next step a phase. The next call uses them if it asks
    /// for the same indices of the same `data` object (known by its address), and gathers
    /// again otherwise. So the call after one with a `next` must pass the same, unchanged
    /// data object, or another at another address; then `next` never changes a result.
    pub fn train_step(
        &mut self,
        data: &dyn LabelledData,
        indices: &[usize],
        next: &[usize],
        sgd: &Sgd,
    ) -> StepStats {
        let n = indices.len();
        assert!(
            n <= self.batch_size && next.len() <= self.batch_size,
            "training batches are at most the engine's batch size {}",
            self.batch_size
        );
        if !self.ready.holds(data, indices) {
            self.gather_training(data, indices);
        }
        self.forward(n, data, next);

        let (inputs, token) = (self.shape.inputs, self.token);
        // Until the next batch is complete, the buffers hold no batch anyone can rely on.
        self.ready.clear();
        let z2_parts = [self.z2_parts[0].as_slice(), self.z2_parts[1].as_slice()];
        let [s0, s1] = &mut self.shards;
        let activation = self.activation;
        let b2 = self.b2.as_mut_slice();
        let [(metrics, sq0), (_, sq1)] = if self.parallel {
            // Each thread: backward with its own copy of the batch, then the next batch into it.
            let [batch0, batch1] = &mut self.batches;
            let args = [(s0, Some(b2), batch0), (s1, None, batch1)];
            Self::on_shards(true, args, |_, (shard, b2, batch)| {
                let pixels = batch.pixels(n, inputs);
                let labels = &batch.y[..n];
                let result =
                    shard.backward_update(token, z2_parts, labels, &pixels, activation, sgd, b2);
                if !next.is_empty() {
                    batch.fill(token, data, next, inputs);
                }
                result
            })
        } else {
            let batch = &self.batches[0];
            let (pixels, labels) = (batch.pixels(n, inputs), &batch.y[..n]);
            let results = [
                s0.backward_update(token, z2_parts, labels, &pixels, activation, sgd, Some(b2)),
                s1.backward_update(token, z2_parts, labels, &pixels, activation, sgd, None),
            ];
            if !next.is_empty() {
                self.batches[0].fill(token, data, next, inputs);
            }
            results
        };
        self.ready.set(data, next);
        StepStats {
            metrics,
            grad_norm: (sq0 + sq1).sqrt(),
        }
    }

    /// Loss and confusion matrix of the current parameters on all of `data`: each thread
    /// evaluates one half of the rows (see `inference.rs`).
    pub fn evaluate(&mut self, data: &dyn LabelledData) -> Evaluation {
        let classes = self.shape.classes;
        let len = data.len();
        // The halves end on whole chunks, so that the chunks are those of one thread.
        let half = (len / 2).next_multiple_of(inference::CHUNK).min(len);
        let (shards, b2, activation) = (&self.shards, self.b2.as_slice(), self.activation);
        let token = self.token;
        let [e0, e1] = &mut self.eval;
        let args = [(e0, 0..half), (e1, half..len)];
        let [(m0, c0), (m1, c1)] = Self::on_shards(self.parallel, args, |_, (buffers, rows)| {
            let mut confusion = Array2::zeros((classes, classes));
            let metrics = inference::evaluate_rows(
                token,
                shards,
                b2,
                activation,
                data,
                rows,
                buffers,
                &mut confusion,
            );
            (metrics, confusion)
        });
        let mut metrics = m0;
        metrics.merge(m1);
        Evaluation {
            loss: metrics.mean_loss(),
            confusion: c0 + c1,
        }
    }
}
