//! Hot loops of the optimised training step, with AVX-512 versions chosen at run time and
//! portable fallbacks that compute the same thing.
//!
//! Fashion-MNIST images are half background: 49.8 % of pixels are exactly 0. So instead of the
//! dense products x·W1 and xᵀ·dz1, the optimised step multiplies with the *non-zero entries*
//! only. Both products become the same operation, sparse rows times a dense matrix,
//! [`masked_rows_product`]:
//! ```text
//! forward,  example i:  z1[i, :]  = b1      + Σ_{p: x[i,p] ≠ 0} x[i,p] · W1[p, :]
//! backward, pixel p:    dW1[p, :] =           Σ_{i: x[i,p] ≠ 0} x[i,p] · dz1[i, :]
//! ```
//! A sparse vector is its dense values plus a bit mask of the non-zeros ([`nonzero_mask`]);
//! the kernels visit set bits only. [`transpose_columns`] turns the batch's rows into
//! per-pixel rows for the backward product.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the AVX-512 kernels can run on this CPU (checked once, then cached by std).
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

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

/// Sparse rows times a dense matrix, several rows at a time:
/// `out[r][k] += Σ_{j: bit j of union set} vals[r][j] · m[j][k]` for rows `r < rows`
/// (at most [`MAX_BLOCK_ROWS`]) and columns `k < width`, where row r of `vals` starts at
/// `r * vals_stride`, row j of `m` at `j * ld` and row r of `out` at `r * out_stride`.
///
/// `union` is the OR of the rows' non-zero masks ([`nonzero_mask`]). Only the rows of `m` its
/// bits name are read, and each is used for every row of the block: reading rows of `m` is
/// what limits a one-row product (each is fetched from L2 cache for two flops per float), so
/// sharing each read between four rows is worth the few zeros multiplied along the way.
///
/// Panics if any index it would use falls outside the slices.
#[allow(clippy::too_many_arguments)]
pub fn masked_rows_product(
    vals: &[f32],
    rows: usize,
    vals_stride: usize,
    union: &[u64],
    m: &[f32],
    ld: usize,
    out: &mut [f32],
    out_stride: usize,
    width: usize,
) {
    assert!(
        rows <= MAX_BLOCK_ROWS,
        "at most {MAX_BLOCK_ROWS} rows at a time"
    );
    if rows == 0 || width == 0 {
        return;
    }
    assert!(
        width <= ld && width <= out_stride,
        "{width} columns requested from rows of {ld} into rows of {out_stride}"
    );
    assert!(
        out.len() >= (rows - 1) * out_stride + width,
        "out is too short"
    );
    let last = union
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize);
    if let Some(j) = last {
        assert!(
            j < vals_stride && vals.len() > (rows - 1) * vals_stride + j,
            "vals is too short for bit {j}"
        );
        assert!(j * ld + width <= m.len(), "row {j} is outside the matrix");
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for c0 in (0..width).step_by(64) {
            let cols = (width - c0).min(64);
            // SAFETY: AVX-512F is present; every index was checked above.
            unsafe {
                let (m, out) = (m.as_ptr().add(c0), out.as_mut_ptr().add(c0));
                rows_block_avx512(
                    vals.as_ptr(),
                    rows,
                    vals_stride,
                    union,
                    m,
                    ld,
                    out,
                    out_stride,
                    cols,
                );
            }
        }
        return;
    }
    masked_rows_product_portable(
        vals,
        rows,
        vals_stride,
        union,
        m,
        ld,
        out,
        out_stride,
        width,
    );
}

/// Largest block of rows [`masked_rows_product`] takes at once (4 rows × 4 registers of
/// accumulators, plus the 4 registers of the matrix row, fit the 32 AVX-512 registers).
pub const MAX_BLOCK_ROWS: usize = 4;

#[allow(clippy::too_many_arguments)]
fn masked_rows_product_portable(
    vals: &[f32],
    rows: usize,
    vals_stride: usize,
    union: &[u64],
    m: &[f32],
    ld: usize,
    out: &mut [f32],
    out_stride: usize,
    width: usize,
) {
    for (w, &word) in union.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let j = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let m_row = &m[j * ld..][..width];
            for r in 0..rows {
                let v = vals[r * vals_stride + j];
                for (o, &x) in out[r * out_stride..][..width].iter_mut().zip(m_row) {
                    *o += v * x;
                }
            }
        }
    }
}

/// Dispatches to the instantiation for `rows` rows and ⌈cols / 16⌉ registers (cols ≤ 64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_block_avx512(
    vals: *const f32,
    rows: usize,
    vs: usize,
    union: &[u64],
    m: *const f32,
    ld: usize,
    out: *mut f32,
    os: usize,
    cols: usize,
) {
    macro_rules! dispatch {
        ($($r:literal, $n:literal);*) => {
            match (rows, cols.div_ceil(16)) {
                $(($r, $n) => rows_block_n::<$r, $n>(vals, vs, union, m, ld, out, os, cols),)*
                _ => unreachable!("rows ≤ 4 and cols ≤ 64 are checked by the caller"),
            }
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        dispatch!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 3, 1; 3, 2; 3, 3; 3, 4; 4, 1; 4, 2; 4, 3; 4, 4)
    }
}

/// R rows × N registers of accumulators; the matrix row's N registers are loaded once per
/// set bit and used by all R rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)] // r and k index several arrays in step
unsafe fn rows_block_n<const R: usize, const N: usize>(
    vals: *const f32,
    vs: usize,
    union: &[u64],
    m: *const f32,
    ld: usize,
    out: *mut f32,
    os: usize,
    cols: usize,
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
        for (w, &word) in union.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let j = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let row = m.add(j * ld);
                let mut m_j = [_mm512_setzero_ps(); N];
                for k in 0..N {
                    m_j[k] = _mm512_maskz_loadu_ps(lanes(k), row.add(16 * k));
                }
                for r in 0..R {
                    let v = _mm512_set1_ps(*vals.add(r * vs + j));
                    for k in 0..N {
                        acc[r][k] = _mm512_fmadd_ps(v, m_j[k], acc[r][k]);
                    }
                }
            }
        }
        for r in 0..R {
            for k in 0..N {
                let dst = out.add(r * os + 16 * k);
                _mm512_mask_storeu_ps(
                    dst,
                    lanes(k),
                    _mm512_add_ps(acc[r][k], _mm512_maskz_loadu_ps(lanes(k), dst)),
                );
            }
        }
    }
}

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

/// `Σ a[k]·b[k]`, accumulated in 16 independent lanes so that the compiler can vectorise it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// y += alpha · x.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `Σ v[k]²`, in 16 lanes like [`dot`].
#[inline]
pub fn sum_of_squares(v: &[f32]) -> f32 {
    dot(v, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u32, zero_every: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(747796405).wrapping_add(2891336453);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                if s.is_multiple_of(zero_every) {
                    0.0
                } else {
                    (s % 1000) as f32 / 500.0 - 1.0
                }
            })
            .collect()
    }

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

    #[test]
    fn masked_rows_product_matches_the_naive_sum_for_all_shapes() {
        let (len, ld) = (150, 300);
        let m = pseudo_random(len * ld, 9, 1_000_000);
        for rows in 1..=MAX_BLOCK_ROWS {
            for width in [1, 7, 16, 33, 64, 100, 129, 300] {
                for zero_every in [1, 2, 5, 1000] {
                    let vals_stride = len + 3;
                    let vals = pseudo_random(rows * vals_stride, rows as u32 + 3, zero_every);
                    let mut union = vec![0; mask_words(len)];
                    for r in 0..rows {
                        let mut mask = vec![0; mask_words(len)];
                        nonzero_mask(&vals[r * vals_stride..][..len], &mut mask);
                        union.iter_mut().zip(&mask).for_each(|(u, m)| *u |= m);
                    }
                    let out_stride = width + 5;
                    let start = pseudo_random(rows * out_stride, 4, 1_000_000);
                    let mut expected: Vec<f64> = start.iter().map(|&v| v as f64).collect();
                    for r in 0..rows {
                        for j in 0..len {
                            for k in 0..width {
                                expected[r * out_stride + k] +=
                                    vals[r * vals_stride + j] as f64 * m[j * ld + k] as f64;
                            }
                        }
                    }
                    type Product =
                        fn(&[f32], usize, usize, &[u64], &[f32], usize, &mut [f32], usize, usize);
                    for f in [masked_rows_product as Product, masked_rows_product_portable] {
                        let mut out = start.clone();
                        f(
                            &vals,
                            rows,
                            vals_stride,
                            &union,
                            &m,
                            ld,
                            &mut out,
                            out_stride,
                            width,
                        );
                        for (i, (&o, &e)) in out.iter().zip(&expected).enumerate() {
                            assert!(
                                (o as f64 - e).abs() < 1e-3,
                                "rows {rows} width {width} zeros 1/{zero_every} at {i}: {o} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_columns_swaps_rows_and_columns() {
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

    #[test]
    fn dot_matches_the_naive_sum() {
        for len in [0, 3, 16, 37, 128] {
            let (a, b) = (pseudo_random(len, 1, 5), pseudo_random(len, 2, 5));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "len {len}");
        }
    }
}
