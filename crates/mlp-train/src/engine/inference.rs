//! Evaluation on the engine: no update, so the threads split the rows, not the hidden layer.
//! Each thread gathers and runs its own rows through both shards, reading the parameters
//! only: nothing a core writes is read by the other, and the threads meet once, at the end.

use mlp_core::kernels::mask_words;
use mlp_core::{Activation, BatchMetrics, loss};
use ndarray::{Array2, ArrayViewMut2};

use super::SHARDS;
use super::batch::{BlockOrder, gather_rows};
use super::shard::{ForwardBuffers, Shard, SparseRows};
use crate::data::LabelledData;

/// Rows per forward pass: their inputs (784 KB at 784 features) and W1 (400 KB at hidden
/// 128) stay in a core's 1–2 MB L2 cache together.
pub(super) const CHUNK: usize = 256;

/// One thread's buffers for evaluating rows.
#[derive(Debug)]
pub(super) struct EvalBuffers {
    indices: Vec<usize>,
    x: Vec<f32>,
    y: Vec<usize>,
    x_masks: Vec<u64>,
    order: BlockOrder,
    fwd: [ForwardBuffers; SHARDS],
    z2_parts: [Vec<f32>; SHARDS],
    logits: Vec<f32>,
}

impl EvalBuffers {
    pub(super) fn new(inputs: usize, widths: [usize; SHARDS], classes: usize) -> Self {
        Self {
            indices: Vec::with_capacity(CHUNK),
            x: vec![0.0; CHUNK * inputs],
            y: vec![0; CHUNK],
            x_masks: vec![0; CHUNK * mask_words(inputs)],
            order: BlockOrder::new(inputs, CHUNK),
            fwd: widths.map(|w| ForwardBuffers::new(CHUNK, w, inputs)),
            z2_parts: [(); SHARDS].map(|_| vec![0.0; CHUNK * classes]),
            logits: vec![0.0; CHUNK * classes],
        }
    }
}

/// Loss and accuracy counts, and the confusion counts added into `confusion`, of the rows
/// `rows` of `data`, in chunks of [`CHUNK`] rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate_rows(
    token: fearless_simd::Level,
    shards: &[Shard; SHARDS],
    b2: &[f32],
    activation: Activation,
    data: &dyn LabelledData,
    rows: std::ops::Range<usize>,
    buffers: &mut EvalBuffers,
    confusion: &mut Array2<usize>,
) -> BatchMetrics {
    let (inputs, classes) = (data.features(), b2.len());
    let mut metrics = BatchMetrics::default();
    for start in rows.clone().step_by(CHUNK) {
        let n = CHUNK.min(rows.end - start);
        let b = &mut *buffers;
        b.indices.clear();
        b.indices.extend(start..start + n);
        gather_rows(
            token,
            data,
            &b.indices,
            &mut b.x[..n * inputs],
            &mut b.y[..n],
            &mut b.x_masks[..n * mask_words(inputs)],
            inputs,
        );
        b.order.sort(&b.x_masks[..n * mask_words(inputs)]);
        let x = SparseRows {
            values: (&b.x).into(),
            masks: &b.x_masks,
            len: inputs,
            stride: inputs,
            mask_stride: mask_words(inputs),
        };
        for (s, shard) in shards.iter().enumerate() {
            let bias = (s == 0).then_some(b2);
            shard.forward_into(
                token,
                &mut b.fwd[s],
                &x,
                b.order.rows(),
                activation,
                bias,
                &mut b.z2_parts[s],
            );
        }
        // z2 = z2_0 + z2_1, summed as the training step does.
        let logits = &mut b.logits[..n * classes];
        for (k, z) in logits.iter_mut().enumerate() {
            *z = b.z2_parts[0][k] + b.z2_parts[1][k];
        }
        for (row, &y) in logits.chunks_exact(classes).zip(&b.y[..n]) {
            let predicted = loss::argmax(ndarray::ArrayView1::from(row));
            confusion[[y, predicted]] += 1;
        }
        let z = ArrayViewMut2::from_shape((n, classes), logits).expect("sized for CHUNK rows");
        metrics.merge(loss::softmax_cross_entropy(z, &b.y[..n]));
    }
    metrics
}
