//! The optimised training step: the maths of `Mlp::forward`, `Mlp::backward` and `Sgd::step`
//! (read those first; they are the reference), arranged for speed.
//!
//! - **Sparse first layer.** Half of Fashion-MNIST's pixels are 0, so x·W1 and xᵀ·dz1 multiply
//!   only the non-zero entries, found by bit masks ([`mlp_core::kernels`]): half the
//!   floating-point work of the dense products, which dominate the step.
//! - **Fused update.** Each row of dW1 is applied to W1 as soon as it is computed and its
//!   squared norm accumulated; dW1 is never stored.
//! - **Two shards of the hidden layer.** Shard s owns some columns of W1 and b1 and the same
//!   rows of W2. The shards are independent except for the logits,
//!   z2 = (a1_0·W2_0 + b2) + a1_1·W2_1, so a step is three phases with a join between them:
//!   gather (each thread half of the batch's rows: copies them, masks their non-zeros, and
//!   transposes them, xᵀ and masks, for the backward pass), forward (each shard its columns),
//!   backward and update (each shard its parameters).
//!   With two threads each shard runs on its own core; with one, shard 0 then shard 1. The
//!   partition and the order of every sum are the same either way, so the thread count never
//!   changes a result.
//! - **No allocation per step.** Every buffer is sized once for the largest batch.

mod shard;

use mlp_core::kernels::{mask_words, nonzero_mask, transpose_columns};
use mlp_core::{Activation, BatchMetrics, Mlp, Shape, loss::argmax};
use ndarray::{Array1, Array2};

use self::shard::{Shard, SparseRows};
use crate::data::LabelledData;
use crate::evaluate::{EVAL_BATCH, Evaluation};
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
/// `capacity` rows. Create it from an [`Mlp`], train, and read the result back with
/// [`Engine::copy_to`].
#[derive(Debug)]
pub struct Engine {
    shape: Shape,
    activation: Activation,
    shards: [Shard; SHARDS],
    b2: Vec<f32>,
    parallel: bool,
    capacity: usize,
    // The gathered batch, one row per example, with the masks of its non-zeros.
    x: Vec<f32>,
    y: Vec<usize>,
    x_masks: Vec<u64>,
    // The batch by pixel (training only), in two halves of rows: x transposed and masks.
    xt: Vec<f32>,
    xt_masks: Vec<u64>,
    z2_parts: [Vec<f32>; SHARDS],
    eval_indices: Vec<usize>,
}

impl Engine {
    /// Lays out `model` for training on batches of at most `batch_size` rows (evaluation uses
    /// batches of [`EVAL_BATCH`]). With `parallel`, the two shards run on two threads of the
    /// current rayon pool.
    pub fn new(model: &Mlp, batch_size: usize, parallel: bool) -> Self {
        let shape = model.shape();
        let Shape {
            inputs,
            hidden,
            classes,
        } = shape;
        let capacity = batch_size.max(EVAL_BATCH);
        // Shard 0 takes the first ⌈H/2⌉ columns rounded up to whole 16-float registers.
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
            Shard::new(w1, b1, w2t, capacity, classes)
        };
        Self {
            shape,
            activation: model.activation,
            shards: [shard(0..split), shard(split..hidden)],
            b2: model.b2.to_vec(),
            parallel,
            capacity,
            x: vec![0.0; capacity * inputs],
            y: vec![0; capacity],
            x_masks: vec![0; capacity * mask_words(inputs)],
            xt: vec![0.0; 2 * inputs * batch_size.div_ceil(2)],
            xt_masks: vec![0; 2 * inputs * mask_words(capacity.div_ceil(2))],
            z2_parts: [vec![0.0; capacity * classes], vec![0.0; capacity * classes]],
            eval_indices: Vec::with_capacity(EVAL_BATCH),
        }
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

    /// Phase 1: gathers the examples at `indices` and masks each row's non-zero inputs; when
    /// `transpose`, also lays the batch out by pixel (xᵀ and its masks) for the backward pass.
    /// Each thread gathers one half of the rows and transposes the rows it just wrote, while
    /// they are in its own cache.
    fn gather(&mut self, data: &dyn LabelledData, indices: &[usize], transpose: bool) {
        let (n, inputs, words) = (
            indices.len(),
            self.shape.inputs,
            mask_words(self.shape.inputs),
        );
        assert!(
            n <= self.capacity,
            "batch of {n} exceeds the engine's capacity {}",
            self.capacity
        );
        let half = n / 2;
        let xt_words = self.xt_mask_stride();
        let (x0, x1) = self.x[..n * inputs].split_at_mut(half * inputs);
        let (y0, y1) = self.y[..n].split_at_mut(half);
        let (m0, m1) = self.x_masks[..n * words].split_at_mut(half * words);
        let (ind0, ind1) = indices.split_at(half);
        let (xt_half, masks_half) = (self.xt.len() / 2, self.xt_masks.len() / 2);
        let (xt0, xt1) = self.xt.split_at_mut(xt_half);
        let (k0, k1) = self.xt_masks.split_at_mut(masks_half);
        let args = [(ind0, x0, y0, m0, xt0, k0), (ind1, x1, y1, m1, xt1, k1)];
        Self::on_shards(
            self.parallel,
            args,
            |_, (ind, x, y, masks, xt, xt_masks)| {
                data.gather(ind, x, y);
                for (row, mask) in x.chunks_exact(inputs).zip(masks.chunks_exact_mut(words)) {
                    nonzero_mask(row, mask);
                }
                let rows = ind.len();
                if transpose && rows > 0 {
                    // xᵀ rows are packed `rows` apart: rows of the full capacity apart would put
                    // every write 4 KiB from the last, where caches alias.
                    transpose_columns(x, rows, inputs, 0, inputs, xt, rows);
                    for p in 0..inputs {
                        nonzero_mask(
                            &xt[p * rows..][..rows],
                            &mut xt_masks[p * xt_words..][..mask_words(rows)],
                        );
                    }
                }
            },
        );
    }

    /// Mask words per pixel row of one half of xᵀ.
    fn xt_mask_stride(&self) -> usize {
        mask_words(self.capacity.div_ceil(2))
    }

    /// Phase 2: the forward pass of both shards.
    fn forward(&mut self, n: usize) {
        let inputs = self.shape.inputs;
        let rows = SparseRows {
            values: &self.x,
            masks: &self.x_masks,
            len: inputs,
            stride: inputs,
            mask_stride: mask_words(inputs),
        };
        let [s0, s1] = &mut self.shards;
        let [z0, z1] = &mut self.z2_parts;
        let (activation, b2) = (self.activation, &self.b2);
        Self::on_shards(
            self.parallel,
            [(s0, z0), (s1, z1)],
            |s, (shard, z2_part)| {
                shard.forward(
                    &rows,
                    n,
                    activation,
                    (s == 0).then_some(b2.as_slice()),
                    z2_part,
                );
            },
        );
    }

    /// One step of mini-batch SGD on the examples at `indices`: forward, backward and update.
    /// `next` names the examples of the following step (or is empty), to be fetched into
    /// cache while this one computes.
    pub fn train_step(
        &mut self,
        data: &dyn LabelledData,
        indices: &[usize],
        next: &[usize],
        sgd: &Sgd,
    ) -> StepStats {
        let n = indices.len();
        // Ask for the next batch now: fetching random images from memory would otherwise stall
        // the next gather. (Prefetching from both threads, each its half, was slower here.)
        data.prefetch(next);
        self.gather(data, indices, true);
        self.forward(n);

        // The batch by pixel, in its two halves of rows (see `gather`).
        let (half_len, xt_words) = (self.xt.len() / 2, self.xt_mask_stride());
        let half = |s: usize, rows: usize| SparseRows {
            values: &self.xt[s * half_len..],
            masks: &self.xt_masks[s * self.xt_masks.len() / 2..],
            len: rows,
            stride: rows,
            mask_stride: xt_words,
        };
        let pixels = [half(0, n / 2), half(1, n - n / 2)];
        let z2_parts = [self.z2_parts[0].as_slice(), self.z2_parts[1].as_slice()];
        let labels = &self.y[..n];
        let [s0, s1] = &mut self.shards;
        let activation = self.activation;
        let args = [(s0, Some(self.b2.as_mut_slice())), (s1, None)];
        let [(metrics, sq0), (_, sq1)] = Self::on_shards(self.parallel, args, |_, (shard, b2)| {
            shard.backward_update(z2_parts, labels, &pixels, activation, sgd, b2)
        });
        StepStats {
            metrics,
            grad_norm: (sq0 + sq1).sqrt(),
        }
    }

    /// Loss and confusion matrix of the current parameters on all of `data`.
    pub fn evaluate(&mut self, data: &dyn LabelledData) -> Evaluation {
        let classes = self.shape.classes;
        let mut metrics = BatchMetrics::default();
        let mut confusion = Array2::zeros((classes, classes));
        let mut logits = Array2::<f32>::zeros((EVAL_BATCH, classes));
        for start in (0..data.len()).step_by(EVAL_BATCH) {
            let n = EVAL_BATCH.min(data.len() - start);
            let mut indices = std::mem::take(&mut self.eval_indices);
            indices.clear();
            indices.extend(start..start + n);
            self.gather(data, &indices, false);
            self.eval_indices = indices;
            self.forward(n);
            let mut z = logits.slice_mut(ndarray::s![..n, ..]);
            for (k, v) in z.iter_mut().enumerate() {
                *v = self.z2_parts[0][k] + self.z2_parts[1][k];
            }
            for (row, &y) in z.rows().into_iter().zip(&self.y[..n]) {
                confusion[[y, argmax(row)]] += 1;
            }
            metrics.merge(mlp_core::loss::softmax_cross_entropy(z, &self.y[..n]));
        }
        Evaluation {
            loss: metrics.mean_loss(),
            confusion,
        }
    }
}
