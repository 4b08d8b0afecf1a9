//! Sparse rows times a dense matrix, a block of rows at a time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::entries::{Read, with_read};
use super::{Entries, fits, has_avx512};

/// Largest block of rows taken at once: 4 rows × 4 registers of accumulators, plus the 4
/// registers of a matrix row, fit the 32 AVX-512 registers.
pub const MAX_BLOCK_ROWS: usize = 4;

/// Columns handled per pass over a block's non-zeros (4 registers of 16 floats).
const COLUMNS: usize = 64;

/// A block of sparse rows and the dense matrix they multiply. Entry j of row r of the block
/// is `vals.get(rows[r] + j * step)`, and the rows' non-zero positions are among the set bits of
/// `union` (the OR of their masks from [`nonzero_mask`](super::nonzero_mask)). Row j of the
/// matrix is `m[j * ld..]`.
///
/// Only the matrix rows that `union` names are read, and each is used by every row of the
/// block. That sharing is the point: a one-row product fetches a matrix row from L2 cache for
/// every two flops per float and is bound by cache bandwidth (36 GFLOP/s measured); four rows
/// sharing each fetch keep the FMA units busy, at the price of multiplying the few zeros
/// inside the union.
///
/// `rows` and `step` let a block be any rows of a row-major matrix (`step` 1, `rows` their
/// starts, in any order) or any of its columns read as rows (`step` the row length, `rows`
/// the columns' indices).
#[derive(Debug, Clone, Copy)]
pub struct SparseBlock<'a> {
    /// The rows' dense values.
    pub vals: Entries<'a>,
    /// Where each row of the block starts in `vals`: one to [`MAX_BLOCK_ROWS`] rows.
    pub rows: &'a [usize],
    /// Distance in `vals` between consecutive entries of a row (at least 1).
    pub step: usize,
    /// OR of the rows' non-zero masks.
    pub union: &'a [u64],
    /// The dense matrix, row-major.
    pub m: &'a [f32],
    /// Distance between rows of `m`.
    pub ld: usize,
}

impl SparseBlock<'_> {
    /// The highest set bit of `union`, if any.
    fn last_bit(&self) -> Option<usize> {
        let (i, w) = self
            .union
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)?;
        Some(i * 64 + 63 - w.leading_zeros() as usize)
    }

    /// Panics unless every index the kernels will use for `width` columns, writing rows
    /// `out_rows` of an `out_len`-long output, is inside the slices.
    fn check(&self, out_rows: &[usize], out_len: usize, width: usize) {
        let rows = self.rows.len();
        assert!(
            rows <= MAX_BLOCK_ROWS,
            "at most {MAX_BLOCK_ROWS} rows at a time"
        );
        assert_eq!(out_rows.len(), rows, "one output row per block row");
        assert!(self.step >= 1, "entries of a row are at least 1 apart");
        assert!(
            width <= self.ld,
            "{width} columns requested from rows of {}",
            self.ld
        );
        assert!(
            out_rows.iter().all(|&o| fits(out_len, o, 0, 0, width)),
            "out is too short"
        );
        if let Some(j) = self.last_bit() {
            assert!(
                self.rows
                    .iter()
                    .all(|&r| fits(self.vals.len(), r, j, self.step, 1)),
                "vals is too short for bit {j}"
            );
            assert!(
                fits(self.m.len(), 0, j, self.ld, width),
                "row {j} is outside the matrix"
            );
        }
    }
}

/// `out[out_rows[r] + k] += Σ_{j ∈ union} vals.get(rows[r] + j·step) · m[j][k]` for every
/// row r of the block and `k < width`.
pub fn masked_rows_product(block: &SparseBlock, out: &mut [f32], out_rows: &[usize], width: usize) {
    block.check(out_rows, out.len(), width);
    // Nothing to add; and `check` vouched for no row of `m`, so form no pointer into it.
    if block.rows.is_empty() || width == 0 || block.last_bit().is_none() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for c0 in (0..width).step_by(COLUMNS) {
            let cols = (width - c0).min(COLUMNS);
            // SAFETY: AVX-512F is present; every index was checked above.
            unsafe { block_avx512(block, c0, cols, out.as_mut_ptr().add(c0), out_rows) };
        }
        return;
    }
    for (w, &word) in block.union.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let j = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let m_row = &block.m[j * block.ld..][..width];
            for (&row, &out_row) in block.rows.iter().zip(out_rows) {
                let v = block.vals.get(row + j * block.step);
                for (o, &x) in out[out_row..][..width].iter_mut().zip(m_row) {
                    *o += v * x;
                }
            }
        }
    }
}

/// Dispatches to the instantiation for the kind of entries, the block's rows and ⌈cols / 16⌉
/// registers (cols ≤ 64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(
    block: &SparseBlock,
    c0: usize,
    cols: usize,
    out: *mut f32,
    out_rows: &[usize],
) {
    macro_rules! dispatch {
        ($($r:literal, $n:literal);*) => {
            with_read!(block.vals, |read| match (block.rows.len(), cols.div_ceil(16)) {
                $(($r, $n) => block_n::<$r, $n, _>(block, read, c0, cols, out, out_rows),)*
                _ => unreachable!("rows ≤ 4 and cols ≤ 64 are checked by the caller"),
            })
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
unsafe fn block_n<const R: usize, const N: usize, V: Read>(
    b: &SparseBlock,
    vals: V,
    c0: usize,
    cols: usize,
    out: *mut f32,
    out_rows: &[usize],
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
        let m = b.m.as_ptr().add(c0);
        let starts: [usize; R] = std::array::from_fn(|r| b.rows[r]);
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
                let entry = j * b.step;
                for r in 0..R {
                    let v = _mm512_set1_ps(vals.read(starts[r] + entry));
                    for k in 0..N {
                        acc[r][k] = _mm512_fmadd_ps(v, m_j[k], acc[r][k]);
                    }
                }
            }
        }
        for r in 0..R {
            for k in 0..N {
                let dst = out.add(out_rows[r] + 16 * k);
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

    /// The OR of the masks of `len` entries, `step` apart, from each of `starts` in `vals`.
    fn union_of(vals: &[f32], starts: &[usize], step: usize, len: usize) -> Vec<u64> {
        let mut union = vec![0; crate::kernels::mask_words(len)];
        for &start in starts {
            let row: Vec<f32> = (0..len).map(|j| vals[start + j * step]).collect();
            let mut mask = vec![0; union.len()];
            nonzero_mask(&row, &mut mask);
            union.iter_mut().zip(&mask).for_each(|(u, m)| *u |= m);
        }
        union
    }

    /// `start + Σ_j vals.get(rows[r] + j·step)·m[j][k]` in f64, for every block row r.
    fn naive(
        block: &SparseBlock,
        len: usize,
        width: usize,
        start: &[f32],
        out_rows: &[usize],
    ) -> Vec<f64> {
        let mut g = vec![0.0; block.rows.len() * width];
        for (r, &row) in block.rows.iter().enumerate() {
            for k in 0..width {
                g[r * width + k] = start[out_rows[r] + k] as f64;
                for j in 0..len {
                    g[r * width + k] += block.vals.get(row + j * block.step) as f64
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

    /// Every block size and width, with rows read three ways: consecutive rows, rows in
    /// another order, and columns of a row-major matrix read as rows.
    fn check_product() {
        let (len, ld) = (150, 300);
        let m = pseudo_random(len * ld, 9, 1_000_000);
        let stride = len + 3;
        for rows in 1..=MAX_BLOCK_ROWS {
            let layouts: [(&str, Vec<usize>, usize); 3] = [
                ("consecutive", (0..rows).map(|r| r * stride).collect(), 1),
                (
                    "reordered",
                    (0..rows).map(|r| (rows - 1 - r) * 2 * stride).collect(),
                    1,
                ),
                // vals as (len, stride) row-major, its columns 5, 7, 9… as the block's rows.
                ("columns", (0..rows).map(|r| 5 + 2 * r).collect(), stride),
            ];
            for (layout, starts, step) in layouts {
                for width in [1, 7, 16, 33, 64, 100, 129, 300] {
                    for zero_every in [1, 2, 5, 1000] {
                        let vals = pseudo_random(
                            2 * MAX_BLOCK_ROWS * stride.max(len * step),
                            rows as u32 + 3,
                            zero_every,
                        );
                        let block = SparseBlock {
                            vals: (&vals).into(),
                            rows: &starts,
                            step,
                            union: &union_of(&vals, &starts, step, len),
                            m: &m,
                            ld,
                        };
                        // Output rows in reverse order, with room between them.
                        let out_rows: Vec<usize> =
                            (0..rows).map(|r| (rows - 1 - r) * (width + 5)).collect();
                        let start = pseudo_random(rows * (width + 5), 4, 1_000_000);
                        let expected = naive(&block, len, width, &start, &out_rows);
                        let mut out = start.clone();
                        masked_rows_product(&block, &mut out, &out_rows, width);
                        for r in 0..rows {
                            for k in 0..width {
                                let (o, e) = (out[out_rows[r] + k] as f64, expected[r * width + k]);
                                assert!(
                                    (o - e).abs() < 1e-3,
                                    "{layout}: rows {rows} width {width} zeros 1/{zero_every} at ({r}, {k}): {o} vs {e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// What the engine's orderings rely on: a row's sums are the same bits whichever rows
    /// share its block, since the other rows' non-zeros only add zeros (0·m, finite m) to it.
    #[test]
    fn a_rows_result_does_not_depend_on_the_rows_in_its_block() {
        crate::kernels::test_data::on_both_paths(|| {
            let (len, width) = (300, 100);
            let m = pseudo_random(len * width, 11, 1_000_000);
            let vals = pseudo_random(4 * len, 12, 2);
            let mask_of = |rows: &[usize]| union_of(&vals, rows, 1, len);
            let product = |rows: &[usize]| {
                let union = mask_of(rows);
                let block = SparseBlock {
                    vals: (&vals).into(),
                    rows,
                    step: 1,
                    union: &union,
                    m: &m,
                    ld: width,
                };
                let out_rows: Vec<usize> = (0..rows.len()).map(|r| r * width).collect();
                let mut out = vec![0.0f32; rows.len() * width];
                masked_rows_product(&block, &mut out, &out_rows, width);
                out
            };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // Rows 2, 0, 3, 1 in one block, then each in a block of its own.
            let order = [2 * len, 0, 3 * len, len];
            let together = product(&order);
            for (k, &start) in order.iter().enumerate() {
                assert_eq!(
                    bits(&product(&[start])),
                    bits(&together[k * width..][..width]),
                    "row at {start}"
                );
            }
        });
    }

    #[test]
    #[should_panic(expected = "vals is too short")]
    fn a_row_that_runs_past_vals_is_refused() {
        let vals = [1.0f32; 10];
        let m = [1.0f32; 8 * 2];
        let block = SparseBlock {
            vals: Entries::F32(&vals),
            rows: &[0, 6],
            step: 1,
            union: &[0b1000_0001],
            m: &m,
            ld: 2,
        };
        masked_rows_product(&block, &mut [0.0; 4], &[0, 2], 2);
    }
}
