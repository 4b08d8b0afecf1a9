//! A block's terms packed from byte entries with vector instructions, on the levels with
//! a fused multiply-add (the others pack one entry at a time, `terms.rs`): the bytes widened
//! to `f32` and converted by their table's formula
//! ([`ByteTable::quotients`](super::ByteTable::quotients)), many at a time, where the
//! scalar packing reads each byte and then its table entry (two dependent loads and a store
//! per entry: 10–18 % of the AVX2 step on one and two threads, measured). The same terms,
//! the same bits (the formula is kept only where it gives the table's bits for every byte).
//!
//! Blocks of rows of an image only (the forward pass and evaluation: entries 1 apart): 16
//! pixels of each of the four rows are loaded at once, interleaved so that each pixel's
//! four bytes are one 32-bit lane, and the lanes of the union's set bits left-packed
//! (`compress`). The dW1 step's blocks of four adjacent pixel columns were packed this way
//! too, a 32-bit load of a term's four bytes widened and converted: no quicker than the
//! table (`cargo bench -p mlp-train --bench step -- packing`: 23.1 µs a batch against
//! 21.4, on a Zen 3), so they keep the table.

use fearless_simd::{Bytes, Level, Simd, SimdBase, SimdFloat, f32x8, i32x8};
use fearless_simd::{u8x16, u16x8, u32x4, u32x8};

use super::MAX_BLOCK_ROWS;
use super::entries::Quotient;

/// Terms a packer may write past the last (whole vectors): the buffers it writes have room
/// for this many more.
pub(super) const SLACK_TERMS: usize = 8;

/// Whether `simd` multiplies and adds in one instruction (AVX2, AVX-512, NEON), which the
/// formula needs to be quicker than the table (elsewhere fearless_simd emulates it).
#[inline(always)]
pub(super) fn has_fma<S: Simd>(simd: S) -> bool {
    match simd.level() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Level::Avx2(_) | Level::Avx512(_) => true,
        #[cfg(target_arch = "aarch64")]
        Level::Neon(_) => true,
        _ => false,
    }
}

/// `quotient` of each lane of `v` (bytes converted to `f32`), as [`Quotient::of`].
#[inline(always)]
fn apply8<S: Simd>(simd: S, v: f32x8<S>, q: Quotient) -> f32x8<S> {
    let (hi, lo, scale) = (f32x8::splat(simd, q.hi), f32x8::splat(simd, q.lo), q.scale);
    v.mul_add_precise(hi, v * lo) * f32x8::splat(simd, scale)
}

/// Four terms' entries, each lane of `quads` one term's four bytes (row r's in byte r), as
/// 16 values into `out`, term by term.
#[inline(always)]
fn store_quads<S: Simd>(simd: S, quads: u32x4<S>, q: Quotient, out: &mut [f32]) {
    let (low, high) = simd.widen_u8x16(quads.bitcast::<u8x16<S>>());
    for (half, words) in [low, high].into_iter().enumerate() {
        let (a, b) = simd.widen_u16x8(words);
        let ints: i32x8<S> = simd.combine_u32x4(a, b).bitcast();
        let v = apply8(simd, simd.cvt_f32_i32x8(ints), q);
        v.store_slice(&mut out[8 * half..8 * half + 8]);
    }
}

/// Packs the terms of four rows of bytes, entries 1 apart, starting at `starts` in `bytes`,
/// over the set bits of `union`: the t-th set bit j into `js[t]` and the rows' entries there
/// into `vals[4t..4t + 4]`. Returns the number of terms. The buffers have room for
/// [`SLACK_TERMS`] more terms than `union` has bits; every row is as long as `union` says
/// (panics otherwise).
#[inline(always)]
pub(super) fn pack_byte_rows<S: Simd>(
    simd: S,
    (bytes, q): (&[u8], Quotient),
    starts: &[usize; MAX_BLOCK_ROWS],
    union: &[u64],
    (js, vals): (&mut [u32], &mut [f32]),
) -> usize {
    let mut t = 0;
    for (w, &word) in union.iter().enumerate() {
        for sixteen in 0..4 {
            let bits = (word >> (16 * sixteen)) as u16;
            if bits == 0 {
                continue;
            }
            let p = 64 * w + 16 * sixteen;
            let rows = starts.map(|s| bytes.get(s + p..s + p + 16));
            if let [Some(r0), Some(r1), Some(r2), Some(r3)] = rows {
                let load = |r| u8x16::from_slice(simd, r);
                let rows = [load(r0), load(r1), load(r2), load(r3)];
                t = pack_sixteen(simd, rows, (p, bits), q, t, (&mut *js, &mut *vals));
            } else {
                // A row ends inside these 16 pixels: one term at a time.
                let mut bits = bits;
                while bits != 0 {
                    let j = p + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    js[t] = j as u32;
                    for (v, &s) in vals[4 * t..4 * t + 4].iter_mut().zip(starts) {
                        *v = q.of(bytes[s + j]);
                    }
                    t += 1;
                }
            }
        }
    }
    t
}

/// The terms of pixels `p..p + 16` of the four `rows` (16 bytes each) at the set bits of
/// `bits`, packed from term `t` on; returns the next term.
#[inline(always)]
fn pack_sixteen<S: Simd>(
    simd: S,
    [r0, r1, r2, r3]: [u8x16<S>; 4],
    (p, bits): (usize, u16),
    q: Quotient,
    t: usize,
    (js, vals): (&mut [u32], &mut [f32]),
) -> usize {
    // Byte r of pixel k's 32-bit lane is row r's: pixels 0–3, 4–7, 8–11, 12–15.
    let (l01, h01) = simd.interleave_u8x16(r0, r1);
    let (l23, h23) = simd.interleave_u8x16(r2, r3);
    let u16s = |v: u8x16<S>| v.bitcast::<u16x8<S>>();
    let (q0, q1) = simd.interleave_u16x8(u16s(l01), u16s(l23));
    let (q2, q3) = simd.interleave_u16x8(u16s(h01), u16s(h23));
    // Two calls rather than a loop over an array of the halves: looped over, the four
    // vectors went through the stack and were loaded back as two, which stalled store
    // forwarding (a quarter of the packing's time).
    let quads = |a: u16x8<S>, b: u16x8<S>| (a.bitcast(), b.bitcast());
    let t = pack_eight(
        simd,
        quads(q0, q1),
        (p, bits as u8),
        q,
        t,
        (&mut *js, &mut *vals),
    );
    pack_eight(
        simd,
        quads(q2, q3),
        (p + 8, (bits >> 8) as u8),
        q,
        t,
        (js, vals),
    )
}

/// The terms of pixels `p..p + 8`, their quads in `a` (the first four) and `b`, at the set
/// bits of `bits`, packed from term `t` on; returns the next term.
#[inline(always)]
fn pack_eight<S: Simd>(
    simd: S,
    (a, b): (u32x4<S>, u32x4<S>),
    (p, bits): (usize, u8),
    q: Quotient,
    t: usize,
    (js, vals): (&mut [u32], &mut [f32]),
) -> usize {
    if bits == 0 {
        return t;
    }
    let mask = simd.from_bitmask_mask32x8(u64::from(bits));
    let quads = simd.compress_u32x8(simd.combine_u32x4(a, b), mask);
    let iota = u32x8::from_slice(simd, &[0, 1, 2, 3, 4, 5, 6, 7]);
    let j = iota + u32x8::splat(simd, p as u32);
    simd.compress_u32x8(j, mask).store_slice(&mut js[t..t + 8]);
    let (first, second) = simd.split_u32x8(quads);
    store_quads(simd, first, q, &mut vals[4 * t..4 * t + 16]);
    let n = bits.count_ones() as usize;
    if n > 4 {
        store_quads(simd, second, q, &mut vals[4 * t + 16..4 * t + 32]);
    }
    t + n
}

#[cfg(test)]
mod tests {
    use crate::kernels::entries::ReadBytes;
    use crate::kernels::test_data::{masks_of, on_every_level, pseudo_random};
    use crate::kernels::{ByteTable, Entries, MAX_BLOCK_ROWS, PackedBlock, Panels, SparseBlock};
    use fearless_simd::Simd;

    /// A block's packed terms as bits: each set bit and its four entries.
    type TermBits = Vec<(usize, Vec<u32>)>;

    /// [`TermBits`] of a packed block, then its last bit and its live rows.
    fn packed_bits(packed: &PackedBlock) -> (TermBits, Option<usize>, usize) {
        let mut terms = packed.terms();
        let mut all = Vec::new();
        while let Some((j, four)) = super::super::terms::Terms::next_term(&mut terms) {
            all.push((j, four.iter().map(|v| v.to_bits()).collect()));
        }
        (all, packed.last_bit(), packed.live())
    }

    #[test]
    fn quotients_of_255_keep_their_formula_and_the_divisions_bits() {
        for scale in [1.0, 1.0 / 0.9, 1.0 / 0.8, 2.0] {
            let table = ByteTable::quotients(255.0, scale);
            assert!(table.quotient().is_some(), "scale {scale}");
            for b in 0..=255u8 {
                let division = f32::from(b) / 255.0 * scale;
                assert_eq!(table.values()[usize::from(b)].to_bits(), division.to_bits());
            }
        }
        assert_eq!(ByteTable::new([0.0; 256]).quotient(), None);
    }

    /// Blocks of rows (entries 1 apart, rows whose ends fall inside 16 pixels and at a
    /// buffer's end), packed with vectors where the level has them, and of four adjacent
    /// columns, against the same blocks packed one entry at a time through the table.
    #[test]
    fn vector_packing_gives_the_terms_of_the_table() {
        on_every_level(|level, name| fearless_simd::dispatch!(level, s => check(s, name)));
    }

    fn check<S: Simd>(simd: S, level: &str) {
        for (rows, cols) in [(64, 784), (9, 30), (70, 17), (5, 64)] {
            let bytes: Vec<u8> = pseudo_random(rows * cols, (rows * cols) as u32, 2)
                .iter()
                .map(|&v| {
                    if v == 0.0 {
                        0
                    } else {
                        (v.abs() * 254.0) as u8 + 1
                    }
                })
                .collect();
            for scale in [1.0, 1.0 / 0.7] {
                let table = ByteTable::quotients(255.0, scale);
                let vals = Entries::Bytes {
                    bytes: &bytes,
                    table: &table,
                };
                let read = ReadBytes {
                    bytes: &bytes,
                    table: table.values(),
                };
                let (row_masks, column_masks) = masks_of(simd, vals, rows, cols, 2);
                let row_words = crate::kernels::mask_words(cols);
                let pack = |starts: [usize; MAX_BLOCK_ROWS], step: usize, union: &[u64]| {
                    let block = SparseBlock {
                        vals,
                        rows: &starts,
                        step,
                        union,
                        m: &[],
                        layout: Panels::row_major(0),
                    };
                    let (mut fast, mut one_by_one) =
                        (PackedBlock::default(), PackedBlock::default());
                    fast.pack_block(simd, &block);
                    // SAFETY: `pack_block` checked the block's entries (it panics otherwise).
                    unsafe { one_by_one.pack_read(&block, read, MAX_BLOCK_ROWS) };
                    assert_eq!(
                        packed_bits(&fast),
                        packed_bits(&one_by_one),
                        "{level}, {rows} × {cols}, scale {scale}, rows {starts:?} step {step}"
                    );
                };
                // Rows, the last of the matrix among them (its end is the buffer's).
                for group in [[0, 1, 2, 3], [rows - 1, 2, 0, rows - 2], [3, 3, 3, 3]] {
                    let mut union = vec![0u64; row_words];
                    for &r in &group {
                        let mask = &row_masks[r * row_words..][..row_words];
                        union.iter_mut().zip(mask).for_each(|(u, m)| *u |= m);
                    }
                    pack(group.map(|r| r * cols), 1, &union);
                }
                // Four adjacent columns, read as rows a matrix row apart.
                for p0 in (0..cols.saturating_sub(3)).step_by(5) {
                    let words = crate::kernels::mask_words(rows);
                    let mut union = vec![0u64; words];
                    for p in p0..p0 + 4 {
                        let mask = &column_masks[p * 2..][..words];
                        union.iter_mut().zip(mask).for_each(|(u, m)| *u |= m);
                    }
                    pack(std::array::from_fn(|q| p0 + q), cols, &union);
                }
            }
        }
    }
}
