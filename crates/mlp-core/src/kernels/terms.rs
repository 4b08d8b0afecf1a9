//! The terms of a block's sums: each set bit j of a [`SparseBlock`]'s union, in order, with
//! the block's rows' entries at j. Read straight from the entries ([`UnionTerms`]), or
//! packed once ([`PackedBlock`]) when several tiles of columns need them all.

use super::entries::{Read, with_read};
use super::pack_bytes::{SLACK_TERMS, has_fma, pack_byte_rows};
use super::product::filled;
use super::{Entries, MAX_BLOCK_ROWS, SparseBlock};

/// The terms of a block's sums in order: for each set bit j of the union, j and the block's
/// [`MAX_BLOCK_ROWS`] rows' entries there.
pub(super) trait Terms {
    /// The rows' entries at one set bit.
    type Row: AsRef<[f32]>;
    /// The next term, if any.
    fn next_term(&mut self) -> Option<(usize, Self::Row)>;
}

/// The terms of a block, read from its entries as the union's bits are visited:
/// two dependent loads per row and term for bytes (the byte, its table entry), which a
/// product of a single tile pays once and a packed block would pay once too, plus its own
/// stores and loads.
pub(super) struct UnionTerms<'a, V> {
    union: &'a [u64],
    /// The word after the one in `bits`.
    next_word: usize,
    /// The current word's bits not yet visited.
    bits: u64,
    starts: [usize; MAX_BLOCK_ROWS],
    step: usize,
    vals: V,
}

impl<'a, V: Read> UnionTerms<'a, V> {
    /// The terms of `block` (of [`MAX_BLOCK_ROWS`] rows), read from `vals`, its entries.
    ///
    /// # Safety
    /// Every entry of the block's rows at a set bit of its union is inside `vals`: what
    /// `SparseBlock::check` asserts.
    #[inline(always)]
    pub(super) unsafe fn new(block: &SparseBlock<'a>, vals: V) -> Self {
        let mut starts = [0; MAX_BLOCK_ROWS];
        starts.copy_from_slice(&block.rows[..MAX_BLOCK_ROWS]);
        Self {
            union: block.union,
            next_word: 0,
            bits: 0,
            starts,
            step: block.step,
            vals,
        }
    }
}

impl<V: Read> Terms for UnionTerms<'_, V> {
    type Row = [f32; MAX_BLOCK_ROWS];

    #[inline(always)]
    fn next_term(&mut self) -> Option<(usize, [f32; MAX_BLOCK_ROWS])> {
        while self.bits == 0 {
            self.bits = *self.union.get(self.next_word)?;
            self.next_word += 1;
        }
        let j = (self.next_word - 1) * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        let entry = j * self.step;
        let mut v = [0.0; MAX_BLOCK_ROWS];
        for (v, &start) in v.iter_mut().zip(&self.starts) {
            // SAFETY: j is a set bit of the union, whose entries `new`'s caller vouched for.
            *v = unsafe { self.vals.read(start + entry) };
        }
        Some((j, v))
    }
}

/// A block's terms read once and then used by every tile of columns: the reusable buffers of
/// [`masked_rows_product`](super::masked_rows_product), or a block packed once
/// ([`PackedBlock::pack_block`]) for [`packed_rows_product`](super::packed_rows_product)s
/// with any number of matrices.
///
/// Reading an entry is a dependent load (a byte, then its table entry) and each tile of
/// columns needs them all again: with AVX2's 16-column tiles a 64-column product read every
/// entry four times, and those reads took 40 % of the step. Packed, a tile reads each set
/// bit's index and its [`MAX_BLOCK_ROWS`] values from two contiguous arrays. (A product of a
/// single tile, AVX-512's 64 columns, reads its terms straight: `UnionTerms`.)
#[derive(Debug, Clone, Default)]
pub struct PackedBlock {
    /// The set bits of the union, in order.
    js: Vec<u32>,
    /// For the t-th set bit, the block's rows' entries there at `MAX_BLOCK_ROWS * t..`.
    vals: Vec<f32>,
    /// The last set bit (the matrix rows a product of these terms reads end there).
    last_bit: Option<usize>,
    /// The block's own rows (the others, to `MAX_BLOCK_ROWS`, repeat the last).
    live: usize,
}

impl PackedBlock {
    /// Buffers for unions of up to `bits` set bits (they grow if a union has more).
    pub fn with_capacity(bits: usize) -> Self {
        Self {
            js: Vec::with_capacity(bits),
            vals: Vec::with_capacity(bits * MAX_BLOCK_ROWS),
            last_bit: None,
            live: 0,
        }
    }

    /// Packs the terms of `block` (0 to [`MAX_BLOCK_ROWS`] rows; its `m` and `layout` are not
    /// read), for [`packed_rows_product`](super::packed_rows_product)s with any matrix.
    /// Panics, as `masked_rows_product` does, if the rows' entries at the union's set bits
    /// run past the block's values.
    ///
    /// `#[inline(always)]`, and taking the level's token, so that it is called from a pass
    /// dispatched for the level and compiled for it (AVX2's `tzcnt` and `blsr`): out of line,
    /// for the baseline, the packing took ~30 % longer.
    #[inline(always)]
    pub fn pack_block<S: fearless_simd::Simd>(&mut self, simd: S, block: &SparseBlock) {
        let last_bit = block.check_entries();
        if block.rows.is_empty() || last_bit.is_none() {
            // No terms: a product of them reads no row of its matrix.
            self.js.clear();
            self.vals.clear();
            (self.last_bit, self.live) = (None, block.rows.len());
            return;
        }
        let (starts, live) = filled(block.rows);
        let block = SparseBlock {
            rows: &starts,
            ..*block
        };
        // SAFETY: `check_entries` checked the entries at the union's set bits.
        unsafe { self.pack(simd, &block, live) };
    }

    /// The own rows of the block packed last.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// The last set bit of the union packed last, if any.
    pub(super) fn last_bit(&self) -> Option<usize> {
        self.last_bit
    }

    /// Packs the terms of `block`, of [`MAX_BLOCK_ROWS`] rows (the first `live` of them its
    /// own, the others repeats of the last): with vector instructions where the entries are
    /// bytes of a table of quotients, the level has a fused multiply-add and the block is
    /// rows (entries 1 apart, `pack_bytes.rs`), else one entry at a time.
    ///
    /// # Safety
    /// As for [`UnionTerms::new`]: the entries at the union's set bits are inside the
    /// block's values.
    #[inline(always)]
    pub(super) unsafe fn pack<S: fearless_simd::Simd>(
        &mut self,
        simd: S,
        block: &SparseBlock,
        live: usize,
    ) {
        if let Entries::Bytes { bytes, table } = block.vals
            && let Some(q) = table.quotient()
            && block.step == 1
            && has_fma(simd)
        {
            let starts: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|r| block.rows[r]);
            let bits: usize = block.union.iter().map(|w| w.count_ones() as usize).sum();
            self.js.resize(bits + SLACK_TERMS, 0);
            self.vals.resize((bits + SLACK_TERMS) * MAX_BLOCK_ROWS, 0.0);
            let out = (&mut self.js[..], &mut self.vals[..]);
            let terms = pack_byte_rows(simd, (bytes, q), &starts, block.union, out);
            debug_assert_eq!(terms, bits, "one term per set bit");
            self.js.truncate(bits);
            self.vals.truncate(bits * MAX_BLOCK_ROWS);
            // `check_entries` held the bits below 2³².
            (self.last_bit, self.live) = (self.js.last().map(|&j| j as usize), live);
            return;
        }
        // SAFETY: the caller's promise.
        with_read!(block.vals, |vals| unsafe {
            self.pack_read(block, vals, live)
        });
    }

    /// [`PackedBlock::pack`] one entry at a time, each read from `vals`. The buffers
    /// are sized first and then written in place: no capacity check per entry, and no small
    /// array stored and reloaded whole (which stalls store forwarding). The walk over the
    /// union is `UnionTerms`' own, written out: packed through `UnionTerms::next_term` the
    /// AVX2 forward product measured ~7 % slower.
    ///
    /// # Safety
    /// As for [`UnionTerms::new`]: the entries at the union's set bits are inside `vals`.
    #[inline(always)]
    pub(super) unsafe fn pack_read<V: Read>(&mut self, block: &SparseBlock, vals: V, live: usize) {
        let bits: usize = block.union.iter().map(|w| w.count_ones() as usize).sum();
        self.js.resize(bits, 0);
        self.vals.resize(bits * MAX_BLOCK_ROWS, 0.0);
        let starts: [usize; MAX_BLOCK_ROWS] = std::array::from_fn(|r| block.rows[r]);
        let mut slots = self
            .js
            .iter_mut()
            .zip(self.vals.chunks_exact_mut(MAX_BLOCK_ROWS));
        let mut last_bit = None;
        for (w, &word) in block.union.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let j = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some((slot, four)) = slots.next() else {
                    unreachable!("one slot per set bit")
                };
                // The callers hold the union's bits below 2³² (`SparseBlock::check_entries`,
                // the dW1 step's `check_columns`).
                *slot = j as u32;
                last_bit = Some(j);
                let entry = j * block.step;
                for (v, &start) in four.iter_mut().zip(&starts) {
                    // SAFETY: j is a set bit of the union (the caller's promise).
                    *v = unsafe { vals.read(start + entry) };
                }
            }
        }
        // The bit itself, not its u32 copy: `packed_rows_product` checks the matrix up to it.
        (self.last_bit, self.live) = (last_bit, live);
    }

    /// The packed terms.
    #[inline(always)]
    pub(super) fn terms(&self) -> PackedTerms<'_> {
        PackedTerms(self.js.iter().zip(self.vals.chunks_exact(MAX_BLOCK_ROWS)))
    }
}

/// [`PackedBlock::terms`]: the terms in the order they were packed. Each row's entries are
/// read where they are packed, so that a kernel broadcasts each straight from memory.
pub(super) struct PackedTerms<'a>(
    std::iter::Zip<std::slice::Iter<'a, u32>, std::slice::ChunksExact<'a, f32>>,
);

impl<'a> Terms for PackedTerms<'a> {
    type Row = &'a [f32];

    #[inline(always)]
    fn next_term(&mut self) -> Option<(usize, &'a [f32])> {
        let (&j, four) = self.0.next()?;
        Some((j as usize, four))
    }
}
