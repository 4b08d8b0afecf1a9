//! Bit masks of the non-zero entries of rows and of columns: the kernels visit set bits only.
//!
//! Masks are exact (a bit is set or not), so every level gives the same ones by construction;
//! the tests still hold each to the definition.

use fearless_simd::{Simd, SimdBase, SimdMask, f32x16, u8x64};

use super::{Entries, fits};

/// Words of a bit mask over `len` entries: one bit per entry, 64 to a word.
pub fn mask_words(len: usize) -> usize {
    len.div_ceil(64)
}

/// Sets bit j of `mask` (word j / 64, bit j % 64) exactly when `values[j] != 0` (−0.0 is a
/// zero, NaN is not). `mask` must have [`mask_words`]`(values.len())` words.
#[inline(always)]
pub fn nonzero_mask<S: Simd>(simd: S, values: &[f32], mask: &mut [u64]) {
    assert_eq!(
        mask.len(),
        mask_words(values.len()),
        "mask has the wrong number of words"
    );
    for (word, chunk) in mask.iter_mut().zip(values.chunks(64)) {
        let mut bits = 0u64;
        for (q, sixteen) in chunk.chunks(16).enumerate() {
            let v = if sixteen.len() == 16 {
                f32x16::from_slice(simd, sixteen)
            } else {
                let mut padded = [0.0f32; 16];
                padded[..sixteen.len()].copy_from_slice(sixteen);
                f32x16::from_slice(simd, &padded)
            };
            bits |= v.simd_ne(0.0).to_bitmask() << (16 * q);
        }
        *word = bits;
    }
}

/// Sets bit j of `mask` exactly when `bytes[j] != 0`, 64 bytes to a word.
#[inline(always)]
fn nonzero_byte_mask<S: Simd>(simd: S, bytes: &[u8], mask: &mut [u64]) {
    for (word, chunk) in mask.iter_mut().zip(bytes.chunks(64)) {
        let v = if chunk.len() == 64 {
            u8x64::from_slice(simd, chunk)
        } else {
            let mut padded = [0u8; 64];
            padded[..chunk.len()].copy_from_slice(chunk);
            u8x64::from_slice(simd, &padded)
        };
        *word = v.simd_ne(0).to_bitmask();
    }
}

/// Row r's mask of a row-major `rows × cols` matrix's non-zeros (bit c set when entry
/// `r * cols + c` is non-zero, see [`Entries::is_nonzero`]) into
/// `row_masks[r * mask_words(cols)..]`: the first half of [`row_and_column_masks`], alone
/// for passes that read rows only (inference).
#[inline(always)]
pub fn row_masks<S: Simd>(simd: S, src: Entries, rows: usize, cols: usize, row_masks: &mut [u64]) {
    let row_words = mask_words(cols);
    assert!(
        fits(src.len(), 0, rows, cols, 0),
        "src is shorter than {rows} × {cols}"
    );
    assert!(
        fits(row_masks.len(), 0, rows, row_words, 0),
        "row_masks is too short"
    );
    if cols == 0 {
        return;
    }
    for (r, mask) in row_masks[..rows * row_words]
        .chunks_exact_mut(row_words)
        .enumerate()
    {
        match src {
            Entries::F32(values) => nonzero_mask(simd, &values[r * cols..][..cols], mask),
            Entries::Bytes { bytes, .. } => {
                nonzero_byte_mask(simd, &bytes[r * cols..][..cols], mask)
            }
        }
    }
}

/// The bit masks of a row-major `rows × cols` matrix's non-zeros, both ways:
/// row r's mask (bit c set when entry `r * cols + c` is non-zero, see
/// [`Entries::is_nonzero`]) into `row_masks[r * mask_words(cols)..]`, and column c's (bit r,
/// of word r / 64) into `column_masks[c * column_stride..]`. With the column masks a kernel
/// can read the columns in place (`SparseBlock::step`), without writing the transpose.
///
/// The column masks are the row masks transposed, 64 rows × 64 columns of bits at a time.
#[inline(always)]
pub fn row_and_column_masks<S: Simd>(
    simd: S,
    src: Entries,
    rows: usize,
    cols: usize,
    row_masks: &mut [u64],
    column_masks: &mut [u64],
    column_stride: usize,
) {
    let (row_words, column_words) = (mask_words(cols), mask_words(rows));
    assert!(
        column_stride >= column_words
            && (cols == 0 || fits(column_masks.len(), 0, cols - 1, column_stride, column_words)),
        "column_masks is too short"
    );
    // The row masks first (which checks `src` and `row_masks`), then their transpose.
    self::row_masks(simd, src, rows, cols, row_masks);
    if cols == 0 {
        return;
    }
    let mut block = [0u64; 64];
    for w in 0..column_words {
        let group = w * 64..rows.min(w * 64 + 64);
        for q in 0..row_words {
            block.fill(0);
            for (i, r) in group.clone().enumerate() {
                block[i] = row_masks[r * row_words + q];
            }
            transpose_bits(&mut block);
            for (k, &word) in block.iter().enumerate().take(cols - 64 * q) {
                column_masks[(64 * q + k) * column_stride + w] = word;
            }
        }
    }
}

/// Transposes a 64 × 64 matrix of bits in place (bit k of word i ↔ bit i of word k): six
/// rounds, each swapping the off-diagonal halves of every 2j × 2j block (Hacker's Delight,
/// 7–3).
#[inline(always)]
fn transpose_bits(b: &mut [u64; 64]) {
    let (mut j, mut low) = (32, 0x0000_0000_FFFF_FFFFu64);
    while j != 0 {
        for base in (0..64).step_by(2 * j) {
            for i in base..base + j {
                // Row i's high j columns of the block swap with row i + j's low ones.
                let t = ((b[i] >> j) ^ b[i + j]) & low;
                b[i + j] ^= t;
                b[i] ^= t << j;
            }
        }
        j >>= 1;
        low ^= low << j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::{masks_of, on_every_level, pseudo_random};

    #[test]
    fn nonzero_mask_marks_exactly_the_non_zero_entries() {
        on_every_level(
            |level, name| fearless_simd::dispatch!(level, s => check_nonzero_mask(s, name)),
        );
    }

    fn check_nonzero_mask<S: Simd>(simd: S, level: &str) {
        for len in [0, 1, 15, 16, 17, 64, 65, 100, 784] {
            let row = pseudo_random(len, len as u32 + 1, 2);
            let mut mask = vec![u64::MAX; mask_words(len)];
            nonzero_mask(simd, &row, &mut mask);
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(
                    mask[j / 64] >> (j % 64) & 1 == 1,
                    v != 0.0,
                    "{level}: len {len} entry {j}"
                );
            }
            if len % 64 != 0 {
                assert_eq!(
                    mask[len / 64] >> (len % 64),
                    0,
                    "bits past the end are clear"
                );
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // i and k index both matrices, crosswise
    fn transposing_bits_twice_gives_them_back_and_moves_each_bit_across() {
        let mut b: [u64; 64] =
            std::array::from_fn(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let original = b;
        transpose_bits(&mut b);
        for i in 0..64 {
            for k in 0..64 {
                assert_eq!(b[k] >> i & 1, original[i] >> k & 1, "bit ({i}, {k})");
            }
        }
        transpose_bits(&mut b);
        assert_eq!(b, original);
    }

    /// For `f32`s and for bytes (0 exactly where the `f32`s are 0), on every level: rows and
    /// columns past 64 both ways, and groups of fewer than 64 rows.
    #[test]
    fn row_and_column_masks_mark_exactly_the_non_zeros_of_each_row_and_column() {
        on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_masks(s, name)));
    }

    fn check_masks<S: Simd>(simd: S, level: &str) {
        {
            for (rows, cols) in [
                (0, 5),
                (5, 0),
                (1, 1),
                (32, 784),
                (33, 17),
                (64, 16),
                (64, 128),
                (65, 30),
                (130, 7),
                (130, 200),
            ] {
                let mut src = pseudo_random(rows * cols, (rows * cols) as u32 + 1, 2);
                // -0.0 is a zero and NaN is not (as `v != 0.0` says).
                for (k, v) in src.iter_mut().enumerate() {
                    match k % 7 {
                        3 => *v = -0.0,
                        5 if k % 3 == 0 => *v = f32::NAN,
                        _ => {}
                    }
                }
                let bytes: Vec<u8> = src.iter().map(|&v| u8::from(v != 0.0)).collect();
                let table = crate::kernels::ByteTable::new(std::array::from_fn(|p| p as f32));
                let stride = mask_words(rows) + 1;
                let (row_masks, column_masks) =
                    masks_of(simd, Entries::F32(&src), rows, cols, stride);
                let of_bytes = Entries::Bytes {
                    bytes: &bytes,
                    table: &table,
                };
                assert_eq!(
                    masks_of(simd, of_bytes, rows, cols, stride),
                    (row_masks.clone(), column_masks.clone()),
                    "{level}, {rows} × {cols}: bytes"
                );
                for entries in [Entries::F32(&src), of_bytes] {
                    let mut alone = vec![u64::MAX; rows * mask_words(cols)];
                    super::row_masks(simd, entries, rows, cols, &mut alone);
                    assert_eq!(
                        alone, row_masks,
                        "{level}, {rows} × {cols}: row masks alone"
                    );
                }
                let bit =
                    |masks: &[u64], start: usize, j: usize| masks[start + j / 64] >> (j % 64) & 1;
                for r in 0..rows {
                    let start = r * mask_words(cols);
                    for c in 0..mask_words(cols) * 64 {
                        let expected = c < cols && src[r * cols + c] != 0.0;
                        assert_eq!(
                            bit(&row_masks, start, c),
                            u64::from(expected),
                            "{level}, {rows} × {cols}, row {r}, bit {c}"
                        );
                    }
                }
                for c in 0..cols {
                    for r in 0..mask_words(rows) * 64 {
                        let expected = r < rows && src[r * cols + c] != 0.0;
                        assert_eq!(
                            bit(&column_masks, c * stride, r),
                            u64::from(expected),
                            "{level}, {rows} × {cols}, column {c}, bit {r}"
                        );
                    }
                }
            }
        }
    }
}
