//! An SGD step on a weight matrix whose gradient is a sparse product, fused: the first layer's
//! dW1 = xᵀ·dz1, applied to W1 four rows at a time as it is computed, never stored whole.

use fearless_simd::{Simd, SimdBase, SimdFloat, f32x16};

use super::vector::{F32s, lane_sum, load};
use super::{
    Entries, MAX_BLOCK_ROWS, PackedBlock, SparseBlock, fits, mask_words, masked_rows_product,
};

/// A row-major `rows × cols` matrix read by columns, in place: entry i of column p is
/// `vals.get(i * cols + p)`, and the column's non-zero rows are the set bits of
/// `masks[p * mask_stride..][..mask_words(rows)]` (from
/// [`row_and_column_masks`](super::row_and_column_masks)). Bits at or past `rows` in the
/// last word, and the words from `mask_words(rows)` to `mask_stride`, are ignored.
#[derive(Debug, Clone, Copy)]
pub struct SparseColumns<'a> {
    /// The matrix, row-major.
    pub vals: Entries<'a>,
    /// Its rows (the entries of a column).
    pub rows: usize,
    /// Its columns.
    pub cols: usize,
    /// Each column's mask of non-zero rows.
    pub masks: &'a [u64],
    /// Words between consecutive columns' masks.
    pub mask_stride: usize,
}

/// The SGD step with L2 on one weight, `w ← w − lr·(g + l2·w)`: written once, here, for the
/// fused kernel below and for mlp-train's `Sgd`, so that the two round alike (four roundings:
/// l2·w, g + …, lr·…, w − …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Descent {
    /// Learning rate.
    pub lr: f32,
    /// L2 strength λ.
    pub l2: f32,
}

impl Descent {
    /// Applies the step to `w` given its gradient `g`.
    #[inline(always)]
    pub fn apply(self, w: &mut f32, g: f32) {
        *w -= self.lr * (g + self.l2 * *w);
    }
}

/// One step of SGD with L2 on `w` (`cols × width`, row-major), whose gradient is
/// `G = Σ_h x_hᵀ·d_h` over the `parts` of a batch, `(x_h, d_h)` with `d_h` `x_h.rows × width`:
/// [`Descent::apply`] element by element. Returns `Σ G²`.
///
/// G is never stored whole: for each block of [`MAX_BLOCK_ROWS`] rows of `w`, `g = 0`, then
/// [`masked_rows_product`] of each part's columns into `g`, in order of the parts; then
/// `g`'s squares are added in 16 lanes (each row of the block in chunks of 16, the last
/// padded with zeros; the lanes summed by `lane_sum`, the block's total added to the `f64`
/// result) and the step applied to the block's weights.
///
/// `scratch` holds at least [`MAX_BLOCK_ROWS`]` × width` floats; `union` and `packed` are
/// reused buffers (grown as needed).
#[inline(always)]
pub fn sparse_gradient_step<S: Simd>(
    simd: S,
    parts: &[(SparseColumns, &[f32])],
    width: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
    (union, packed): (&mut Vec<u64>, &mut PackedBlock),
) -> f64 {
    let cols = parts.first().map_or(0, |(x, _)| x.cols);
    assert!(
        fits(w.len(), 0, cols, width, 0),
        "w is shorter than {cols} × {width}"
    );
    assert!(
        fits(scratch.len(), 0, MAX_BLOCK_ROWS, width, 0),
        "scratch is too short"
    );
    for (x, d) in parts {
        let words = mask_words(x.rows);
        assert_eq!(x.cols, cols, "every part has the same columns");
        assert!(
            fits(x.vals.len(), 0, x.rows, x.cols, 0),
            "vals is shorter than {} × {}",
            x.rows,
            x.cols
        );
        assert!(
            fits(d.len(), 0, x.rows, width, 0),
            "d is shorter than {} × {width}",
            x.rows
        );
        assert!(
            x.mask_stride >= words
                && (cols == 0 || fits(x.masks.len(), 0, cols - 1, x.mask_stride, words)),
            "masks is too short"
        );
    }
    let out_rows: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|k| k * width);
    let mut total = 0.0f64;
    for p0 in (0..cols).step_by(MAX_BLOCK_ROWS) {
        let r = MAX_BLOCK_ROWS.min(cols - p0);
        let g = &mut scratch[..r * width];
        g.fill(0.0);
        for (x, d) in parts {
            let words = mask_words(x.rows);
            union.clear();
            union.resize(words, 0);
            for p in p0..p0 + r {
                for (u, m) in union.iter_mut().zip(&x.masks[p * x.mask_stride..][..words]) {
                    *u |= m;
                }
            }
            if let Some(last) = union.last_mut() {
                *last &= valid_bits(x.rows, words - 1);
            }
            let starts: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|k| p0 + k);
            let block = SparseBlock {
                vals: x.vals,
                rows: &starts[..r],
                step: x.cols,
                union,
                m: d,
                ld: width,
            };
            masked_rows_product(simd, &block, g, &out_rows[..r], width, packed);
        }
        total += f64::from(block_squares(simd, g, width));
        descend(simd, &mut w[p0 * width..][..r * width], g, step);
    }
    total
}

/// The bits of mask word `word` that stand for rows below `rows`.
fn valid_bits(rows: usize, word: usize) -> u64 {
    match rows.saturating_sub(word * 64) {
        64.. => u64::MAX,
        left => (1u64 << left) - 1,
    }
}

/// `Σ g²` over a block's rows of `width`, in 16 lanes: each row in chunks of 16, the last
/// padded with zeros, all into the same lanes.
#[inline(always)]
fn block_squares<S: Simd>(simd: S, g: &[f32], width: usize) -> f32 {
    let mut lanes = f32x16::splat(simd, 0.0);
    for row in g.chunks_exact(width) {
        for chunk in row.chunks(16) {
            let v = if chunk.len() == 16 {
                f32x16::from_slice(simd, chunk)
            } else {
                let mut padded = [0.0f32; 16];
                padded[..chunk.len()].copy_from_slice(chunk);
                f32x16::from_slice(simd, &padded)
            };
            lanes = v.mul_add_precise(v, lanes);
        }
    }
    lane_sum(lanes.as_array())
}

/// [`Descent::apply`] to every weight of `w` with its gradient in `g`, a vector at a time
/// (the same roundings as the scalar expression).
#[inline(always)]
fn descend<S: Simd>(simd: S, w: &mut [f32], g: &[f32], step: Descent) {
    let lanes = F32s::<S>::LEN;
    let (lr, l2) = (
        F32s::<S>::splat(simd, step.lr),
        F32s::<S>::splat(simd, step.l2),
    );
    let whole = w.len() / lanes * lanes;
    for at in (0..whole).step_by(lanes) {
        let (wv, gv) = (load(simd, w, at), load(simd, g, at));
        (wv - lr * (gv + l2 * wv)).store_slice(&mut w[at..at + lanes]);
    }
    for (w, &g) in w[whole..].iter_mut().zip(&g[whole..]) {
        step.apply(w, g);
    }
}

#[cfg(test)]
mod tests;
