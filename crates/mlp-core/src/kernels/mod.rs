//! Hot loops of the optimised training step, written once over [`fearless_simd::Simd`] and
//! compiled for every [`SimdLevel`](crate::simd::SimdLevel), with the same bits on each.
//!
//! Fashion-MNIST images are half background: 49.8 % of pixels are exactly 0. So instead of the
//! dense products x·W1 and xᵀ·dz1, the optimised step multiplies with the *non-zero entries*
//! only. Both products become the same operation, sparse rows times a dense matrix,
//! [`masked_rows_product`]:
//! ```text
//! forward,  example i:  z1[i, :]  = b1      + Σ_{p: x[i,p] ≠ 0} x[i,p] · W1[p, :]
//! backward, pixel p:    dW1[p, :] =           Σ_{i: x[i,p] ≠ 0} x[i,p] · dz1[i, :]
//! ```
//! A sparse vector is its dense values plus a bit mask of the non-zeros ([`nonzero_mask`]);
//! the kernels visit set bits only. The values are [`Entries`]: `f32`s, or bytes read through
//! a table (images as they are stored, gathered without converting). The backward product
//! reads the batch's columns in place (a [`SparseBlock`] with a `step`), with their masks
//! from [`row_and_column_masks`].
//!
//! **The bits.** Each kernel's doc says what it computes as a plain loop: every term of a sum
//! of products is one fused multiply-add (`f32::mul_add`, rounded once), taken in the order
//! the loop says. Vectors only run several such loops side by side (different output
//! columns, or different products), so the register width never changes an order. Where the
//! CPU has no FMA (the SSE2 and scalar levels) fearless_simd's `mul_add_precise` computes the
//! same correctly rounded result in software. The tests hold every level this CPU has to
//! those loops, bit for bit.
//!
//! Every kernel is `#[inline(always)]`: called from a pass that `fearless_simd::dispatch!`
//! compiled for a level, it becomes part of that pass and uses the level's instructions
//! (a kernel left out of line would be compiled for the x86-64 baseline).

mod dense;
mod entries;
mod exp;
mod gradient;
mod mask;
mod pack_bytes;
mod panels;
mod product;
mod terms;
mod update;
mod vector;

pub use dense::{combine_rows, dot_rows};
pub use entries::{ByteTable, Entries};
pub use exp::exp_in_place;
pub use gradient::{ColumnTerms, SparseColumns, pack_column_blocks, sparse_gradient_step};
pub use mask::{mask_words, nonzero_mask, row_and_column_masks, row_masks};
pub use panels::{Panels, tile_columns};
pub use product::{MAX_BLOCK_ROWS, SparseBlock, masked_rows_product, packed_rows_product};
pub use terms::PackedBlock;
pub use update::{Adam, Descent, Lanes, Momentum, Rule, Update};
pub use vector::{axpy, dot, sum_of_squares};

/// Whether `start + count·stride + extra ≤ len` without overflowing on the way (a sum that
/// overflows does not fit): the bounds checks before the kernels' loops, which must hold for
/// any sizes a caller passes, however large.
pub(crate) fn fits(len: usize, start: usize, count: usize, stride: usize, extra: usize) -> bool {
    count
        .checked_mul(stride)
        .and_then(|offset| offset.checked_add(start))
        .and_then(|end| end.checked_add(extra))
        .is_some_and(|end| end <= len)
}

#[cfg(test)]
pub(crate) mod test_data {
    use crate::simd::SimdLevel;

    /// Calls `f` with every level this CPU can run and the level's name: the tests write
    /// `on_every_level(|level, name| fearless_simd::dispatch!(level, s => check(s, name)))`.
    pub(crate) fn on_every_level(f: impl Fn(fearless_simd::Level, &str)) {
        let levels = SimdLevel::supported();
        assert!(levels.len() >= 2, "a CPU runs its own level and scalar");
        for level in levels {
            f(level.token().expect("supported"), level.name());
        }
    }

    /// The row and column masks of `rows × cols` entries, made into buffers of set bits (so
    /// that a word left unwritten shows), column masks `stride` words apart, on `simd`.
    pub(crate) fn masks_of<S: fearless_simd::Simd>(
        simd: S,
        entries: super::Entries,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> (Vec<u64>, Vec<u64>) {
        let mut row_masks = vec![u64::MAX; rows * super::mask_words(cols)];
        let mut column_masks = vec![u64::MAX; cols * stride];
        super::row_and_column_masks(
            simd,
            entries,
            rows,
            cols,
            &mut row_masks,
            &mut column_masks,
            stride,
        );
        (row_masks, column_masks)
    }

    /// Deterministic pseudo-random values in [-1, 1), every `zero_every`-th about 0.
    pub(crate) fn pseudo_random(n: usize, seed: u32, zero_every: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(747796405).wrapping_add(2891336453);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                if s.is_multiple_of(zero_every) {
                    0.0
                } else {
                    (s % 1000) as f32 / 500.0 - 1.0
                }
            })
            .collect()
    }

    /// A row-major `rows × cols` matrix laid out as `layout` says (padding zero), and back.
    pub(crate) fn in_layout(
        m: &[f32],
        rows: usize,
        cols: usize,
        layout: super::Panels,
    ) -> Vec<f32> {
        let mut out = vec![0.0; layout.len(rows, cols)];
        for j in 0..rows {
            for c in 0..cols {
                out[layout.index(j, c)] = m[j * cols + c];
            }
        }
        out
    }

    pub(crate) fn from_layout(
        m: &[f32],
        rows: usize,
        cols: usize,
        layout: super::Panels,
    ) -> Vec<f32> {
        (0..rows * cols)
            .map(|k| m[layout.index(k / cols, k % cols)])
            .collect()
    }

    /// The bits of `v`, for comparisons that must be exact.
    pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
