//! An optimiser step on a weight matrix whose gradient is a sparse product, fused: the first
//! layer's dW1 = xᵀ·dz1, applied to W1 four rows at a time as it is computed, never stored
//! whole.

use fearless_simd::{Simd, SimdBase, SimdFloat};

use super::entries::with_read;
use super::product::{filled, lanes_of, sums};
use super::terms::{Terms, UnionTerms};
use super::update::{Rule, Update, Vector};
use super::vector::{F32s, lane_sum, load_padded, store_padded, tile_vectors};
use super::{Entries, MAX_BLOCK_ROWS, PackedBlock, Panels, SparseBlock, fits, mask_words};

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

/// One optimiser step on `w` (`cols × width`, laid out as `layout` says), whose gradient is
/// `G = xᵀ·d` (`d` is `x.rows × width`, row-major): `update` element by element (see
/// [`Update`]), with the moments in `moments` (laid out as `w`, each as long as `w` when the
/// rule keeps it). Returns `Σ G²`.
///
/// G is never stored: for each block of [`MAX_BLOCK_ROWS`] rows `p0..` of `w`, its rows are
/// `g[q][k] = Σ_j x[j, p0 + q]·d[j][k]` over the rows j where any of the block's columns of x
/// is non-zero, in order of j, one fused multiply-add per term from 0 (a
/// [`masked_rows_product`](super::masked_rows_product) of x's columns). Their squares go into
/// 16 lanes, 16 columns at a time in order and the block's rows in order within each 16
/// (`lanes = g[q][c..c + 16].mul_add(g[q][c..c + 16], lanes)`, the last 16 padded with zeros);
/// `lane_sum` of the block's lanes is added to the `f64` result. Then the step is applied
/// to the block's weights.
///
/// `terms` says where the blocks' terms come from: read as each block is stepped, or packed
/// beforehand by [`pack_column_blocks`] (once for any number of matrices). Panics if sizes
/// and slices disagree, or if packed blocks are not x's blocks (their count, rows or
/// highest bit).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_gradient_step<S: Simd>(
    simd: S,
    x: &SparseColumns,
    d: &[f32],
    width: usize,
    (w, layout): (&mut [f32], Panels),
    update: Update,
    moments: (&mut [f32], &mut [f32]),
    terms: ColumnTerms,
) -> f64 {
    let w = (w, layout);
    match update {
        Update::Sgd(rule) => gradient_step(simd, x, d, width, w, rule, moments, terms),
        Update::Momentum(rule) => gradient_step(simd, x, d, width, w, rule, moments, terms),
        Update::Adam(rule) => gradient_step(simd, x, d, width, w, rule, moments, terms),
    }
}

/// Where [`sparse_gradient_step`] finds its blocks' terms.
#[derive(Debug)]
pub enum ColumnTerms<'a> {
    /// Read from x as each block is stepped (and packed, when w is wider than one tile of
    /// the level's columns), in these reused buffers (grown as needed).
    Read(&'a mut Vec<u64>, &'a mut PackedBlock),
    /// Packed beforehand from the same x by [`pack_column_blocks`].
    Packed(&'a [PackedBlock]),
}

/// The blocks of [`sparse_gradient_step`] packed once, into `blocks` (one per
/// [`MAX_BLOCK_ROWS`] columns of x; `union` is a reused buffer): its steps on several
/// matrices with the same x (a hidden layer's shards) then share them, as
/// [`ColumnTerms::Packed`], instead of reading or packing every block for each.
#[inline(always)]
pub fn pack_column_blocks<S: Simd>(
    simd: S,
    x: &SparseColumns,
    union: &mut Vec<u64>,
    blocks: &mut Vec<PackedBlock>,
) {
    check_columns(x);
    let count = x.cols.div_ceil(MAX_BLOCK_ROWS);
    blocks.resize_with(count, PackedBlock::default);
    for (packed, p0) in blocks.iter_mut().zip((0..x.cols).step_by(MAX_BLOCK_ROWS)) {
        let r = MAX_BLOCK_ROWS.min(x.cols - p0);
        column_union(x, p0..p0 + r, union);
        let rows: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|k| p0 + k);
        packed.pack_block(
            simd,
            &SparseBlock {
                vals: x.vals,
                rows: &rows[..r],
                step: x.cols,
                union,
                m: &[],
                layout: Panels::row_major(0),
            },
        );
    }
}

/// Panics unless x's entries and masks are as long as its sizes say, and its rows, the
/// blocks' terms, fit the u32s packed terms keep them in.
fn check_columns(x: &SparseColumns) {
    let (rows, cols) = (x.rows, x.cols);
    let words = mask_words(rows);
    assert!(
        u32::try_from(rows.saturating_sub(1)).is_ok(),
        "{rows} rows are past 2³²"
    );
    assert!(
        fits(x.vals.len(), 0, rows, cols, 0),
        "vals is shorter than {rows} × {cols}"
    );
    assert!(
        x.mask_stride >= words
            && (cols == 0 || fits(x.masks.len(), 0, cols - 1, x.mask_stride, words)),
        "masks is too short"
    );
}

/// The OR of the masks of x's `columns`, into `union`, with the bits past x's rows cleared.
fn column_union(x: &SparseColumns, columns: std::ops::Range<usize>, union: &mut Vec<u64>) {
    let words = mask_words(x.rows);
    union.clear();
    union.resize(words, 0);
    for p in columns {
        for (u, m) in union.iter_mut().zip(&x.masks[p * x.mask_stride..][..words]) {
            *u |= m;
        }
    }
    if let Some(last) = union.last_mut() {
        *last &= valid_bits(x.rows, words - 1);
    }
}

/// [`sparse_gradient_step`] for one rule.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gradient_step<S: Simd, U: Rule>(
    simd: S,
    x: &SparseColumns,
    d: &[f32],
    width: usize,
    (w, layout): (&mut [f32], Panels),
    step: U,
    (first, second): (&mut [f32], &mut [f32]),
    mut terms: ColumnTerms,
) -> f64 {
    let (rows, cols) = (x.rows, x.cols);
    assert!(
        cols == 0 || width == 0 || layout.fits(w.len(), cols - 1, width),
        "w is shorter than {cols} × {width}"
    );
    assert!(
        (U::MOMENTS < 1 || first.len() == w.len()) && (U::MOMENTS < 2 || second.len() == w.len()),
        "one moment per weight"
    );
    check_columns(x);
    assert!(
        fits(d.len(), 0, rows, width, 0),
        "d is shorter than {rows} × {width}"
    );
    if let ColumnTerms::Packed(blocks) = &terms {
        assert!(
            blocks.len() == cols.div_ceil(MAX_BLOCK_ROWS)
                && blocks.iter().enumerate().all(|(k, b)| {
                    b.live() == MAX_BLOCK_ROWS.min(cols - k * MAX_BLOCK_ROWS)
                        && b.last_bit().is_none_or(|j| j < rows)
                }),
            "the packed blocks are not x's"
        );
    }
    let tile = tile_vectors::<S>() * F32s::<S>::LEN;
    if cols > 0 {
        // Once for every block (`block_step` relies on it): each tile lies in one panel.
        layout.check_tiles(width, tile);
    }
    let mut total = 0.0f64;
    for (k, p0) in (0..cols).step_by(MAX_BLOCK_ROWS).enumerate() {
        let r = MAX_BLOCK_ROWS.min(cols - p0);
        // A block of fewer rows (the last) repeats its last row (see `MAX_BLOCK_ROWS`).
        let block_rows: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|k| p0 + k);
        let (starts, live) = filled(&block_rows[..r]);
        let block_of = |union| SparseBlock {
            vals: x.vals,
            rows: &starts,
            step: cols,
            union,
            m: d,
            layout: Panels::row_major(width),
        };
        let (block, packed, direct) = match &mut terms {
            ColumnTerms::Read(union, packed) => {
                column_union(x, p0..p0 + r, union);
                let block = block_of(union);
                // Terms read straight for a single tile, else packed once for every tile.
                let direct = width <= tile;
                if !direct {
                    // SAFETY: every index was checked above: rows j < x.rows (the union's bits
                    // past it are cleared) and columns p0 + q < cols.
                    unsafe { packed.pack(simd, &block, live) };
                }
                (block, &**packed, direct)
            }
            // Checked above: the terms' rows j < x.rows.
            ColumnTerms::Packed(blocks) => (block_of(&[]), &blocks[k], false),
        };
        let state = (&mut *w, &mut *first, &mut *second);
        let (rows_at, terms, d) = ((p0, layout, live), (&block, packed, direct), (d, width));
        total += f64::from(if tile_vectors::<S>() == 4 {
            block_step::<S, U, 4>(simd, d, terms, state, rows_at, step)
        } else {
            block_step::<S, U, 2>(simd, d, terms, state, rows_at, step)
        });
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

/// One block of `live` rows of `w` (and of its moments), from row `p0` of `layout`: each tile
/// of columns summed in registers, its squares added and its step applied there. Returns
/// the block's `lane_sum`. Its terms are read straight from x when `direct` (a single tile),
/// else from `packed`.
#[inline(always)]
fn block_step<S: Simd, U: Rule, const N: usize>(
    simd: S,
    d: (&[f32], usize),
    (block, packed, direct): (&SparseBlock, &PackedBlock, bool),
    state: (&mut [f32], &mut [f32], &mut [f32]),
    rows_at: RowsAt,
    step: U,
) -> f32 {
    let lanes = F32s::<S>::LEN;
    // The 16 lanes of squares, as native vectors (16 / LEN of them).
    let mut squares = [F32s::<S>::splat(simd, 0.0); 4];
    let sq = &mut squares;
    let (w, first, second) = state;
    let (width, tile) = (d.1, N * lanes);
    if direct {
        let (at, state) = ((rows_at, 0, width), (w, first, second));
        with_read!(block.vals, |vals| {
            // SAFETY: `gradient_step` checked every index of the block's entries.
            let terms = unsafe { UnionTerms::new(block, vals) };
            tile_step::<S, U, N>(simd, d, terms, state, at, step, sq);
        });
    } else {
        for c0 in (0..width).step_by(tile) {
            let state = (&mut *w, &mut *first, &mut *second);
            let at = (rows_at, c0, tile.min(width - c0));
            tile_step::<S, U, N>(simd, d, packed.terms(), state, at, step, sq);
        }
    }
    let mut all = [0.0f32; 16];
    for (part, lane) in all.chunks_exact_mut(lanes).zip(&squares) {
        part.copy_from_slice(lane.as_slice());
    }
    lane_sum(&all)
}

/// Where a block's rows are: its first row `p0` of `w`, `w`'s layout, and how many of the
/// block's [`MAX_BLOCK_ROWS`] rows are rows of `w` (the first; the others repeat the last).
type RowsAt = (usize, Panels, usize);

/// [`step_tile`] for the tile of `cols` columns from `c0`, whole or partial.
#[inline(always)]
fn tile_step<S: Simd, U: Rule, const N: usize>(
    simd: S,
    d: (&[f32], usize),
    terms: impl Terms,
    state: (&mut [f32], &mut [f32], &mut [f32]),
    at: (RowsAt, usize, usize),
    step: U,
    squares: &mut [F32s<S>; 4],
) {
    if at.2 == N * F32s::<S>::LEN {
        step_tile::<S, U, N, true>(simd, d, terms, state, at, step, squares);
    } else {
        step_tile::<S, U, N, false>(simd, d, terms, state, at, step, squares);
    }
}

/// One tile of `cols` columns from `c0` of [`block_step`]'s block. A whole tile (`WHOLE`,
/// `cols` then `N · LEN`) is its own copy with the width a constant, so that the compiler
/// unrolls the loops over `g` and keeps it in registers (with the width unknown, the
/// AVX-512 level's 16 accumulators went through the stack on every multiply-add, as in
/// `masked_rows_product`'s tiles).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_tile<S: Simd, U: Rule, const N: usize, const WHOLE: bool>(
    simd: S,
    (d, width): (&[f32], usize),
    terms: impl Terms,
    (w, first, second): (&mut [f32], &mut [f32], &mut [f32]),
    ((p0, layout, live), c0, cols): (RowsAt, usize, usize),
    step: U,
    squares: &mut [F32s<S>; 4],
) {
    let lanes = F32s::<S>::LEN;
    let per16 = 16 / lanes;
    let cols = if WHOLE { N * lanes } else { cols };
    let splat = |c: f32| Vector::<S>(F32s::<S>::splat(simd, c));
    let zero = splat(0.0);
    // SAFETY: `gradient_step` checked that d holds `rows` rows of `width` columns and cleared
    // the union's bits past `rows`; the terms are its bits, and c0 + cols <= width.
    let g = unsafe { sums::<S, N, WHOLE>(simd, d, Panels::row_major(width), terms, c0, cols) };
    // Squares: 16 columns at a time, the block's live rows in order within each. (Every row
    // of `g` is visited and the copies skipped: a loop stopping at `live` would index `g`
    // with an unknown number, and keep it in memory rather than registers.)
    for chunk in (0..N).step_by(per16) {
        for (q, g_q) in g.iter().enumerate() {
            if q >= live {
                continue;
            }
            for (lane, &g) in squares.iter_mut().zip(&g_q[chunk..chunk + per16]) {
                *lane = g.mul_add_precise(g, *lane);
            }
        }
    }
    // The tile lies in one panel (`gradient_step` checked): row q's columns are consecutive.
    let (start, ld) = (layout.index(p0, c0), layout.ld());
    for (q, g_q) in g.iter().enumerate() {
        if q >= live {
            continue;
        }
        for (k, &g) in g_q.iter().enumerate() {
            let (at, len) = lanes_of(k, lanes, cols);
            let at = start + q * ld + at;
            let load = |all: &[f32]| Vector(load_padded(simd, all, at, len));
            let mut m = if U::MOMENTS >= 1 { load(first) } else { zero };
            let mut v = if U::MOMENTS >= 2 { load(second) } else { zero };
            let w_new = step.apply(splat, load(w), Vector(g), &mut m, &mut v);
            store_padded::<S>(w_new.0, w, at, len);
            if U::MOMENTS >= 1 {
                store_padded::<S>(m.0, first, at, len);
            }
            if U::MOMENTS >= 2 {
                store_padded::<S>(v.0, second, at, len);
            }
        }
    }
}

#[cfg(test)]
mod tests;
