//! One shard of the hidden layer: its columns of W1 and b1, its rows of W2 (stored transposed,
//! classes × width, so that every product below runs along contiguous memory), and the
//! per-batch buffers for those columns. Shard 0 also holds b2. The optimiser's moments, if it
//! keeps any, are laid out as the parameters, in the same shard.

use fearless_simd::{Level, Simd};
use mlp_core::Activation;
use mlp_core::kernels::{
    ColumnTerms, Entries, MAX_BLOCK_ROWS, PackedBlock, Panels, SparseBlock, SparseColumns, Update,
    combine_rows, dot_rows, mask_words, masked_rows_product, packed_rows_product,
    sparse_gradient_step, sum_of_squares,
};
use mlp_core::noise::Dropout;

/// Rows of `len` values with the bit masks of their non-zeros: row r is entries
/// `r * stride..` (`len` of them) of `values`, and its mask
/// `masks[r * mask_stride..][..mask_words(len)]`.
/// The forward pass reads the batch this way (the backward pass reads its columns, as
/// `mlp_core::kernels::SparseColumns`).
pub(super) struct SparseRows<'a> {
    pub values: Entries<'a>,
    pub masks: &'a [u64],
    pub len: usize,
    pub stride: usize,
    pub mask_stride: usize,
}

/// Where a block's rows start in [`SparseRows::values`], and the OR of their masks.
#[derive(Debug, Clone, Default)]
pub(super) struct BlockRows {
    starts: [usize; MAX_BLOCK_ROWS],
    len: usize,
    pub union: Vec<u64>,
}

/// What a forward pass multiplies W1 by: the batch's rows, read (or packed) block by block
/// as the product goes, or their blocks packed beforehand for all the shards a thread runs
/// (`super::shared::SharedBlocks`), in the order the pass takes the rows.
pub(super) enum RowTerms<'a> {
    Read(&'a SparseRows<'a>),
    Packed(&'a [PackedBlock]),
}

impl SparseRows<'_> {
    /// The rows `rows` (at most [`MAX_BLOCK_ROWS`]) as one block over the matrix `m`, laid
    /// out as `layout` says; `block` receives their starts and the union of their masks.
    pub(super) fn block<'b>(
        &'b self,
        rows: impl IntoIterator<Item = usize>,
        block: &'b mut BlockRows,
        m: &'b [f32],
        layout: Panels,
    ) -> SparseBlock<'b> {
        let words = mask_words(self.len);
        block.union.clear();
        block.union.resize(words, 0);
        block.len = 0;
        for r in rows {
            block.starts[block.len] = r * self.stride;
            block.len += 1;
            for (u, m) in block
                .union
                .iter_mut()
                .zip(&self.masks[r * self.mask_stride..][..words])
            {
                *u |= m;
            }
        }
        SparseBlock {
            vals: self.values,
            rows: &block.starts[..block.len],
            step: 1,
            union: &block.union,
            m,
            layout,
        }
    }
}

/// A shard's share of the parameters, or of one of the optimiser's moments (same layout).
#[derive(Debug, Clone, Default)]
pub(super) struct Tensors {
    /// W1[:, columns], (inputs, width), in panels a tile wide ([`Shard::w1_layout`]).
    pub w1: Vec<f32>,
    /// b1[columns].
    pub b1: Vec<f32>,
    /// W2[columns, :] transposed, (classes, width).
    pub w2t: Vec<f32>,
    /// b2 in shard 0 (which adds it to its logits and updates it), empty in the others.
    pub b2: Vec<f32>,
}

/// The hidden layer's dropout in a training step: the rate, the step's key, and the layer's
/// whole width (unit (i, j) of the layer is index `i·hidden + j` of the mask).
#[derive(Debug, Clone, Copy)]
pub(super) struct HiddenDropout {
    pub dropout: Dropout,
    pub key: u64,
    pub hidden: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Shard {
    /// Hidden columns this shard owns (width = `b1.len()`), from `col0`.
    pub width: usize,
    pub col0: usize,
    /// Where W1's entries are in `params.w1` (and the moments').
    pub w1_layout: Panels,
    classes: usize,
    pub params: Tensors,
    /// The optimiser's moments (as many as it keeps; the others empty).
    pub moments: [Tensors; 2],
    /// z1 and a1 of the last training forward pass, kept for the backward pass.
    fwd: ForwardBuffers,
    /// da1, then dz1 in place, (capacity, width).
    dz1: Vec<f32>,
    dw2t: Vec<f32>,
    db1: Vec<f32>,
    db2: Vec<f32>,
}

/// z1 and a1 = f(z1) of a forward pass over one shard's columns, (rows, width), and under
/// dropout its factors m and h = a1 ⊙ m.
#[derive(Debug, Clone, Default)]
pub(super) struct ForwardBuffers {
    z1: Vec<f32>,
    a1: Vec<f32>,
    keep: Vec<f32>,
    h: Vec<f32>,
}

/// The scratch buffers of the products, one set per thread (shards run one after another
/// on a thread, and reuse them while they are in its cache).
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    /// The block being multiplied (its union grown once to the largest mask).
    block: BlockRows,
    /// `dot_rows`'s (W2's columns laid out anew at every call).
    dot: Vec<[f32; 16]>,
    /// The sparse products' packed entries.
    packed: PackedBlock,
}

impl Scratch {
    /// For blocks of masks over up to `bits` positions (rows or inputs), and shards up to
    /// `width` columns wide.
    pub(super) fn new(bits: usize, width: usize) -> Self {
        Self {
            block: BlockRows {
                union: Vec::with_capacity(mask_words(bits)),
                ..BlockRows::default()
            },
            dot: Vec::with_capacity(width),
            packed: PackedBlock::with_capacity(bits),
        }
    }
}

impl ForwardBuffers {
    /// For up to `rows` rows of a shard `width` columns wide.
    pub(super) fn new(rows: usize, width: usize) -> Self {
        Self {
            z1: vec![0.0; rows * width],
            a1: vec![0.0; rows * width],
            keep: Vec::new(),
            h: Vec::new(),
        }
    }

    /// z1 of the last pass, (rows, width).
    #[cfg(test)]
    pub(super) fn z1(&self) -> &[f32] {
        &self.z1
    }
}

impl Shard {
    /// A shard of `params.b1`'s width from column `col0`, its W1 of `inputs` rows laid out
    /// as `w1_layout` says, over `capacity`-row batches; `params.b2` non-empty for shard 0
    /// only. No moments (see [`Shard::moments`]).
    pub fn new(
        params: Tensors,
        (inputs, w1_layout): (usize, Panels),
        col0: usize,
        capacity: usize,
        classes: usize,
    ) -> Self {
        let width = params.b1.len();
        let len = w1_layout.len(inputs, width);
        assert_eq!(params.w1.len(), len, "W1 as laid out");
        Self {
            width,
            col0,
            w1_layout,
            classes,
            params,
            moments: Default::default(),
            fwd: ForwardBuffers::new(capacity, width),
            dz1: vec![0.0; capacity * width],
            dw2t: vec![0.0; classes * width],
            db1: vec![0.0; width],
            db2: vec![0.0; classes],
        }
    }

    /// Sizes the buffers of hidden dropout (once, before training with it).
    pub fn prepare_dropout(&mut self) {
        let len = self.fwd.a1.len();
        self.fwd.keep.resize(len, 0.0);
        self.fwd.h.resize(len, 0.0);
    }

    /// The training forward pass: [`Shard::forward_into`] with the shard's own buffers, which
    /// the backward pass then reads.
    // rows: n = order.len() examples   z2_part: (n, classes)
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        level: Level,
        scratch: &mut Scratch,
        rows: &RowTerms,
        order: &[usize],
        activation: Activation,
        dropout: Option<HiddenDropout>,
        z2_part: &mut [f32],
    ) {
        let mut fwd = std::mem::take(&mut self.fwd);
        assert!(
            dropout.is_none() || fwd.h.len() == fwd.a1.len(),
            "prepare_dropout sized the buffers"
        );
        self.forward_into(
            level, &mut fwd, scratch, rows, order, activation, dropout, z2_part,
        );
        self.fwd = fwd;
    }

    /// z1 = x·W1 + b1 and a1 = f(z1) for this shard's columns, into `fwd`, then this shard's
    /// share of the logits, `z2_part = a1·W2[columns, :]` (plus b2 in shard 0); under
    /// `dropout` (training), h = a1 ⊙ m replaces a1 there, m drawn for the shard's columns
    /// (buffers `fwd.keep` and `fwd.h` sized). Reads the parameters only, so threads can
    /// share a shard for inference.
    ///
    /// `order` is a permutation of the rows 0..n: the order in which the sparse product takes
    /// them, four at a time (see `BlockOrder`). Every row's results land at its own index,
    /// and are the same bits in any order.
    // rows: n = order.len() examples   z2_part: (n, classes)
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        level: Level,
        fwd: &mut ForwardBuffers,
        scratch: &mut Scratch,
        rows: &RowTerms,
        order: &[usize],
        activation: Activation,
        dropout: Option<HiddenDropout>,
        z2_part: &mut [f32],
    ) {
        fearless_simd::dispatch!(level, simd => {
            self.forward_body(simd, fwd, scratch, rows, order, activation, dropout, z2_part)
        })
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_body<S: Simd>(
        &self,
        simd: S,
        fwd: &mut ForwardBuffers,
        scratch: &mut Scratch,
        rows: &RowTerms,
        order: &[usize],
        activation: Activation,
        dropout: Option<HiddenDropout>,
        z2_part: &mut [f32],
    ) {
        let (n, w, classes) = (order.len(), self.width, self.classes);
        let ForwardBuffers { z1, a1, keep, h } = fwd;
        let Scratch { block, dot, packed } = scratch;
        for i in 0..n {
            z1[i * w..][..w].copy_from_slice(&self.params.b1);
        }
        // Blocks of rows in `order`, each row's z1 in its own place.
        let w1 = (&self.params.w1[..], self.w1_layout);
        for (k, group) in order.chunks(MAX_BLOCK_ROWS).enumerate() {
            let mut out_rows = [0; MAX_BLOCK_ROWS];
            for (o, &i) in out_rows.iter_mut().zip(group) {
                *o = i * w;
            }
            let out_rows = &out_rows[..group.len()];
            match rows {
                RowTerms::Packed(blocks) => {
                    packed_rows_product(simd, &blocks[k], w1, z1, out_rows, w);
                }
                RowTerms::Read(rows) => {
                    let x = rows.block(group.iter().copied(), block, w1.0, w1.1);
                    masked_rows_product(simd, &x, z1, out_rows, w, packed);
                }
            }
        }
        activation.forward_slice(&z1[..n * w], &mut a1[..n * w]);
        // h = a1 ⊙ m, m for the shard's columns of the layer's mask.
        let hidden = match dropout {
            Some(HiddenDropout {
                dropout,
                key,
                hidden,
            }) => {
                for i in 0..n {
                    let units = (i * hidden + self.col0) as u64;
                    for k in 0..w {
                        let m = dropout.factor(key, units + k as u64);
                        keep[i * w + k] = m;
                        h[i * w + k] = a1[i * w + k] * m;
                    }
                }
                &h[..]
            }
            None => &a1[..],
        };
        // z2_part = h·W2[columns, :] + b2: each logit `dot(h_i, W2ᵀ_c)`, then its bias added
        // (the same bits as `bias + dot`: addition commutes).
        let z2_part = &mut z2_part[..n * classes];
        dot_rows(simd, hidden, n, &self.params.w2t, classes, w, dot, z2_part);
        if !self.params.b2.is_empty() {
            for row in z2_part.chunks_exact_mut(classes) {
                for (z, &b) in row.iter_mut().zip(&self.params.b2) {
                    *z += b;
                }
            }
        }
    }

    /// Backward pass and optimiser update for this shard's parameters (and b2, in shard 0),
    /// given the batch's dz2 = ∂loss/∂z2, (n, classes), with the dropout (if any) of the
    /// forward pass just before. Returns the squared norm of this shard's gradients (b2's
    /// counting towards shard 0's).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_update(
        &mut self,
        level: Level,
        dz2: &[f32],
        pixels: (&SparseColumns, Option<&[PackedBlock]>),
        activation: Activation,
        dropped: bool,
        update: Update,
        scratch: &mut Scratch,
    ) -> f64 {
        fearless_simd::dispatch!(level, simd => {
            self.backward_update_body(simd, dz2, pixels, activation, dropped, update, scratch)
        })
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn backward_update_body<S: Simd>(
        &mut self,
        simd: S,
        dz2: &[f32],
        (pixels, packed_pixels): (&SparseColumns, Option<&[PackedBlock]>),
        activation: Activation,
        dropped: bool,
        update: Update,
        scratch: &mut Scratch,
    ) -> f64 {
        let (n, w, classes) = (pixels.rows, self.width, self.classes);
        let dz2 = &dz2[..n * classes];
        let mut grad_sq = 0.0f64;
        let bias_update = update.without_decay();
        let w1_layout = self.w1_layout;
        let Self {
            params,
            moments: [first, second],
            fwd,
            ..
        } = self;

        if w > 0 {
            // dh = dz2·W2ᵀ and dW2 = hᵀ·dz2 (with W2 still as used in the forward pass; h is
            // a1 without dropout).
            // dh[i, :] = Σ_c dz2[i, c]·W2ᵀ[c, :]   dW2ᵀ[c, :] = Σ_i dz2[i, c]·h[i, :]
            let hidden = if dropped { &fwd.h } else { &fwd.a1 };
            let dz1 = &mut self.dz1;
            combine_rows(simd, dz2, (classes, 1), &params.w2t, classes, w, dz1, n);
            combine_rows(
                simd,
                dz2,
                (1, classes),
                hidden,
                n,
                w,
                &mut self.dw2t,
                classes,
            );
            // da1 = dh ⊙ m, then dz1 = da1 ⊙ f'(z1), then db1 = Σ over rows of dz1.
            if dropped {
                for (d, &m) in dz1[..n * w].iter_mut().zip(&fwd.keep) {
                    *d *= m;
                }
            }
            activation.backward_slice(&fwd.z1[..n * w], &fwd.a1[..n * w], &mut dz1[..n * w]);
            self.db1.fill(0.0);
            for i in 0..n {
                add_row(&dz1[i * w..][..w], &mut self.db1);
            }
            grad_sq += f64::from(sum_of_squares(simd, &self.dw2t))
                + f64::from(sum_of_squares(simd, &self.db1));
            update.apply_to(&mut params.w2t, &self.dw2t, &mut first.w2t, &mut second.w2t);
            bias_update.apply_to(&mut params.b1, &self.db1, &mut first.b1, &mut second.b1);

            // dW1 = xᵀ·dz1, applied to W1 a few pixel rows at a time as soon as they are
            // known: the full dW1 is never stored.
            grad_sq += sparse_gradient_step(
                simd,
                pixels,
                &dz1[..n * w],
                w,
                (&mut params.w1, w1_layout),
                update,
                (&mut first.w1, &mut second.w1),
                match packed_pixels {
                    Some(blocks) => ColumnTerms::Packed(blocks),
                    None => ColumnTerms::Read(&mut scratch.block.union, &mut scratch.packed),
                },
            );
        }
        if !params.b2.is_empty() {
            self.db2.fill(0.0);
            for i in 0..n {
                add_row(&dz2[i * classes..][..classes], &mut self.db2);
            }
            grad_sq += f64::from(sum_of_squares(simd, &self.db2));
            bias_update.apply_to(&mut params.b2, &self.db2, &mut first.b2, &mut second.b2);
        }
        grad_sq
    }
}

/// `sum += row`, element by element: the bias gradients, summed over the batch in order.
#[inline(always)]
fn add_row(row: &[f32], sum: &mut [f32]) {
    for (s, &x) in sum.iter_mut().zip(row) {
        *s += x;
    }
}
