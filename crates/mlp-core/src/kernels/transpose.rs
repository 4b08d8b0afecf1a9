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
    assert!(c0 <= c1 && c1 <= cols && src.len() >= rows * cols && dst_stride >= rows);
    assert!(c1 == c0 || dst.len() >= (c1 - c0 - 1) * dst_stride + rows);
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
            unsafe {
                transpose_tile_avx512(
                    src.as_ptr().add(r * cols + c),
                    cols,
                    dst.as_mut_ptr().add((c - c0) * dst_stride + r),
                    dst_stride,
                )
            };
        }
    }
    let mut scalar = |rs: std::ops::Range<usize>, cs: std::ops::Range<usize>| {
        for r in rs {
            for c in cs.clone() {
                dst[(c - c0) * dst_stride + r] = src[r * cols + c];
            }
        }
    };
    scalar(0..full_rows, c0 + full_cols..c1);
    scalar(full_rows..rows, c0..c1);
}

/// Transposes one 16 × 16 tile in registers: unpack pairs of rows, shuffle 2×2 blocks inside
/// 128-bit lanes, then move 128-bit lanes twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_tile_avx512(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
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
        for i in 0..16 {
            let (a, b) = (v[i % 8], v[i % 8 + 8]);
            let row = if i < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            };
            _mm512_storeu_ps(dst.add(i * dst_stride), row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_columns_swaps_rows_and_columns() {
        crate::kernels::test_data::on_both_paths(check_transpose);
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
