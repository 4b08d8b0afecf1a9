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
//! - **Shards of the hidden layer, on any number of threads.** The hidden layer is split into
//!   shards of 64 columns (`worker.rs`): shard s owns its columns of W1 and b1 and the same
//!   rows of W2. The shards are independent except for the logits,
//!   z2 = ((a1_0·W2_0 + b2) + a1_1·W2_1) + …, so a step is two phases with a join between
//!   them: forward (each shard its columns), then backward and update (each shard its
//!   parameters). Each thread (a *worker*) runs a contiguous run of shards; with one
//!   thread, one worker runs them all. The partition depends on the width alone and every
//!   sum is taken shard by shard in shard order, so the thread count never changes a
//!   result. A step uses at most one thread per shard (two for 784-128-10); evaluation
//!   splits the rows and uses every thread.
//! - **Each worker its own copy of the batch, gathered ahead.** Gathering copies the batch's
//!   rows, masks their non-zeros by row (for the forward pass) and by pixel (the backward
//!   pass reads x's columns in place), and orders the rows for the forward pass. Images
//!   stored as bytes are copied as bytes and read through a table by the kernels: a quarter
//!   of the memory written per batch, and the gather 2–2.5× faster (10.5–13 → 4.4–6 µs per
//!   thread and step), for about 1 µs more in the dW1 kernel (docs/PERFORMANCE.md).
//!   In training each worker gathers the whole batch into buffers of its own, right after
//!   its backward pass of the step before, so the passes read only what their own core
//!   wrote and a step needs no gather phase of its own. Sharing one copy, half gathered by
//!   each core, was slower: every line one core wrote was fetched by the other, and
//!   invalidated again at the next gather. (Evaluation splits the rows instead: see
//!   `inference.rs`.)
//! - **No allocation per step.** Every buffer is sized once for the largest batch.

mod batch;
mod inference;
mod shard;
mod worker;

use fearless_simd::Level;
use mlp_core::{Activation, BatchMetrics, Mlp, Shape, SimdLevel, SimdLevelError};
use ndarray::{Array1, Array2};

use self::batch::ReadyBatch;
use self::inference::EvalBuffers;
use self::shard::Shard;
use self::worker::{Worker, assign, each_worker, join_all, partition};
use crate::data::LabelledData;
use crate::evaluate::Evaluation;
use crate::sgd::Sgd;

pub use self::worker::SHARD_WIDTH;

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
    /// The hidden layer's fixed partition (see `worker.rs`); shard 0 also holds b2.
    shards: Vec<Shard>,
    /// One per training thread (at most one per shard), each with its run of shards.
    workers: Vec<Worker>,
    /// Each shard's part of the logits, shard s's (batch_size, classes) at `s * part_len`.
    z2_parts: Vec<f32>,
    part_len: usize,
    /// Each shard's squared gradient norm of the last step.
    grad_sq: Vec<f64>,
    batch_size: usize,
    /// Threads evaluation may use.
    threads: usize,
    /// Each evaluation thread's buffers, made at the first evaluation for as many threads
    /// as it has chunks (at most `threads`).
    eval: Vec<EvalBuffers>,
    /// Which examples the training batches already hold (see [`Engine::train_step`]).
    ready: ReadyBatch,
}

impl Engine {
    /// Lays out `model` for training on batches of at most `batch_size` rows, on the best
    /// SIMD level this CPU has, for `threads` threads of the current rayon pool (the step
    /// uses at most one per shard of [`SHARD_WIDTH`] columns; evaluation uses them all).
    /// The thread count changes no result.
    pub fn new(model: &Mlp, batch_size: usize, threads: usize) -> Self {
        Self::with_level(model, batch_size, threads, SimdLevel::best())
            .expect("the best level is supported")
    }

    /// [`Engine::new`] on the SIMD level `level` (an error if this CPU lacks it). Every level
    /// gives the same bits.
    pub fn with_level(
        model: &Mlp,
        batch_size: usize,
        threads: usize,
        level: SimdLevel,
    ) -> Result<Self, SimdLevelError> {
        let token = level.token().ok_or(SimdLevelError::Unsupported { level })?;
        let threads = threads.max(1);
        let shape = model.shape();
        let Shape {
            inputs,
            hidden: _,
            classes,
        } = shape;
        let shard = |s: usize, cols: std::ops::Range<usize>| {
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
            let b2 = if s == 0 {
                model.b2.to_vec()
            } else {
                Vec::new()
            };
            Shard::new(w1, b1, w2t, b2, batch_size, classes)
        };
        let shards: Vec<Shard> = partition(shape.hidden)
            .into_iter()
            .enumerate()
            .map(|(s, cols)| shard(s, cols))
            .collect();
        let widest = shards.iter().map(|s| s.width).max().unwrap_or(0);
        let workers = assign(shards.len(), threads.min(shards.len()))
            .into_iter()
            .enumerate()
            .map(|(id, run)| Worker::new(id, run, inputs, batch_size, classes, widest))
            .collect();
        let part_len = batch_size * classes;
        Ok(Self {
            shape,
            level,
            token,
            activation: model.activation,
            z2_parts: vec![0.0; shards.len() * part_len],
            part_len,
            grad_sq: vec![0.0; shards.len()],
            threads,
            eval: Vec::new(),
            shards,
            workers,
            batch_size,
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
            .copy_from_slice(&self.shards[0].b2);
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

    /// Phase 1, training: every worker gathers the whole batch into its own copy.
    fn gather_training(&mut self, data: &dyn LabelledData, indices: &[usize]) {
        let token = self.token;
        each_worker(
            &mut self.workers,
            &mut self.shards,
            &mut [(); 0],
            0,
            &|w, _, _| w.gather(token, data, indices),
        );
    }

    /// Phase 2: the forward pass of every shard, each worker first asking for its share of
    /// the next batch (`next` of `data`) to be fetched into cache, so that its gather at the
    /// end of the step does not stall on memory. A thousand prefetches take a core about
    /// 4 µs (each waits for a free miss buffer): split between two threads they cost each
    /// 2 µs, where the calling thread used to spend 4 µs alone before the fork (12
    /// alternating bench runs: epoch quartiles 0.089 / 0.092 / 0.103 s against
    /// 0.090 / 0.102 / 0.108 s).
    fn forward(&mut self, n: usize, data: &dyn LabelledData, next: &[usize]) {
        assert!(
            self.workers.iter().all(|w| w.batch.order.rows().len() == n),
            "the gathered batch has {n} rows"
        );
        let (token, activation, part_len) = (self.token, self.activation, self.part_len);
        let workers = self.workers.len();
        each_worker(
            &mut self.workers,
            &mut self.shards,
            &mut self.z2_parts,
            part_len,
            &|worker, shards, parts| {
                let t = worker.id;
                data.prefetch(&next[t * next.len() / workers..(t + 1) * next.len() / workers]);
                worker.forward(token, shards, parts, part_len, activation);
            },
        );
    }

    /// One step of mini-batch SGD on the examples at `indices` of `data`: forward, backward
    /// and update.
    ///
    /// `next` names the examples of the following step (or is empty). They are fetched into
    /// cache while this step computes and gathered at its end, by each worker right after its
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

        // Until the next batch is complete, the buffers hold no batch anyone can rely on.
        self.ready.clear();
        let (token, activation, part_len) = (self.token, self.activation, self.part_len);
        let parts = self.z2_parts.as_slice();
        // Each worker: backward with its own copy of the batch, then the next batch into it.
        each_worker(
            &mut self.workers,
            &mut self.shards,
            &mut self.grad_sq,
            1,
            &|worker, shards, grad_sq| {
                worker.backward_update(token, n, parts, part_len, shards, grad_sq, activation, sgd);
                if !next.is_empty() {
                    worker.gather(token, data, next);
                }
            },
        );
        self.ready.set(data, next);
        StepStats {
            metrics: self.workers[0].metrics,
            // Summed in shard order, whichever thread computed which.
            grad_norm: self.grad_sq.iter().fold(0.0, |sum, sq| sum + sq).sqrt(),
        }
    }

    /// Loss and confusion matrix of the current parameters on all of `data`: the rows in
    /// chunks, each thread a contiguous run of them (see `inference.rs`).
    pub fn evaluate(&mut self, data: &dyn LabelledData) -> Evaluation {
        let classes = self.shape.classes;
        let len = data.len();
        let chunks = len.div_ceil(inference::CHUNK);
        let threads = self.threads.min(chunks).max(1);
        let widest = self.shards.iter().map(|s| s.width).max().unwrap_or(0);
        while self.eval.len() < threads {
            let buffers = EvalBuffers::new(self.shape.inputs, widest, classes);
            self.eval.push(buffers);
        }
        let mut results = vec![BatchMetrics::default(); chunks];
        let mut confusions = vec![Array2::zeros((classes, classes)); threads];
        let runs = assign(chunks, threads);
        let mut tasks = Vec::with_capacity(runs.len());
        let mut rest = results.as_mut_slice();
        for ((buffers, run), confusion) in self.eval.iter_mut().zip(runs).zip(&mut confusions) {
            let (mine, others) = rest.split_at_mut(run.len());
            rest = others;
            tasks.push((buffers, run, mine, confusion));
        }
        let (shards, activation, token) = (self.shards.as_slice(), self.activation, self.token);
        join_all(&mut tasks, &|(buffers, run, results, confusion)| {
            inference::evaluate_chunks(
                token,
                shards,
                activation,
                data,
                run.clone(),
                buffers,
                results,
                confusion,
            );
        });
        // Summed chunk by chunk in order, whichever thread evaluated which.
        let metrics = results
            .into_iter()
            .fold(BatchMetrics::default(), |mut sum, m| {
                sum.merge(m);
                sum
            });
        Evaluation {
            loss: metrics.mean_loss(),
            confusion: confusions
                .into_iter()
                .fold(Array2::zeros((classes, classes)), |a, b| a + b),
        }
    }
}
