//! An SGD step on a weight matrix whose gradient is a sparse product, fused: the first layer's
//! dW1 = xᵀ·dz1, applied to W1 block by block as it is computed, never stored whole.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::entries::{Read, with_read};
use super::{
    Entries, MAX_BLOCK_ROWS, SparseBlock, fits, has_avx512, mask_words, masked_rows_product,
    sum_of_squares,
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
/// fused kernel below and for mlp-train's `Sgd`, so that the two round alike.
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
/// `step` applied element by element. Returns `Σ G²`.
///
/// Bit for bit the loop it replaces: for each block of [`MAX_BLOCK_ROWS`] rows of `w`,
/// `g = 0`, then `masked_rows_product` of each part's columns into `g`, in order; then
/// `sum_of_squares(g) as f64` added to the total and [`Descent::apply`] to each weight. That loop is also the
/// path taken when the fused one does not apply. The fused path, for widths that are multiples
/// of 16 on AVX-512, walks every block in one call instead of a product call per part and two
/// more passes per block; up to 64 columns wide it keeps the last part's sums in registers and
/// squares and applies them there.
///
/// `scratch` holds at least [`MAX_BLOCK_ROWS`]` × width` floats; `union`, used by the loop
/// only, is grown as needed.
pub fn sparse_gradient_step(
    parts: &[(SparseColumns, &[f32])],
    width: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
    union: &mut Vec<u64>,
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
    #[cfg(target_arch = "x86_64")]
    if has_avx512() && width > 0 && width.is_multiple_of(16) && !parts.is_empty() {
        // SAFETY: AVX-512F is present; every size was checked above.
        return unsafe { fused_avx512(parts, width, w, step, scratch) };
    }
    step_by_blocks(parts, width, w, step, scratch, union)
}

/// The bits of mask word `word` that stand for rows below `rows`.
fn valid_bits(rows: usize, word: usize) -> u64 {
    match rows.saturating_sub(word * 64) {
        64.. => u64::MAX,
        left => (1u64 << left) - 1,
    }
}

/// The loop [`sparse_gradient_step`] is defined by.
fn step_by_blocks(
    parts: &[(SparseColumns, &[f32])],
    width: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
    union: &mut Vec<u64>,
) -> f64 {
    let cols = parts.first().map_or(0, |(x, _)| x.cols);
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
            masked_rows_product(&block, g, &out_rows[..r], width);
        }
        total += sum_of_squares(g) as f64;
        for (w, &g) in w[p0 * width..][..r * width].iter_mut().zip(&*g) {
            step.apply(w, g);
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fused_avx512(
    parts: &[(SparseColumns, &[f32])],
    width: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
) -> f64 {
    let cols = parts[0].0.cols;
    let mut total = 0.0f64;
    for p0 in (0..cols).step_by(MAX_BLOCK_ROWS) {
        let r = MAX_BLOCK_ROWS.min(cols - p0);
        macro_rules! dispatch {
            ($($r:literal, $n:literal);*) => {
                match (r, width / 16) {
                    $(($r, $n) => fused_block::<$r, $n>(parts, p0, w, step, scratch),)*
                    (1, _) => fused_block_wide::<1>(parts, p0, width, w, step, scratch),
                    (2, _) => fused_block_wide::<2>(parts, p0, width, w, step, scratch),
                    (3, _) => fused_block_wide::<3>(parts, p0, width, w, step, scratch),
                    _ => fused_block_wide::<4>(parts, p0, width, w, step, scratch),
                }
            };
        }
        // SAFETY: forwarded from the caller, for rows p0..p0 + r ≤ cols.
        let squares = unsafe {
            dispatch!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 3, 1; 3, 2; 3, 3; 3, 4; 4, 1; 4, 2; 4, 3; 4, 4)
        };
        total += squares as f64;
    }
    total
}

/// `acc[r][k] += x[j, p0 + r] · d[j, c0 + 16k..]` (16 columns, under `lanes[k]`) for every
/// row j in which a column p0..p0 + R of `x` is non-zero, in order of j: one part's products
/// for one block, as `masked_rows_product` sums them.
///
/// SAFETY: `vals` reads `x.vals`, which holds `x.rows × x.cols` entries; its masks hold
/// `x.cols` columns of `mask_words(x.rows)` words, `d` `x.rows × width`; `p0 + R ≤ x.cols`
/// and the columns under `lanes` lie below `width`. Mask bits at or past `x.rows` are
/// cleared before use, so every row j read is below `x.rows` (and a part with no rows reads
/// nothing).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)] // r and k index several arrays in step
unsafe fn add_part<const R: usize, const N: usize, V: Read>(
    acc: &mut [[__m512; N]; R],
    x: &SparseColumns,
    vals: V,
    d: &[f32],
    (p0, c0, width): (usize, usize, usize),
    lanes: [__mmask16; N],
) {
    // SAFETY: as the function's contract says.
    unsafe {
        for word in 0..mask_words(x.rows) {
            let mut bits = 0u64;
            for r in 0..R {
                bits |= *x.masks.as_ptr().add((p0 + r) * x.mask_stride + word);
            }
            bits &= valid_bits(x.rows, word);
            while bits != 0 {
                let j = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let row = d.as_ptr().add(j * width + c0);
                let mut m_j = [_mm512_setzero_ps(); N];
                for k in 0..N {
                    m_j[k] = _mm512_maskz_loadu_ps(lanes[k], row.wrapping_add(16 * k));
                }
                let entry = j * x.cols;
                for r in 0..R {
                    let v = _mm512_set1_ps(vals.read(entry + p0 + r));
                    for k in 0..N {
                        acc[r][k] = _mm512_fmadd_ps(v, m_j[k], acc[r][k]);
                    }
                }
            }
        }
    }
}

/// Rows `p0..p0 + R` of `w`, `16·N` wide: R × N registers of sums, each part's added to the
/// previous parts' (kept in `scratch`) as the loop would, the last part's squared and applied
/// without leaving the registers. Returns the block's `sum_of_squares`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)] // r and k index several arrays in step
unsafe fn fused_block<const R: usize, const N: usize>(
    parts: &[(SparseColumns, &[f32])],
    p0: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
) -> f32 {
    let width = 16 * N;
    let mut g = [[_mm512_setzero_ps(); N]; R];
    // SAFETY (whole body): the caller checked that every part's vals hold rows × cols, its d
    // rows × width, its masks cols columns of mask_words(rows) words, that w holds
    // cols × width and scratch MAX_BLOCK_ROWS × width, and that p0 + R ≤ cols. Mask bits at
    // or past `rows` are cleared before use, so every row j read is < rows (and a part with
    // no rows reads nothing).
    unsafe {
        for (h, (x, d)) in parts.iter().enumerate() {
            let mut acc = [[_mm512_setzero_ps(); N]; R];
            with_read!(x.vals, |vals| {
                add_part(&mut acc, x, vals, d, (p0, 0, width), [0xFFFF; N])
            });
            // g = ((0 + part 0) + part 1) + …: the sums of the parts before in `scratch`.
            for r in 0..R {
                for k in 0..N {
                    let before = if h == 0 {
                        _mm512_setzero_ps()
                    } else {
                        _mm512_loadu_ps(scratch.as_ptr().add(r * width + 16 * k))
                    };
                    g[r][k] = _mm512_add_ps(before, acc[r][k]);
                    if h + 1 < parts.len() {
                        _mm512_storeu_ps(scratch.as_mut_ptr().add(r * width + 16 * k), g[r][k]);
                    }
                }
            }
        }
        // sum_of_squares over the block's R·width floats: 16 lanes, chunk by chunk in order.
        let mut squares = _mm512_setzero_ps();
        for r in 0..R {
            for k in 0..N {
                squares = _mm512_add_ps(squares, _mm512_mul_ps(g[r][k], g[r][k]));
            }
        }
        let (lr, l2) = (_mm512_set1_ps(step.lr), _mm512_set1_ps(step.l2));
        for r in 0..R {
            for k in 0..N {
                descend(
                    w.as_mut_ptr().add((p0 + r) * width + 16 * k),
                    g[r][k],
                    lr,
                    l2,
                );
            }
        }
        lane_sum(squares)
    }
}

/// A block of R rows of a `w` wider than 64 columns: g is built 64 columns at a time into
/// `scratch` ([`add_part`] over a slice of the columns), then squared and applied from there,
/// chunk by chunk in `sum_of_squares`'s order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // r and k index several arrays in step
unsafe fn fused_block_wide<const R: usize>(
    parts: &[(SparseColumns, &[f32])],
    p0: usize,
    width: usize,
    w: &mut [f32],
    step: Descent,
    scratch: &mut [f32],
) -> f32 {
    const N: usize = 4;
    // SAFETY (whole body): as in `fused_block`, with columns c0 + 16k < width (width is a
    // multiple of 16; loads and stores past it are masked off).
    unsafe {
        for c0 in (0..width).step_by(16 * N) {
            let chunks = ((width - c0) / 16).min(N);
            let lanes: [__mmask16; N] =
                std::array::from_fn(|k| if k < chunks { 0xFFFF } else { 0 });
            for (h, (x, d)) in parts.iter().enumerate() {
                let mut acc = [[_mm512_setzero_ps(); N]; R];
                with_read!(x.vals, |vals| {
                    add_part(&mut acc, x, vals, d, (p0, c0, width), lanes)
                });
                // g = ((0 + part 0) + part 1) + …, kept in `scratch`.
                for r in 0..R {
                    for k in 0..chunks {
                        let at = scratch.as_mut_ptr().add(r * width + c0 + 16 * k);
                        let before = if h == 0 {
                            _mm512_setzero_ps()
                        } else {
                            _mm512_loadu_ps(at)
                        };
                        _mm512_storeu_ps(at, _mm512_add_ps(before, acc[r][k]));
                    }
                }
            }
        }
        let mut squares = _mm512_setzero_ps();
        let (lr, l2) = (_mm512_set1_ps(step.lr), _mm512_set1_ps(step.l2));
        for r in 0..R {
            for k in 0..width / 16 {
                let g = _mm512_loadu_ps(scratch.as_ptr().add(r * width + 16 * k));
                squares = _mm512_add_ps(squares, _mm512_mul_ps(g, g));
                descend(w.as_mut_ptr().add((p0 + r) * width + 16 * k), g, lr, l2);
            }
        }
        lane_sum(squares)
    }
}

/// [`Descent::apply`] to the 16 floats at `at`, with the roundings of the scalar expression.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn descend(at: *mut f32, g: __m512, lr: __m512, l2: __m512) {
    // SAFETY: the caller vouches for 16 floats at `at`.
    unsafe {
        let w = _mm512_loadu_ps(at);
        let step = _mm512_mul_ps(lr, _mm512_add_ps(g, _mm512_mul_ps(l2, w)));
        _mm512_storeu_ps(at, _mm512_sub_ps(w, step));
    }
}

/// `sum_of_squares`'s last step from its 16 lanes: `lanes.iter().sum() + tail` as `dot`
/// computes it (so the bits follow std's start value for a sum), the tail being empty.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn lane_sum(squares: __m512) -> f32 {
    let mut lanes = [0.0f32; 16];
    // SAFETY: `lanes` holds 16 floats.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), squares) };
    let empty: f32 = [0.0f32; 0].iter().sum();
    lanes.iter().sum::<f32>() + empty
}

#[cfg(test)]
mod tests;
