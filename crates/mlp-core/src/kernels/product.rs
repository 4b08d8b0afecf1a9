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
    /// Where each row of the block starts in `vals`: up to [`MAX_BLOCK_ROWS`] rows (none
    /// adds nothing).
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
        let last_bit = self.check_entries();
        check_out(out_rows, self.rows.len(), out_len, width);
        check_matrix(self.m, self.layout, last_bit, width);
        last_bit
    }

    /// Panics unless the block has 0 to [`MAX_BLOCK_ROWS`] rows whose entries at the union's
    /// set bits are inside `vals`. Returns the union's highest set bit, if any.
    pub(super) fn check_entries(&self) -> Option<usize> {
        assert!(
            self.rows.len() <= MAX_BLOCK_ROWS,
            "at most {MAX_BLOCK_ROWS} rows at a time"
        );
        assert!(self.step >= 1, "entries of a row are at least 1 apart");
        let last_bit = self.last_bit();
        if let Some(j) = last_bit {
            assert!(
                self.rows
                    .iter()
                    .all(|&r| fits(self.vals.len(), r, j, self.step, 1)),
                "vals is too short for bit {j}"
            );
            // Packed terms keep their bits as u32 (`PackedBlock`).
            assert!(u32::try_from(j).is_ok(), "bit {j} is past 2³²");
        }
        last_bit
    }
}

/// Panics unless `out_rows` names one row per block row, each with `width` values inside an
/// `out_len`-long output.
fn check_out(out_rows: &[usize], rows: usize, out_len: usize, width: usize) {
    assert_eq!(out_rows.len(), rows, "one output row per block row");
    assert!(
        out_rows.iter().all(|&o| fits(out_len, o, 0, 0, width)),
        "out is too short"
    );
}

/// Panics unless rows `..=last_bit` of `m`, `width` columns, are inside it under `layout`.
fn check_matrix(m: &[f32], layout: Panels, last_bit: Option<usize>, width: usize) {
    if let Some(j) = last_bit {
        assert!(
            width == 0 || layout.fits(m.len(), j, width),
            "row {j} is outside the matrix"
        );
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

/// [`masked_rows_product`] of a block whose terms were packed beforehand
/// ([`PackedBlock::pack_block`]), with the matrix `m` laid out as `layout` says: the same
/// sums, the same bits. One packing then serves any number of matrices (the shards of a
/// hidden layer), where `masked_rows_product` reads or packs the terms at every call.
#[inline(always)]
pub fn packed_rows_product<S: Simd>(
    simd: S,
    packed: &PackedBlock,
    (m, layout): (&[f32], Panels),
    out: &mut [f32],
    out_rows: &[usize],
    width: usize,
) {
    check_out(out_rows, packed.live(), out.len(), width);
    check_matrix(m, layout, packed.last_bit(), width);
    if packed.live() == 0 || width == 0 || packed.last_bit().is_none() {
        return;
    }
    layout.check_tiles(width, tile_vectors::<S>() * F32s::<S>::LEN);
    let out = (out, out_rows, packed.live());
    if tile_vectors::<S>() == 4 {
        packed_tiles::<S, 4>(simd, (m, layout), packed, out, width);
    } else {
        packed_tiles::<S, 2>(simd, (m, layout), packed, out, width);
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
            (b.m, b.layout),
            unsafe { UnionTerms::new(b, vals) },
            out,
            (0, width)
        ));
        return;
    }
    // SAFETY: as above.
    unsafe { packed.pack(simd, b, out.2) };
    packed_tiles::<S, N>(simd, (b.m, b.layout), packed, out, width);
}

/// The tiles of a product whose terms are `packed`, N vectors at a time. Only for terms and a
/// matrix checked for `width` columns and tiles of N vectors (`SparseBlock::check`, or
/// `packed_rows_product`'s checks; `Panels::check_tiles`).
#[inline(always)]
fn packed_tiles<S: Simd, const N: usize>(
    simd: S,
    matrix: (&[f32], Panels),
    packed: &PackedBlock,
    (out, out_rows, live): Out,
    width: usize,
) {
    let tile = N * F32s::<S>::LEN;
    for c0 in (0..width).step_by(tile) {
        let cols = tile.min(width - c0);
        let out = (&mut *out, out_rows, live);
        tile_sums::<S, N>(simd, matrix, packed.terms(), out, (c0, cols));
    }
}

/// [`add_tile`] for the tile of `cols` columns from `c0`, whole or partial.
#[inline(always)]
fn tile_sums<S: Simd, const N: usize>(
    simd: S,
    matrix: (&[f32], Panels),
    terms: impl Terms,
    out: Out,
    (c0, cols): (usize, usize),
) {
    if cols == N * F32s::<S>::LEN {
        add_tile::<S, N, true>(simd, matrix, terms, out, c0, cols);
    } else {
        add_tile::<S, N, false>(simd, matrix, terms, out, c0, cols);
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
    (m, layout): (&[f32], Panels),
    terms: impl Terms,
    (out, out_rows, live): Out,
    c0: usize,
    cols: usize,
) {
    let cols = if WHOLE { N * F32s::<S>::LEN } else { cols };
    // SAFETY: the caller checked the matrix for these columns up to the terms' last row
    // (`SparseBlock::check`, or `packed_rows_product`'s checks) and its tiles (`check_tiles`).
    let acc = unsafe { sums::<S, N, WHOLE>(simd, m, layout, terms, c0, cols) };
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
mod tests;
