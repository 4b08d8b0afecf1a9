//! Bit masks of the non-zero entries of a row: the kernels visit set bits only.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{Entries, fits, has_avx512, has_avx512bw};

/// Words of a bit mask over `len` entries: one bit per entry, 64 to a word.
pub fn mask_words(len: usize) -> usize {
    len.div_ceil(64)
}

/// Sets bit j of `mask` (word j / 64, bit j % 64) exactly when `values[j] != 0`.
/// `mask` must have [`mask_words`]`(values.len())` words.
pub fn nonzero_mask(values: &[f32], mask: &mut [u64]) {
    assert_eq!(
        mask.len(),
        mask_words(values.len()),
        "mask has the wrong number of words"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F; loads are masked to `values`.
        unsafe { nonzero_mask_avx512(values, mask) };
        return;
    }
    nonzero_mask_portable(values, mask);
}

fn nonzero_mask_portable(values: &[f32], mask: &mut [u64]) {
    mask.fill(0);
    for (j, &v) in values.iter().enumerate() {
        mask[j / 64] |= ((v != 0.0) as u64) << (j % 64);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nonzero_mask_avx512(values: &[f32], mask: &mut [u64]) {
    for (w, word) in mask.iter_mut().enumerate() {
        let mut bits = 0u64;
        for q in 0..4 {
            let j = w * 64 + q * 16;
            if j >= values.len() {
                break;
            }
            let left = values.len() - j;
            let lanes: __mmask16 = if left >= 16 {
                0xFFFF
            } else {
                (1u16 << left) - 1
            };
            // SAFETY: the load is masked to the entries of `values` from j on.
            let v = unsafe { _mm512_maskz_loadu_ps(lanes, values.as_ptr().add(j)) };
            bits |= (_mm512_mask_cmpneq_ps_mask(lanes, v, _mm512_setzero_ps()) as u64) << (16 * q);
        }
        *word = bits;
    }
}

/// The bit masks of a row-major `rows × cols` matrix's non-zeros, both ways, in one pass:
/// row r's mask (bit c set when entry `r * cols + c` is non-zero, as [`nonzero_mask`] marks
/// `f32`s) into `row_masks[r * mask_words(cols)..]`, and
/// column c's (bit r, of word r / 64, set exactly when entry `r * cols + c` of `src` is
/// non-zero, see [`Entries::is_nonzero`]) into `column_masks[c * column_stride..]`. With the
/// column masks a kernel can read the columns in place (`SparseBlock::step`), without writing
/// the transpose.
pub fn row_and_column_masks(
    src: Entries,
    rows: usize,
    cols: usize,
    row_masks: &mut [u64],
    column_masks: &mut [u64],
    column_stride: usize,
) {
    let (row_words, column_words) = (mask_words(cols), mask_words(rows));
    assert!(
        fits(src.len(), 0, rows, cols, 0),
        "src is shorter than {rows} × {cols}"
    );
    assert!(
        fits(row_masks.len(), 0, rows, row_words, 0),
        "row_masks is too short"
    );
    assert!(
        column_stride >= column_words
            && (cols == 0 || fits(column_masks.len(), 0, cols - 1, column_stride, column_words)),
        "column_masks is too short"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let out = (&mut *row_masks, &mut *column_masks, column_stride);
        match src {
            Entries::F32(values) if has_avx512() => {
                // SAFETY: the CPU has AVX-512F; the sizes were checked above.
                unsafe { masks_avx512(values, rows, cols, out) };
                return;
            }
            Entries::Bytes { bytes, .. } if has_avx512bw() => {
                // SAFETY: the CPU has AVX-512F and BW; the sizes were checked above.
                unsafe { byte_masks_avx512bw(bytes, rows, cols, out) };
                return;
            }
            _ => {}
        }
    }
    row_masks[..rows * row_words].fill(0);
    for c in 0..cols {
        column_masks[c * column_stride..][..column_words].fill(0);
    }
    for r in 0..rows {
        for c in 0..cols {
            let bit = u64::from(src.is_nonzero(r * cols + c));
            row_masks[r * row_words + c / 64] |= bit << (c % 64);
            column_masks[c * column_stride + r / 64] |= bit << (r % 64);
        }
    }
}

/// For each 64 rows and 16 columns: one compare per row gives the row's 16 bits, stored as
/// they are into the row's mask, and a masked OR sets bit r in the 64-bit lane of each column
/// where the row is non-zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masks_avx512(
    src: &[f32],
    rows: usize,
    cols: usize,
    (row_masks, column_masks, column_stride): (&mut [u64], &mut [u64], usize),
) {
    let row_words = mask_words(cols);
    // Whole words are cleared, since only the 16-bit pieces that hold columns are written.
    row_masks[..rows * row_words].fill(0);
    let pieces = row_masks.as_mut_ptr().cast::<u16>();
    let mut words = [0u64; 16];
    for w in 0..mask_words(rows) {
        for c0 in (0..cols).step_by(16) {
            let left = cols - c0;
            let lanes: __mmask16 = if left >= 16 {
                0xFFFF
            } else {
                (1u16 << left) - 1
            };
            let (mut low, mut high) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for r in w * 64..rows.min(w * 64 + 64) {
                // SAFETY: row r's columns c0.. under `lanes` are inside `src`, and piece
                // c0 / 16 of row r's mask inside `row_masks` (checked by the caller). Pieces
                // are little-endian u16s of the u64 words, as on every x86-64.
                let nonzero = unsafe {
                    let v = _mm512_maskz_loadu_ps(lanes, src.as_ptr().add(r * cols + c0));
                    let nonzero = _mm512_mask_cmpneq_ps_mask(lanes, v, _mm512_setzero_ps());
                    *pieces.add(r * row_words * 4 + c0 / 16) = nonzero;
                    nonzero
                };
                let bit = _mm512_set1_epi64(1 << (r % 64));
                low = _mm512_mask_or_epi64(low, nonzero as u8, low, bit);
                high = _mm512_mask_or_epi64(high, (nonzero >> 8) as u8, high, bit);
            }
            // SAFETY: `words` holds 16 u64.
            unsafe {
                _mm512_storeu_si512(words.as_mut_ptr().cast(), low);
                _mm512_storeu_si512(words.as_mut_ptr().add(8).cast(), high);
            }
            for (k, &word) in words.iter().enumerate().take(left.min(16)) {
                column_masks[(c0 + k) * column_stride + w] = word;
            }
        }
    }
}

/// The masks of bytes, 64 columns at a time: one compare gives a row's 64 bits, which are its
/// mask word as they stand, and bit r goes to the 64 columns' words under eight masked ORs.
/// A quarter of the loads, compares and stores of the 16-column loop above (which `f32`s
/// need, 16 to a register); the ORs are as many.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn byte_masks_avx512bw(
    src: &[u8],
    rows: usize,
    cols: usize,
    (row_masks, column_masks, column_stride): (&mut [u64], &mut [u64], usize),
) {
    let row_words = mask_words(cols);
    let mut words = [0u64; 64];
    for w in 0..mask_words(rows) {
        for c0 in (0..cols).step_by(64) {
            let left = (cols - c0).min(64);
            let lanes: __mmask64 = u64::MAX >> (64 - left);
            let mut columns = [_mm512_setzero_si512(); 8];
            for r in w * 64..rows.min(w * 64 + 64) {
                // SAFETY: row r's columns c0.. under `lanes` are inside `src`, and word c0 / 64
                // of row r's mask inside `row_masks` (checked by the caller). The whole word
                // is written: bits past the columns are 0, as the load is masked.
                let nonzero = unsafe {
                    let v = _mm512_maskz_loadu_epi8(lanes, src.as_ptr().add(r * cols + c0).cast());
                    let nonzero = _mm512_test_epi8_mask(v, v);
                    *row_masks.as_mut_ptr().add(r * row_words + c0 / 64) = nonzero;
                    nonzero
                };
                let bit = _mm512_set1_epi64(1 << (r % 64));
                for (q, lanes) in columns.iter_mut().enumerate() {
                    *lanes = _mm512_mask_or_epi64(*lanes, (nonzero >> (8 * q)) as u8, *lanes, bit);
                }
            }
            for (q, lanes) in columns.iter().enumerate() {
                // SAFETY: `words` holds 64 u64.
                unsafe { _mm512_storeu_si512(words.as_mut_ptr().add(8 * q).cast(), *lanes) };
            }
            for (k, &word) in words.iter().enumerate().take(left) {
                column_masks[(c0 + k) * column_stride + w] = word;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::{masks_of, pseudo_random};

    #[test]
    fn nonzero_mask_marks_exactly_the_non_zero_entries() {
        for len in [0, 1, 15, 16, 17, 64, 65, 100, 784] {
            let row = pseudo_random(len, len as u32 + 1, 2);
            let mut mask = vec![u64::MAX; mask_words(len)];
            nonzero_mask(&row, &mut mask);
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(
                    mask[j / 64] >> (j % 64) & 1 == 1,
                    v != 0.0,
                    "len {len} entry {j}"
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

    /// For `f32`s and for bytes (0 exactly where the `f32`s are 0), on both paths: the byte
    /// path's kernel takes 64 columns at a time, hence the shapes past 64 both ways.
    #[test]
    fn row_and_column_masks_mark_exactly_the_non_zeros_of_each_row_and_column() {
        crate::kernels::test_data::on_both_paths(|| {
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
                let table = std::array::from_fn(|p| p as f32);
                let stride = mask_words(rows) + 1;
                let (row_masks, column_masks) = masks_of(Entries::F32(&src), rows, cols, stride);
                let of_bytes = Entries::Bytes {
                    bytes: &bytes,
                    table: &table,
                };
                assert_eq!(
                    masks_of(of_bytes, rows, cols, stride),
                    (row_masks.clone(), column_masks.clone()),
                    "{rows} × {cols}: bytes"
                );
                let bit =
                    |masks: &[u64], start: usize, j: usize| masks[start + j / 64] >> (j % 64) & 1;
                for r in 0..rows {
                    let start = r * mask_words(cols);
                    for c in 0..mask_words(cols) * 64 {
                        let expected = c < cols && src[r * cols + c] != 0.0;
                        assert_eq!(
                            bit(&row_masks, start, c),
                            u64::from(expected),
                            "{rows} × {cols}, row {r}, bit {c}"
                        );
                    }
                }
                for c in 0..cols {
                    for r in 0..mask_words(rows) * 64 {
                        let expected = r < rows && src[r * cols + c] != 0.0;
                        assert_eq!(
                            bit(&column_masks, c * stride, r),
                            u64::from(expected),
                            "{rows} × {cols}, column {c}, bit {r}"
                        );
                    }
                }
            }
        });
    }
}
