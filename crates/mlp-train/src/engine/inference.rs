//! Evaluation on the engine: no update, so the threads split the rows, not the hidden layer.
//! Each thread claims chunks of rows one at a time, gathers them and runs them through every
//! shard, reading the parameters only: nothing a core writes is read by another (but the
//! counter that hands out the chunks), and the threads meet once, at the end. Each chunk's
//! loss is kept by its index and the chunks are summed in order, so which thread took which
//! chunk changes no bit. Where the level's tiles are narrower than a shard (AVX2 and
//! below), a chunk's blocks are packed once for all the shards (`shared.rs`), as a training
//! thread's are.

use std::sync::atomic::{AtomicUsize, Ordering};

use mlp_core::kernels::mask_words;
use mlp_core::{Activation, BatchMetrics, loss};
use ndarray::{Array2, ArrayViewMut2};

use super::Engine;
use super::batch::{BlockOrder, gather_rows};
use super::shard::{ForwardBuffers, Scratch, Shard, SparseRows};
use super::shared::SharedBlocks;
use crate::data::LabelledData;
use crate::evaluate::Evaluation;

/// Rows per forward pass: their inputs (200 KB of byte images at 784 features, 800 KB as
/// `f32`s) and a shard's W1 (200 KB) stay in a core's L2 cache together (512 KB on Zen 3,
/// for byte images). 128 rows measured no faster on Zen 3 before the chunk's packed blocks
/// were shared by the shards, and within the noise after (~630 KB of packed blocks at 256
/// rows, streamed in order; docs/PERFORMANCE.md).
pub(super) const CHUNK: usize = 256;

/// One thread's buffers for evaluating rows.
#[derive(Debug)]
pub(super) struct EvalBuffers {
    indices: Vec<usize>,
    /// The chunk's rows: their bytes when the data has byte images, else `f32`s.
    x: Vec<f32>,
    x_bytes: Vec<u8>,
    y: Vec<usize>,
    x_masks: Vec<u64>,
    order: BlockOrder,
    /// One shard at a time: its forward pass and its part of the logits.
    fwd: ForwardBuffers,
    scratch: Scratch,
    /// The chunk's blocks, packed once for all the shards where that saves packing.
    shared: SharedBlocks,
    z2_part: Vec<f32>,
    logits: Vec<f32>,
    /// The loss and accuracy counts of each chunk this thread evaluated, by chunk index.
    results: Vec<(usize, BatchMetrics)>,
}

impl EvalBuffers {
    /// For rows of `inputs` values through shards up to `widest` columns wide.
    pub(super) fn new(inputs: usize, widest: usize, classes: usize) -> Self {
        Self {
            indices: Vec::with_capacity(CHUNK),
            x: Vec::new(),
            x_bytes: Vec::new(),
            y: vec![0; CHUNK],
            x_masks: vec![0; CHUNK * mask_words(inputs)],
            order: BlockOrder::new(inputs, CHUNK),
            fwd: ForwardBuffers::new(CHUNK, widest),
            scratch: Scratch::new(CHUNK.max(inputs), widest),
            shared: SharedBlocks::default(),
            z2_part: vec![0.0; CHUNK * classes],
            logits: vec![0.0; CHUNK * classes],
            results: Vec::new(),
        }
    }
}

impl Engine {
    /// Loss and confusion matrix of the current parameters on all of `data`: the rows in
    /// chunks, which the threads take one at a time until none is left (see `inference.rs`).
    pub fn evaluate(&mut self, data: &dyn LabelledData) -> Evaluation {
        let classes = self.shape.classes;
        let len = data.len();
        let chunks = len.div_ceil(CHUNK);
        let threads = self.team.threads().min(chunks).max(1);
        let widest = self.shards.iter().map(|s| s.width).max().unwrap_or(0);
        while self.eval.len() < threads {
            let buffers = EvalBuffers::new(self.shape.inputs, widest, classes);
            self.eval.push(buffers);
        }
        let mut confusions = vec![Array2::zeros((classes, classes)); threads];
        let mut tasks: Vec<_> = self.eval.iter_mut().zip(&mut confusions).collect();
        // Claimed, not split in fixed runs: a slower core (a hybrid CPU's efficiency cores, a
        // host core shared with another VM) would leave a fixed half waiting for it; the
        // price is one atomic add per 256-row chunk.
        let next = AtomicUsize::new(0);
        let (shards, activation, token) = (self.shards.as_slice(), self.activation, self.token);
        self.team.for_each_mut(&mut tasks, &|(buffers, confusion)| {
            let claims = std::iter::from_fn(|| {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                (chunk < chunks).then_some(chunk)
            });
            evaluate_chunks(token, shards, activation, data, claims, buffers, confusion);
        });
        let mut results = vec![BatchMetrics::default(); chunks];
        for buffers in &self.eval[..threads] {
            for &(chunk, metrics) in &buffers.results {
                results[chunk] = metrics;
            }
        }
        debug_assert_eq!(
            self.eval[..threads]
                .iter()
                .map(|b| b.results.len())
                .sum::<usize>(),
            chunks,
            "every chunk evaluated once"
        );
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

/// The loss and accuracy counts of each chunk of [`CHUNK`] rows of `data` in `chunks` (by
/// index), each with its index, into `buffers.results` (cleared first), and their confusion
/// counts added into `confusion`.
pub(super) fn evaluate_chunks(
    token: fearless_simd::Level,
    shards: &[Shard],
    activation: Activation,
    data: &dyn LabelledData,
    chunks: impl Iterator<Item = usize>,
    buffers: &mut EvalBuffers,
    confusion: &mut Array2<usize>,
) {
    let (inputs, classes) = (data.features(), shards[0].params.b2.len());
    buffers.results.clear();
    // Any thread may claim every chunk: room for all, so that no pass grows the list.
    buffers.results.reserve(data.len().div_ceil(CHUNK));
    for chunk in chunks {
        let start = chunk * CHUNK;
        let n = CHUNK.min(data.len() - start);
        let b = &mut *buffers;
        b.indices.clear();
        b.indices.extend(start..start + n);
        // Sized on first use, for the kind of rows the data has.
        if data.byte_images().is_some() {
            b.x_bytes.resize(CHUNK * inputs, 0);
        } else {
            b.x.resize(CHUNK * inputs, 0.0);
        }
        let values = gather_rows(
            token,
            data,
            &b.indices,
            &mut b.x,
            &mut b.x_bytes,
            &mut b.y[..n],
            &mut b.x_masks[..n * mask_words(inputs)],
            inputs,
        );
        b.order.sort(&b.x_masks[..n * mask_words(inputs)]);
        let x = SparseRows {
            values,
            masks: &b.x_masks,
            len: inputs,
            stride: inputs,
            mask_stride: mask_words(inputs),
        };
        // z2 = ((z2_0 + b2) + z2_1) + …, summed in shard order as the training step does.
        let logits = &mut b.logits[..n * classes];
        let rows = b.order.rows();
        let terms = b.shared.row_terms(token, shards.len(), &x, rows);
        for (s, shard) in shards.iter().enumerate() {
            let part = &mut b.z2_part;
            shard.forward_into(
                token,
                &mut b.fwd,
                &mut b.scratch,
                &terms,
                rows,
                activation,
                None,
                part,
            );
            if s == 0 {
                logits.copy_from_slice(&part[..n * classes]);
            } else {
                for (z, &p) in logits.iter_mut().zip(part.iter()) {
                    *z += p;
                }
            }
        }
        for (row, &y) in logits.chunks_exact(classes).zip(&b.y[..n]) {
            let predicted = loss::argmax(ndarray::ArrayView1::from(row));
            confusion[[y, predicted]] += 1;
        }
        let z = ArrayViewMut2::from_shape((n, classes), logits).expect("sized for CHUNK rows");
        let metrics = loss::softmax_cross_entropy_on(token, z, &b.y[..n]);
        b.results.push((chunk, metrics));
    }
}
