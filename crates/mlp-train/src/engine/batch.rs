//! The batch as the training step reads it: gathered rows with their non-zero masks, the
//! same batch by pixel for the backward pass, and which examples were gathered ahead.

use mlp_core::kernels::{mask_words, nonzero_mask, transpose_with_masks};

use super::shard::SparseRows;
use crate::data::LabelledData;

/// A gathered batch: its rows with the masks of their non-zeros, and for training the same
/// batch by pixel (xᵀ and masks) in two halves of rows, as the backward pass reads it.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) x: Vec<f32>,
    pub(super) y: Vec<usize>,
    pub(super) x_masks: Vec<u64>,
    xt: Vec<f32>,
    xt_masks: Vec<u64>,
    /// Mask words per pixel row of one half of xᵀ.
    xt_mask_stride: usize,
}

impl Batch {
    /// Buffers for batches of up to `batch_size` rows of `inputs` values.
    pub(super) fn new(inputs: usize, batch_size: usize) -> Self {
        let half = batch_size.div_ceil(2);
        Self {
            x: vec![0.0; batch_size * inputs],
            y: vec![0; batch_size],
            x_masks: vec![0; batch_size * mask_words(inputs)],
            xt: vec![0.0; 2 * inputs * half],
            xt_masks: vec![0; 2 * inputs * mask_words(half)],
            xt_mask_stride: mask_words(half),
        }
    }

    /// Gathers the examples at `indices` and lays them out by pixel too: the two halves of
    /// the rows each transposed on their own (see [`Batch::pixels`]).
    pub(super) fn fill(&mut self, data: &dyn LabelledData, indices: &[usize], inputs: usize) {
        let n = indices.len();
        let words = mask_words(inputs);
        let half = n / 2;
        let (xt_half, masks_half) = (self.xt.len() / 2, self.xt_masks.len() / 2);
        for (h, rows) in [0..half, half..n].into_iter().enumerate() {
            let x = &mut self.x[rows.start * inputs..rows.end * inputs];
            gather_rows(
                data,
                &indices[rows.clone()],
                x,
                &mut self.y[rows.clone()],
                &mut self.x_masks[rows.start * words..rows.end * words],
                inputs,
            );
            let len = rows.len();
            if len > 0 {
                let xt = &mut self.xt[h * xt_half..][..xt_half];
                let xt_masks = &mut self.xt_masks[h * masks_half..][..masks_half];
                // xᵀ rows are packed `len` apart: rows of the full capacity apart would put
                // every write 4 KiB from the last, where caches alias.
                transpose_with_masks(x, len, inputs, xt, len, xt_masks, self.xt_mask_stride);
            }
        }
    }

    /// The batch by pixel, in its two halves of rows: what the backward pass multiplies by.
    /// (Why halves: dW1's sums run half by half, and summing all rows at once would round
    /// differently, changing the bits of every model trained so far, `models/` included.)
    pub(super) fn pixels(&self, n: usize) -> [SparseRows<'_>; 2] {
        let (xt_half, masks_half) = (self.xt.len() / 2, self.xt_masks.len() / 2);
        let half = |h: usize, rows: usize| SparseRows {
            values: &self.xt[h * xt_half..],
            masks: &self.xt_masks[h * masks_half..],
            len: rows,
            stride: rows,
            mask_stride: self.xt_mask_stride,
        };
        [half(0, n / 2), half(1, n - n / 2)]
    }
}

/// Copies the examples at `indices` into `x` and `y` and masks each row's non-zeros.
pub(super) fn gather_rows(
    data: &dyn LabelledData,
    indices: &[usize],
    x: &mut [f32],
    y: &mut [usize],
    masks: &mut [u64],
    inputs: usize,
) {
    data.gather(indices, x, y);
    let words = mask_words(inputs);
    for (row, mask) in x.chunks_exact(inputs).zip(masks.chunks_exact_mut(words)) {
        nonzero_mask(row, mask);
    }
}

/// The examples gathered ahead into the training batches: their data set and indices. The
/// data set is known by its address only, which is why [`super::Engine::train_step`] asks
/// that the call after one with a `next` pass the same, unchanged data object.
#[derive(Debug)]
pub(super) struct ReadyBatch {
    data: Option<usize>,
    indices: Vec<usize>,
}

impl ReadyBatch {
    /// Nothing ready, room for batches of `batch_size` indices.
    pub(super) fn new(batch_size: usize) -> Self {
        Self {
            data: None,
            indices: Vec::with_capacity(batch_size),
        }
    }

    fn address(data: &dyn LabelledData) -> usize {
        (data as *const dyn LabelledData).cast::<()>() as usize
    }

    pub(super) fn holds(&self, data: &dyn LabelledData, indices: &[usize]) -> bool {
        self.data == Some(Self::address(data)) && self.indices == indices
    }

    pub(super) fn set(&mut self, data: &dyn LabelledData, indices: &[usize]) {
        if indices.is_empty() {
            return self.clear();
        }
        self.data = Some(Self::address(data));
        self.indices.clear();
        self.indices.extend_from_slice(indices);
    }

    pub(super) fn clear(&mut self) {
        self.data = None;
        self.indices.clear();
    }
}
