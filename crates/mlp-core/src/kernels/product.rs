//! Sparse rows times a dense matrix, a block of rows at a time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::has_avx512;

/// Largest block of rows taken at once: 4 rows × 4 registers of accumulators, plus the 4
/// registers of a matrix row, fit the 32 AVX-512 registers.
pub const MAX_BLOCK_ROWS: usize = 4;

/// Columns handled per pass over a block's non-zeros (4 registers of 16 floats).
const COLUMNS: usize = 64;

/// A block of sparse rows and the dense matrix they multiply: row r of the block is
/// `vals[r * vals_stride..]`, and its non-zero positions are among the set bits of `union`
/// (the OR of the rows' masks from [`nonzero_mask`](super::nonzero_mask)). Row j of the
/// matrix is `m[j * ld..]`.
///
/// Only the matrix rows that `union` names are read, and each is used by every row of the
/// block. That sharing is the point: a one-row product fetches a matrix row from L2 cache for
/// every two flops per float and is bound by cache bandwidth (36 GFLOP/s measured); four rows
/// sharing each fetch keep the FMA units busy, at the price of multiplying the few zeros
/// inside the union.
#[derive(Debug, Clone, Copy)]
pub struct SparseBlock<'a> {
    /// The rows' dense values.
    pub vals: &'a [f32],
    /// Distance between rows of `vals`.
    pub vals_stride: usize,
    /// OR of the rows' non-zero masks.
    pub union: &'a [u64],
    /// The dense matrix, row-major.
    pub m: &'a [f32],
    /// Distance between rows of `m`.
    pub ld: usize,
}

impl SparseBlock<'_> {
    /// Panics unless every index the kernels will use for `rows` rows and `width` columns is
    /// inside the slices.
    fn check(&self, rows: usize, width: usize) {
        assert!(
            rows <= MAX_BLOCK_ROWS,
            "at most {MAX_BLOCK_ROWS} rows at a time"
        );
        assert!(
            width <= self.ld,
            "{width} columns requested from rows of {}",
            self.ld
        );
        let last = self.union.iter().enumerate().rev().find(|(_, w)| **w != 0);
        if let (Some((i, w)), true) = (last, rows > 0) {
            let j = i * 64 + 63 - w.leading_zeros() as usize;
            assert!(
                j < self.vals_stride && self.vals.len() > (rows - 1) * self.vals_stride + j,
                "vals is too short for bit {j}"
            );
            assert!(
                j * self.ld + width <= self.m.len(),
                "row {j} is outside the matrix"
            );
        }
    }
}

/// `out[r][k] += Σ_{j ∈ union} vals[r][j] · m[j][k]` for `r < rows`, `k < width`, where row r
/// of `out` starts at `r * out_stride`.
pub fn masked_rows_product(
    block: &SparseBlock,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
    width: usize,
) {
    block.check(rows, width);
    // Nothing to add; and `check` vouched for no row of `m`, so form no pointer into it.
    if rows == 0 || width == 0 || block.union.iter().all(|&w| w == 0) {
        return;
    }
    assert!(
        width <= out_stride && out.len() >= (rows - 1) * out_stride + width,
        "out is too short"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for c0 in (0..width).step_by(COLUMNS) {
            let cols = (width - c0).min(COLUMNS);
            // SAFETY: AVX-512F is present; every index was checked above.
            unsafe { block_avx512(block, rows, c0, cols, out.as_mut_ptr().add(c0), out_stride) };
        }
        return;
    }
    for (w, &word) in block.union.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let j = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let m_row = &block.m[j * block.ld..][..width];
            for r in 0..rows {
                let v = block.vals[r * block.vals_stride + j];
                for (o, &x) in out[r * out_stride..][..width].iter_mut().zip(m_row) {
                    *o += v * x;
                }
            }
        }
    }
}

/// Dispatches to the instantiation for `rows` rows and ⌈cols / 16⌉ registers (cols ≤ 64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(
    block: &SparseBlock,
    rows: usize,
    c0: usize,
    cols: usize,
    out: *mut f32,
    os: usize,
) {
    macro_rules! dispatch {
        ($($r:literal, $n:literal);*) => {
            match (rows, cols.div_ceil(16)) {
                $(($r, $n) => block_n::<$r, $n>(block, c0, cols, out, os),)*
                _ => unreachable!("rows ≤ 4 and cols ≤ 64 are checked by the caller"),
            }
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        dispatch!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 3, 1; 3, 2; 3, 3; 3, 4; 4, 1; 4, 2; 4, 3; 4, 4)
    }
}

/// R rows × N registers of accumulators; each matrix row's N registers are loaded once per
/// set bit and used by all R rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)] // r and k index several arrays in step
unsafe fn block_n<const R: usize, const N: usize>(
    b: &SparseBlock,
    c0: usize,
    cols: usize,
    out: *mut f32,
    os: usize,
) {
    let tail = cols - (N - 1) * 16;
    let tail_mask: __mmask16 = if tail == 16 {
        0xFFFF
    } else {
        (1u16 << tail) - 1
    };
    let lanes = |k: usize| if k + 1 < N { 0xFFFF } else { tail_mask };
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    // SAFETY: the caller checked every row of `m`, `vals` and `out` used here; loads and
    // stores are masked to `cols` columns.
    unsafe {
        let (vals, m) = (b.vals.as_ptr(), b.m.as_ptr().add(c0));
        for (w, &word) in b.union.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let j = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let row = m.add(j * b.ld);
                let mut m_j = [_mm512_setzero_ps(); N];
                for k in 0..N {
                    m_j[k] = _mm512_maskz_loadu_ps(lanes(k), row.add(16 * k));
                }
                for r in 0..R {
                    let v = _mm512_set1_ps(*vals.add(r * b.vals_stride + j));
                    for k in 0..N {
                        acc[r][k] = _mm512_fmadd_ps(v, m_j[k], acc[r][k]);
                    }
                }
            }
        }
        for r in 0..R {
            for k in 0..N {
                let dst = out.add(r * os + 16 * k);
                _mm512_mask_storeu_ps(
                    dst,
                    lanes(k),
                    _mm512_add_ps(_mm512_maskz_loadu_ps(lanes(k), dst), acc[r][k]),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::nonzero_mask;
    use crate::kernels::test_data::pseudo_random;

    /// A block of `rows` sparse rows over `len` entries, with its union mask.
    fn block_data(
        rows: usize,
        len: usize,
        stride: usize,
        zero_every: u32,
        seed: u32,
    ) -> (Vec<f32>, Vec<u64>) {
        let vals = pseudo_random(rows * stride, seed, zero_every);
        let mut union = vec![0; crate::kernels::mask_words(len)];
        for r in 0..rows {
            let mut mask = vec![0; union.len()];
            nonzero_mask(&vals[r * stride..][..len], &mut mask);
            union.iter_mut().zip(&mask).for_each(|(u, m)| *u |= m);
        }
        (vals, union)
    }

    fn naive(block: &SparseBlock, len: usize, rows: usize, width: usize) -> Vec<f64> {
        let mut g = vec![0.0; rows * width];
        for r in 0..rows {
            for j in 0..len {
                for k in 0..width {
                    g[r * width + k] += block.vals[r * block.vals_stride + j] as f64
                        * block.m[j * block.ld + k] as f64;
                }
            }
        }
        g
    }

    #[test]
    fn masked_rows_product_matches_the_naive_sum_for_all_shapes() {
        crate::kernels::test_data::on_both_paths(check_product);
    }

    fn check_product() {
        let (len, ld) = (150, 300);
        let m = pseudo_random(len * ld, 9, 1_000_000);
        for rows in 1..=MAX_BLOCK_ROWS {
            for width in [1, 7, 16, 33, 64, 100, 129, 300] {
                for zero_every in [1, 2, 5, 1000] {
                    let (vals, union) = block_data(rows, len, len + 3, zero_every, rows as u32 + 3);
                    let block = SparseBlock {
                        vals: &vals,
                        vals_stride: len + 3,
                        union: &union,
                        m: &m,
                        ld,
                    };
                    let expected = naive(&block, len, rows, width);
                    let out_stride = width + 5;
                    let start = pseudo_random(rows * out_stride, 4, 1_000_000);
                    let mut out = start.clone();
                    masked_rows_product(&block, rows, &mut out, out_stride, width);
                    for r in 0..rows {
                        for k in 0..width {
                            let (o, e) = (
                                out[r * out_stride + k] as f64,
                                start[r * out_stride + k] as f64 + expected[r * width + k],
                            );
                            assert!(
                                (o - e).abs() < 1e-3,
                                "rows {rows} width {width} zeros 1/{zero_every} at ({r}, {k}): {o} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
