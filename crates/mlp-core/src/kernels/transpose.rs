//! Transposing the batch, so the backward pass can read it pixel by pixel.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::has_avx512;

/// Transposes columns `c0..c1` of the row-major `rows × cols` matrix `src`: row `c - c0` of
/// `dst` (rows `dst_stride` apart) receives column `c`.
pub fn transpose_columns(
    src: &[f32],
    rows: usize,
    cols: usize,
    c0: usize,
    c1: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    transpose(src, rows, cols, c0..c1, dst, dst_stride, None);
}

/// [`transpose_columns`] of all columns, also writing the bit mask of each destination row's
/// non-zeros (as [`super::nonzero_mask`] would) into `masks`, rows `mask_stride` words apart:
/// the masks come from the registers being stored, for the price of a compare.
pub fn transpose_with_masks(
    src: &[f32],
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
    masks: &mut [u64],
    mask_stride: usize,
) {
    let words = super::mask_words(rows);
    assert!(mask_stride >= words && (cols == 0 || masks.len() >= (cols - 1) * mask_stride + words));
    transpose(
        src,
        rows,
        cols,
        0..cols,
        dst,
        dst_stride,
        Some((masks, mask_stride)),
    );
}

fn transpose(
    src: &[f32],
    rows: usize,
    cols: usize,
    columns: std::ops::Range<usize>,
    dst: &mut [f32],
    dst_stride: usize,
    mut masks: Option<(&mut [u64], usize)>,
) {
    let (c0, c1) = (columns.start, columns.end);
    assert!(c0 <= c1 && c1 <= cols && src.len() >= rows * cols && dst_stride >= rows);
    assert!(c1 == c0 || dst.len() >= (c1 - c0 - 1) * dst_stride + rows);
    let words = super::mask_words(rows);
    if let Some((masks, stride)) = masks.as_mut() {
        for c in 0..c1 - c0 {
            masks[c * *stride..][..words].fill(0);
        }
    }
    // Whole 16 × 16 tiles with AVX-512 register transposes, the edges element by element.
    let (full_rows, full_cols) = if has_avx512() {
        (rows / 16 * 16, (c1 - c0) / 16 * 16)
    } else {
        (0, 0)
    };
    #[cfg(target_arch = "x86_64")]
    for r in (0..full_rows).step_by(16) {
        for c in (c0..c0 + full_cols).step_by(16) {
            // SAFETY: AVX-512F is present (full_rows is 0 otherwise); the tile's 16 rows of 16
            // columns lie inside `src` and its 16 destination rows inside `dst` (checked above).
            let tile_masks = unsafe {
                transpose_tile_avx512(
                    src.as_ptr().add(r * cols + c),
                    cols,
                    dst.as_mut_ptr().add((c - c0) * dst_stride + r),
                    dst_stride,
                )
            };
            if let Some((masks, stride)) = masks.as_mut() {
                // r is a multiple of 16, so the tile's 16 bits share one word.
                for (i, m) in tile_masks.into_iter().enumerate() {
                    masks[(c - c0 + i) * *stride + r / 64] |= u64::from(m) << (r % 64);
                }
            }
        }
    }
    let mut scalar = |rs: std::ops::Range<usize>, cs: std::ops::Range<usize>| {
        for r in rs {
            for c in cs.clone() {
                let v = src[r * cols + c];
                dst[(c - c0) * dst_stride + r] = v;
                if let Some((masks, stride)) = masks.as_mut() {
                    masks[(c - c0) * *stride + r / 64] |= u64::from(v != 0.0) << (r % 64);
                }
            }
        }
    };
    scalar(0..full_rows, c0 + full_cols..c1);
    scalar(full_rows..rows, c0..c1);
}

/// Transposes one 16 × 16 tile in registers: unpack pairs of rows, shuffle 2×2 blocks inside
/// 128-bit lanes, then move 128-bit lanes twice. Returns the masks of the non-zeros of the 16
/// rows stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_tile_avx512(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
) -> [u16; 16] {
    // SAFETY: the caller guarantees 16 rows of 16 floats at `src` and at `dst`.
    unsafe {
        let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(i * src_stride)));
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // u[4q + k]: from t[4q + {0, 2}] (k even) or t[4q + {1, 3}] (k odd), low or high pairs.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (q, k) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + k / 2], t[4 * q + k / 2 + 2]);
            if k % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(a, b)
            } else {
                _mm512_shuffle_ps::<0xEE>(a, b)
            }
        });
        let v: [__m512; 16] = std::array::from_fn(|i| {
            let (h, k) = (i / 8, i % 8);
            let (a, b) = (u[8 * h + k % 4], u[8 * h + k % 4 + 4]);
            if k < 4 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            }
        });
        std::array::from_fn(|i| {
            let (a, b) = (v[i % 8], v[i % 8 + 8]);
            let row = if i < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            };
            _mm512_storeu_ps(dst.add(i * dst_stride), row);
            _mm512_cmpneq_ps_mask(row, _mm512_setzero_ps())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_columns_swaps_rows_and_columns() {
        crate::kernels::test_data::on_both_paths(check_transpose);
    }

    #[test]
    fn transpose_with_masks_marks_the_non_zeros_of_each_destination_row() {
        crate::kernels::test_data::on_both_paths(check_masks);
    }

    fn check_masks() {
        use crate::kernels::{mask_words, nonzero_mask};
        for (rows, cols, stride, mask_stride) in [
            (32, 784, 32, 1),
            (19, 37, 23, 2),
            (64, 48, 64, 1),
            (100, 17, 100, 3),
        ] {
            // Zeros in a pattern that differs from row to row and column to column.
            let src: Vec<f32> = (0..rows * cols)
                .map(|v| {
                    if v % 3 == 0 || v % 7 == 2 {
                        0.0
                    } else {
                        v as f32
                    }
                })
                .collect();
            let mut dst = vec![-1.0; cols * stride];
            let mut masks = vec![u64::MAX; cols * mask_stride];
            transpose_with_masks(&src, rows, cols, &mut dst, stride, &mut masks, mask_stride);
            for c in 0..cols {
                let mut want = vec![0; mask_words(rows)];
                nonzero_mask(&dst[c * stride..][..rows], &mut want);
                assert_eq!(
                    &masks[c * mask_stride..][..want.len()],
                    want,
                    "{rows}×{cols}, column {c}"
                );
                for r in 0..rows {
                    assert_eq!(dst[c * stride + r], src[r * cols + c]);
                }
            }
        }
    }

    fn check_transpose() {
        for (rows, cols, stride, c0, c1) in [
            (19, 37, 23, 5, 30),
            (64, 784, 64, 392, 784),
            (48, 100, 50, 0, 100),
            (16, 16, 16, 0, 16),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![-1.0; (c1 - c0) * stride];
            transpose_columns(&src, rows, cols, c0, c1, &mut dst, stride);
            for r in 0..rows {
                for c in c0..c1 {
                    assert_eq!(
                        dst[(c - c0) * stride + r],
                        src[r * cols + c],
                        "{rows}×{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
