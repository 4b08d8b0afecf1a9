//! The optimised training step: the maths of `Mlp::forward_training`,
//! `Mlp::backward_training` and `Optimizer::step` (read those first; they are the reference),
//! arranged for speed.
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
//!   parameters). The forward pass of a shard needs nothing but its own parameters and the
//!   batch, so when the next batch is known each worker runs it right after its update, in
//!   the same phase: a step in a run is then one phase and one join, softmax to forward,
//!   with the logits of the batch being trained and of the next in two buffers. Each thread
//!   (a *worker*) runs a contiguous run of shards; with one thread, one worker runs them all. The partition depends on the width alone and every
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
mod input_noise;
mod layout;
mod shard;
mod shared;
mod team;
mod worker;

use fearless_simd::Level;
use mlp_core::kernels::{Panels, Update, tile_columns};
use mlp_core::{Activation, BatchMetrics, Mlp, Shape, SimdLevel, SimdLevelError};

use self::batch::ReadyBatch;
use self::inference::EvalBuffers;
use self::input_noise::InputNoise;
use self::layout::{shard_tensors, write_tensors};
use self::shard::{HiddenDropout, Shard};
use self::team::Team;
use self::worker::{Worker, assign, each_worker, partition};
use crate::data::LabelledData;
use crate::regularise::{Regularisers, StepKeys};

pub use self::worker::SHARD_WIDTH;

/// A training batch: the examples' indices and the key of the step's random choices
/// (augmentation, dropout; see [`crate::regularise`]). Plain index slices convert with key 0.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The examples, in batch order.
    pub indices: &'a [usize],
    /// The step's key.
    pub key: u64,
}

impl<'a> From<&'a [usize]> for Sample<'a> {
    fn from(indices: &'a [usize]) -> Self {
        Self { indices, key: 0 }
    }
}

impl<'a> From<&'a Vec<usize>> for Sample<'a> {
    fn from(indices: &'a Vec<usize>) -> Self {
        Self { indices, key: 0 }
    }
}

impl<'a, const N: usize> From<&'a [usize; N]> for Sample<'a> {
    fn from(indices: &'a [usize; N]) -> Self {
        Self { indices, key: 0 }
    }
}

/// What the engine cannot train with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Augmentation shifts and mirrors square images only.
    #[error("augmentation needs square images, but the data has {inputs} features")]
    NotSquare {
        /// Features per example.
        inputs: usize,
    },
}

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
    /// Each shard's part of the logits, shard s's (batch_size, classes) at `s * part_len`,
    /// twice: the batch being trained's in `z2_parts[front]`, and the next's being computed
    /// in the other (see [`Engine::train_step`]).
    z2_parts: [Vec<f32>; 2],
    front: usize,
    part_len: usize,
    /// Moments the shards hold (see [`Engine::set_moments`]).
    moment_count: usize,
    regularisers: Regularisers,
    /// What gathering a training batch puts its rows through.
    noise: InputNoise,
    batch_size: usize,
    /// The engine's threads: the step uses one per worker, evaluation all of them.
    team: Team,
    /// Each evaluation thread's buffers, made at the first evaluation for as many threads
    /// as it has chunks (at most `threads`).
    eval: Vec<EvalBuffers>,
    /// Which examples the training batches already hold (see [`Engine::train_step`]).
    ready: ReadyBatch,
}

impl Engine {
    /// Lays out `model` for training on batches of at most `batch_size` rows, on the best
    /// SIMD level this CPU has, on `threads` threads of the engine's own (the calling thread
    /// and `threads − 1` it starts; the step uses at most one per shard of [`SHARD_WIDTH`]
    /// columns, evaluation them all). The thread count changes no result.
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
        // W1 in panels as wide as the level's tiles (see `kernels::Panels`).
        let w1 = (inputs, Panels::columns(inputs, tile_columns(token)));
        let shards: Vec<Shard> = partition(shape.hidden)
            .into_iter()
            .enumerate()
            .map(|(s, cols)| {
                let col0 = cols.start;
                let tensors = shard_tensors(model, s, cols, w1.1);
                Shard::new(tensors, w1, col0, batch_size, classes)
            })
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
            z2_parts: [(); 2].map(|_| vec![0.0; shards.len() * part_len]),
            front: 0,
            part_len,
            moment_count: 0,
            regularisers: Regularisers::default(),
            noise: InputNoise::default(),
            team: Team::new(threads),
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
        write_tensors(&self.shards, |s| &s.params, model);
        model.activation = self.activation;
    }

    /// The current parameters as a new [`Mlp`].
    pub fn to_model(&self) -> Mlp {
        let mut model = Mlp::zeros(self.shape, self.activation);
        self.copy_to(&mut model);
        model
    }

    /// Lays out the optimiser's moments, each in the model's layout (as many as the updates
    /// to come keep: 0, 1 or 2; all zero to start a run).
    pub fn set_moments(&mut self, moments: &[Mlp]) {
        assert!(moments.len() <= 2, "optimisers keep at most two moments");
        let parts = partition(self.shape.hidden);
        for (s, (shard, cols)) in self.shards.iter_mut().zip(parts).enumerate() {
            shard.moments = Default::default();
            for (slot, moment) in shard.moments.iter_mut().zip(moments) {
                assert_eq!(moment.shape(), self.shape, "moments have the model's shape");
                *slot = shard_tensors(moment, s, cols.clone(), shard.w1_layout);
            }
        }
        self.moment_count = moments.len();
    }

    /// The optimiser's moments, in the model's layout.
    pub fn moments(&self) -> Vec<Mlp> {
        (0..self.moment_count)
            .map(|k| {
                let mut moment = Mlp::zeros(self.shape, self.activation);
                write_tensors(&self.shards, |s| &s.moments[k], &mut moment);
                moment
            })
            .collect()
    }

    /// Trains with `regularisers` from the next step on (none to start with). Augmentation
    /// needs square images (an error otherwise).
    pub fn set_regularisers(&mut self, regularisers: Regularisers) -> Result<(), EngineError> {
        let inputs = self.shape.inputs;
        let side = inputs.isqrt();
        if regularisers.augmentation.is_some() && side * side != inputs {
            return Err(EngineError::NotSquare { inputs });
        }
        if regularisers.hidden_dropout.is_some() {
            self.shards.iter_mut().for_each(Shard::prepare_dropout);
        }
        self.noise = InputNoise {
            augmentation: regularisers.augmentation,
            dropout: regularisers.input_dropout,
            side,
        };
        self.regularisers = regularisers;
        self.ready.clear();
        Ok(())
    }

    /// The hidden layer's dropout in the forward pass of the batch drawn under `key`.
    fn hidden_dropout(&self, key: u64) -> Option<HiddenDropout> {
        let hidden = self.shape.hidden;
        self.regularisers
            .hidden_dropout
            .map(|dropout| HiddenDropout {
                dropout,
                key: StepKeys::of(key).hidden,
                hidden,
            })
    }

    /// The first phase of a step whose batch is not ready: every worker gathers the whole
    /// batch into its own copy and runs its shards' forward pass over it, into
    /// `z2_parts[front]`.
    fn gather_forward(&mut self, data: &dyn LabelledData, batch: Sample) {
        let (token, activation, part_len) = (self.token, self.activation, self.part_len);
        let dropout = self.hidden_dropout(batch.key);
        let noise = &self.noise;
        each_worker(
            &mut self.team,
            &mut self.workers,
            &mut self.shards,
            &mut self.z2_parts[self.front],
            part_len,
            &|worker, shards, parts| {
                worker.gather(token, data, batch.indices, noise, batch.key);
                worker.forward(token, shards, parts, part_len, activation, dropout);
            },
        );
    }

    /// One step of mini-batch training on the examples of `batch` in `data`: forward,
    /// backward and `update` (an [`Update`], or a [`Sgd`](crate::Sgd)), with the
    /// regularisers set by [`Engine::set_regularisers`] drawing under the batch's key.
    ///
    /// `next` names the examples of the following step (or is empty). They are fetched into
    /// cache while this step computes, then gathered and run through the forward pass at its
    /// end, by each worker right after its update, which saves the next step a phase (and
    /// its join). The next call uses them if it asks for the same indices and key of the
    /// same `data` object (known by its address), with the same regularisers, and gathers
    /// again otherwise. So the call after one with a `next` must pass the same,
    /// unchanged data object, or another at another address; then `next` never changes a
    /// result.
    pub fn train_step<'a, 'b>(
        &mut self,
        data: &dyn LabelledData,
        batch: impl Into<Sample<'a>>,
        next: impl Into<Sample<'b>>,
        update: impl Into<Update>,
    ) -> StepStats {
        let (batch, next, update) = (batch.into(), next.into(), update.into());
        let n = batch.indices.len();
        assert!(
            n <= self.batch_size && next.indices.len() <= self.batch_size,
            "training batches are at most the engine's batch size {}",
            self.batch_size
        );
        assert_eq!(
            update.moments(),
            self.moment_count,
            "the update keeps as many moments as set_moments laid out"
        );
        if !self.ready.holds(data, batch) {
            self.gather_forward(data, batch);
        }
        assert!(
            self.workers.iter().all(|w| w.batch.order.rows().len() == n),
            "the gathered batch has {n} rows"
        );

        // Until the next batch is complete, the buffers hold no batch anyone can rely on.
        self.ready.clear();
        let (token, activation, part_len) = (self.token, self.activation, self.part_len);
        let reg = &self.regularisers;
        let pass = (
            activation,
            reg.hidden_dropout.is_some(),
            reg.label_smoothing,
        );
        let next_dropout = self.hidden_dropout(next.key);
        let noise = &self.noise;
        let [front, back] = &mut self.z2_parts;
        let (parts, next_parts) = if self.front == 0 {
            (&*front, back)
        } else {
            (&*back, front)
        };
        let workers = self.workers.len();
        let share = |t: usize| {
            let len = next.indices.len();
            &next.indices[t * len / workers..(t + 1) * len / workers]
        };
        // Each worker: its share of the next batch asked into cache, so that its gather does
        // not stall on memory (a thousand prefetches take a core about 4 µs, each waiting for
        // a free miss buffer: split between the threads, each pays its share, which measured
        // faster than the calling thread paying it all before the fork); backward and update
        // with its own copy of the batch; then the next batch into that copy and its forward
        // pass, with the parameters just updated.
        each_worker(
            &mut self.team,
            &mut self.workers,
            &mut self.shards,
            next_parts,
            part_len,
            &|worker, shards, next_parts| {
                data.prefetch(share(worker.id));
                worker.backward_update(token, n, parts, part_len, shards, pass, update);
                if !next.indices.is_empty() {
                    worker.gather(token, data, next.indices, noise, next.key);
                    worker.forward(
                        token,
                        shards,
                        next_parts,
                        part_len,
                        activation,
                        next_dropout,
                    );
                }
            },
        );
        if !next.indices.is_empty() {
            self.front = 1 - self.front;
        }
        self.ready.set(data, next);
        StepStats {
            metrics: self.workers[0].metrics,
            // Summed in shard order, whichever thread computed which.
            grad_norm: self
                .workers
                .iter()
                .flat_map(|w| &w.grad_sq)
                .fold(0.0, |sum, sq| sum + sq)
                .sqrt(),
        }
    }
}
