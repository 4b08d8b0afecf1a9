//! Sparse rows times a dense matrix, a block of rows at a time.

use fearless_simd::{Simd, SimdBase, SimdFloat};

use super::entries::with_read;
use super::terms::{Terms, UnionTerms};
use super::vector::{F32s, load, load_padded, store_padded, tile_vectors};
use super::{Entries, PackedBlock, Panels, fits};

/// Largest block of rows taken at once: 4 rows × 4 vectors of sums (64 columns), plus the 4
/// vectors of a matrix row, fit AVX-512's 32 registers; AVX2's 16 take 4 rows × 2 vectors
/// (16 columns).
///
/// The kernels are compiled for this many rows only: a smaller block (the last of a batch
/// whose size is no multiple of 4, or of a matrix's rows) repeats its last row to fill the
/// block, and the copies' sums are dropped. A row's sums do not depend on the other rows of
/// its block (`a_rows_result_does_not_depend_on_the_rows_in_its_block`), so that changes no
/// bit, and compiles a quarter of the copies: with one copy per row count, the kernels were
/// 60 % of the engine's compiled code and CI compiled them for minutes.
pub const MAX_BLOCK_ROWS: usize = 4;

/// A block of sparse rows and the dense matrix they multiply. Entry j of row r of the block
/// is `vals.get(rows[r] + j * step)`, and the rows' non-zero positions are among the set bits of
/// `union` (the OR of their masks from [`nonzero_mask`](super::nonzero_mask)). Entry (j, k)
/// of the matrix is `m[layout.index(j, k)]`.
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
    /// The dense matrix.
    pub m: &'a [f32],
    /// Where its entries are in `m`.
    pub layout: Panels,
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
    /// `out_rows` of an `out_len`-long output, is inside the slices. Returns the union's
    /// highest set bit, if any.
    fn check(&self, out_rows: &[usize], out_len: usize, width: usize) -> Option<usize> {
        let rows = self.rows.len();
        assert!(
            rows <= MAX_BLOCK_ROWS,
            "at most {MAX_BLOCK_ROWS} rows at a time"
        );
        assert_eq!(out_rows.len(), rows, "one output row per block row");
        assert!(self.step >= 1, "entries of a row are at least 1 apart");
        assert!(
            out_rows.iter().all(|&o| fits(out_len, o, 0, 0, width)),
            "out is too short"
        );
        let last_bit = self.last_bit();
        if let Some(j) = last_bit {
            assert!(
                self.rows
                    .iter()
                    .all(|&r| fits(self.vals.len(), r, j, self.step, 1)),
                "vals is too short for bit {j}"
            );
            assert!(
                width == 0 || self.layout.fits(self.m.len(), j, width),
                "row {j} is outside the matrix"
            );
        }
        last_bit
    }
}

/// `out[out_rows[r] + k] += Σ_{j ∈ union} vals.get(rows[r] + j·step) · m[j][k]` for every
/// row r of the block and `k < width`. Bit for bit the loop
/// `acc = 0; for j in union, in order { acc = v_j.mul_add(m[j][k], acc) }; out = out + acc`,
/// per output; on every level the vectors hold different k. `packed` is scratch.
#[inline(always)]
pub fn masked_rows_product<S: Simd>(
    simd: S,
    block: &SparseBlock,
    out: &mut [f32],
    out_rows: &[usize],
    width: usize,
    packed: &mut PackedBlock,
) {
    let last_bit = block.check(out_rows, out.len(), width);
    // Nothing to add; and `check` vouched for no row of `m`, so read none.
    if block.rows.is_empty() || width == 0 || last_bit.is_none() {
        return;
    }
    let (starts, live) = filled(block.rows);
    let block = &SparseBlock {
        rows: &starts,
        ..*block
    };
    let out = (out, out_rows, live);
    if tile_vectors::<S>() == 4 {
        tiles::<S, 4>(simd, block, packed, out, width);
    } else {
        tiles::<S, 2>(simd, block, packed, out, width);
    }
}

/// `rows` (1 to [`MAX_BLOCK_ROWS`] of them) filled up to [`MAX_BLOCK_ROWS`] by repeating
/// the last, and how many were given.
#[inline(always)]
pub(super) fn filled(rows: &[usize]) -> ([usize; MAX_BLOCK_ROWS], usize) {
    let live = rows.len();
    (std::array::from_fn(|r| rows[r.min(live - 1)]), live)
}

/// The output, its rows (one per live row of the block) and how many rows of the block are
/// live (the first; the others repeat the last).
type Out<'a> = (&'a mut [f32], &'a [usize], usize);

/// The block's columns `N` vectors at a time; the last tile may be partial. A single tile
/// reads its terms straight from the entries; several share them packed. Only for a block
/// that `masked_rows_product` checked for `width` columns (the reads are unchecked).
#[inline(always)]
fn tiles<S: Simd, const N: usize>(
    simd: S,
    b: &SparseBlock,
    packed: &mut PackedBlock,
    out: Out,
    width: usize,
) {
    let tile = N * F32s::<S>::LEN;
    b.layout.check_tiles(width, tile);
    if width <= tile {
        // SAFETY: `masked_rows_product` checked the block's entries (`SparseBlock::check`).
        with_read!(b.vals, |vals| tile_sums::<S, N>(
            simd,
            b,
            unsafe { UnionTerms::new(b, vals) },
            out,
            (0, width)
        ));
        return;
    }
    // SAFETY: as above.
    with_read!(b.vals, |vals| unsafe { packed.pack(b, vals) });
    let (out, out_rows, live) = out;
    for c0 in (0..width).step_by(tile) {
        let cols = tile.min(width - c0);
        let out = (&mut *out, out_rows, live);
        tile_sums::<S, N>(simd, b, packed.terms(), out, (c0, cols));
    }
}

/// [`add_tile`] for the tile of `cols` columns from `c0`, whole or partial.
#[inline(always)]
fn tile_sums<S: Simd, const N: usize>(
    simd: S,
    b: &SparseBlock,
    terms: impl Terms,
    out: Out,
    (c0, cols): (usize, usize),
) {
    if cols == N * F32s::<S>::LEN {
        add_tile::<S, N, true>(simd, b, terms, out, c0, cols);
    } else {
        add_tile::<S, N, false>(simd, b, terms, out, c0, cols);
    }
}

/// One tile of `cols` columns from `c0`: its live rows' sums added to the output rows. A
/// whole tile (`WHOLE`, `cols` then `N · LEN`) is its own copy with the width a constant, so
/// that the compiler unrolls the additions and keeps `acc` in registers: with the width
/// unknown, the AVX-512 level's 16 accumulators went through the stack on every multiply-add
/// of the loop in `sums` (2× slower than AVX2, docs/PERFORMANCE.md).
#[inline(always)]
fn add_tile<S: Simd, const N: usize, const WHOLE: bool>(
    simd: S,
    b: &SparseBlock,
    terms: impl Terms,
    (out, out_rows, live): Out,
    c0: usize,
    cols: usize,
) {
    let cols = if WHOLE { N * F32s::<S>::LEN } else { cols };
    // SAFETY: `masked_rows_product` checked the block (`SparseBlock::check`) for these
    // columns and its tiles (`check_tiles`), and the terms are its union's bits.
    let acc = unsafe { sums::<S, N, WHOLE>(simd, b.m, b.layout, terms, c0, cols) };
    // Every row of `acc` visited and the live ones written: a loop stopping at `live` would
    // index `acc` with an unknown number, and keep it in memory rather than registers.
    for (r, acc) in acc.iter().enumerate() {
        if r >= live {
            continue;
        }
        let dst = &mut out[out_rows[r] + c0..][..cols];
        for (k, &acc) in acc.iter().enumerate() {
            let (at, len) = lanes_of(k, F32s::<S>::LEN, cols);
            let sum = load_padded(simd, dst, at, len) + acc;
            store_padded::<S>(sum, dst, at, len);
        }
    }
}

/// Where vector k of a tile of `cols` columns starts, and how many of its lanes hold columns.
#[inline(always)]
pub(super) fn lanes_of(k: usize, lanes: usize, cols: usize) -> (usize, usize) {
    (
        (k * lanes).min(cols),
        cols.saturating_sub(k * lanes).min(lanes),
    )
}

/// [`MAX_BLOCK_ROWS`] rows × N vectors of sums for columns `c0..c0 + cols` of `m` (all
/// `N · LEN` of them when `WHOLE`, else zeros past `cols`): `acc[r] = Σ_(j, v) v[r] · m[j][c0..]`
/// over the terms in order, one fused multiply-add per term, from 0. Each matrix row's N
/// vectors are loaded once per set bit and used by all the block's rows. The tile lies in one
/// panel of `layout` (`check_tiles`): its columns of row j are consecutive, `j·ld` past row
/// 0's.
///
/// # Safety
/// For every term's j, columns `c0..c0 + cols` of row j of `m` are inside `m` under
/// `layout`: what `SparseBlock::check` and `Panels::check_tiles` assert for the union's bits
/// (the terms' j are those bits).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r and k index several arrays in step
pub(super) unsafe fn sums<S: Simd, const N: usize, const WHOLE: bool>(
    simd: S,
    m: &[f32],
    layout: Panels,
    terms: impl Terms,
    c0: usize,
    cols: usize,
) -> [[F32s<S>; N]; MAX_BLOCK_ROWS] {
    let lanes = F32s::<S>::LEN;
    let zero = F32s::<S>::splat(simd, 0.0);
    let mut acc = [[zero; N]; MAX_BLOCK_ROWS];
    let (start, ld) = (layout.index(0, c0), layout.ld());
    let mut terms = terms;
    while let Some((j, v)) = terms.next_term() {
        let v = v.as_ref();
        let at = j * ld + start;
        // SAFETY: row j's tile is inside `m` (the caller's promise); unchecked for the reason
        // `entries::Read` gives.
        let row = unsafe { m.get_unchecked(at..at + cols) };
        // A plain loop rather than `array::from_fn`: a closure is not sure to be inlined, and
        // left out of line it would be compiled for the baseline instruction set.
        let mut m_j = [zero; N];
        for (k, m) in m_j.iter_mut().enumerate() {
            *m = if WHOLE {
                load(simd, row, k * lanes)
            } else {
                let (at, len) = lanes_of(k, lanes, cols);
                load_padded(simd, row, at, len)
            };
        }
        for r in 0..MAX_BLOCK_ROWS {
            let v = F32s::<S>::splat(simd, v[r]);
            for k in 0..N {
                acc[r][k] = v.mul_add_precise(m_j[k], acc[r][k]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::nonzero_mask;
    use crate::kernels::test_data::{bits, in_layout, on_every_level, pseudo_random};

    /// The OR of the masks of `len` entries, `step` apart, from each of `starts` in `vals`.
    fn union_of(vals: &[f32], starts: &[usize], step: usize, len: usize) -> Vec<u64> {
        let mut union = vec![0; crate::kernels::mask_words(len)];
        for &start in starts {
            let row: Vec<f32> = (0..len).map(|j| vals[start + j * step]).collect();
            let mut mask = vec![0; union.len()];
            nonzero_mask(fearless_simd::Fallback::new(), &row, &mut mask);
            union.iter_mut().zip(&mask).for_each(|(u, m)| *u |= m);
        }
        union
    }

    /// The loop the kernel is defined by, on plain floats.
    fn defining_loop(block: &SparseBlock, width: usize, out: &mut [f32], out_rows: &[usize]) {
        for (&row, &out_row) in block.rows.iter().zip(out_rows) {
            for k in 0..width {
                let mut acc = 0.0f32;
                for (w, &word) in block.union.iter().enumerate() {
                    for bit in 0..64 {
                        if word >> bit & 1 == 1 {
                            let j = w * 64 + bit;
                            acc = block
                                .vals
                                .get(row + j * block.step)
                                .mul_add(block.m[block.layout.index(j, k)], acc);
                        }
                    }
                }
                out[out_row + k] += acc;
            }
        }
    }

    #[test]
    fn masked_rows_product_gives_the_bits_of_its_loop_on_every_level() {
        on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_product(s, name)));
    }

    /// Every block size and width, with rows read three ways: consecutive rows, rows in
    /// another order, and columns of a row-major matrix read as rows; the matrix row-major
    /// and in panels.
    fn check_product<S: Simd>(simd: S, level: &str) {
        let (len, ld) = (150, 300);
        let m = pseudo_random(len * ld, 9, 1_000_000);
        let paneled = in_layout(&m, len, ld, Panels::columns(len, 64));
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
            for (order, starts, step) in layouts {
                for (width, (m, layout)) in [0, 1, 7, 8, 16, 33, 64, 100, 129, 300]
                    .into_iter()
                    .flat_map(|w| {
                        [
                            (&m, Panels::row_major(ld)),
                            (&paneled, Panels::columns(len, 64)),
                        ]
                        .map(|matrix| (w, matrix))
                    })
                {
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
                            m,
                            layout,
                        };
                        // Output rows in reverse order, with room between them.
                        let out_rows: Vec<usize> =
                            (0..rows).map(|r| (rows - 1 - r) * (width + 5)).collect();
                        let start = pseudo_random(rows * (width + 5), 4, 1_000_000);
                        let mut expected = start.clone();
                        defining_loop(&block, width, &mut expected, &out_rows);
                        let mut out = start.clone();
                        masked_rows_product(
                            simd,
                            &block,
                            &mut out,
                            &out_rows,
                            width,
                            &mut PackedBlock::default(),
                        );
                        assert_eq!(
                            bits(&out),
                            bits(&expected),
                            "{level}, {order}, {layout:?}: rows {rows} width {width} zeros 1/{zero_every}"
                        );
                    }
                }
            }
        }
    }

    /// What the engine's orderings rely on: a row's sums are the same bits whichever rows
    /// share its block, since the other rows' non-zeros only add zeros (0·m, finite m) to it.
    #[test]
    fn a_rows_result_does_not_depend_on_the_rows_in_its_block() {
        let (len, width) = (300, 100);
        let m = pseudo_random(len * width, 11, 1_000_000);
        let vals = pseudo_random(4 * len, 12, 2);
        let product = |rows: &[usize]| {
            let union = union_of(&vals, rows, 1, len);
            let block = SparseBlock {
                vals: (&vals).into(),
                rows,
                step: 1,
                union: &union,
                m: &m,
                layout: Panels::row_major(width),
            };
            let out_rows: Vec<usize> = (0..rows.len()).map(|r| r * width).collect();
            let mut out = vec![0.0f32; rows.len() * width];
            let level = crate::simd::SimdLevel::best().token().expect("best");
            let mut packed = PackedBlock::default();
            fearless_simd::dispatch!(level, s => masked_rows_product(s, &block, &mut out, &out_rows, width, &mut packed));
            out
        };
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
            layout: Panels::row_major(2),
        };
        masked_rows_product(
            fearless_simd::Fallback::new(),
            &block,
            &mut [0.0; 4],
            &[0, 2],
            2,
            &mut PackedBlock::default(),
        );
    }
}
