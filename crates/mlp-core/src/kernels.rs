//! Hot loops of the optimised training step, with AVX-512 versions chosen at run time and
//! portable fallbacks that compute the same thing.
//!
//! Fashion-MNIST images are half background: 49.8 % of pixels are exactly 0. So instead of the
//! dense products x·W1 and xᵀ·dz1, the optimised step multiplies with the *non-zero entries*
//! only. Both products become the same operation, a sparse vector times the rows of a dense
//! matrix, [`masked_row_product`]:
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

/// `out[k] += Σ_{j: bit j of mask set} values[j] · m[j * ld + k]` for `k < out.len()`: a
/// sparse vector (dense `values` with the `mask` of its non-zeros) times the rows of the
/// row-major matrix `m` (leading dimension `ld`), restricted to the first `out.len()` columns.
/// Only rows whose bit is set are read, so the cost is proportional to the non-zeros.
///
/// Panics if the mask has the wrong length, or a set bit names a row that does not have
/// `out.len()` columns inside `m`.
pub fn masked_row_product(values: &[f32], mask: &[u64], m: &[f32], ld: usize, out: &mut [f32]) {
    assert_eq!(
        mask.len(),
        mask_words(values.len()),
        "mask has the wrong number of words"
    );
    let width = out.len();
    assert!(width <= ld, "{width} columns requested from rows of {ld}");
    let last_row = mask
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize);
    if let Some(row) = last_row {
        assert!(
            row < values.len() && row * ld + width <= m.len(),
            "row {row} is outside the matrix"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for (block, out_block) in out.chunks_mut(128).enumerate() {
            // SAFETY: AVX-512F is present; every row read is inside `m` (checked above).
            unsafe {
                masked_block_avx512(values, mask, m.as_ptr().add(block * 128), ld, out_block)
            };
        }
        return;
    }
    masked_row_product_portable(values, mask, m, ld, out);
}

fn masked_row_product_portable(
    values: &[f32],
    mask: &[u64],
    m: &[f32],
    ld: usize,
    out: &mut [f32],
) {
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let j = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let row = &m[j * ld..][..out.len()];
            for (o, &x) in out.iter_mut().zip(row) {
                *o += values[j] * x;
            }
        }
    }
}

/// One block of at most 128 columns (8 registers) of [`masked_row_product`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masked_block_avx512(
    values: &[f32],
    mask: &[u64],
    m: *const f32,
    ld: usize,
    out: &mut [f32],
) {
    // SAFETY (whole body): the caller checked every row that a set bit names.
    unsafe {
        match out.len().div_ceil(16) {
            1 => masked_block_n::<1>(values, mask, m, ld, out),
            2 => masked_block_n::<2>(values, mask, m, ld, out),
            3 => masked_block_n::<3>(values, mask, m, ld, out),
            4 => masked_block_n::<4>(values, mask, m, ld, out),
            5 => masked_block_n::<5>(values, mask, m, ld, out),
            6 => masked_block_n::<6>(values, mask, m, ld, out),
            7 => masked_block_n::<7>(values, mask, m, ld, out),
            8 => masked_block_n::<8>(values, mask, m, ld, out),
            _ => {}
        }
    }
}

/// N registers of accumulators, two sets so that consecutive non-zeros do not wait on each
/// other's FMA latency (4 cycles on Zen 4, which issues one 512-bit FMA per cycle).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // k indexes the accumulators and the row in step
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn masked_block_n<const N: usize>(
    values: &[f32],
    mask: &[u64],
    m: *const f32,
    ld: usize,
    out: &mut [f32],
) {
    let tail = out.len() - (N - 1) * 16;
    let tail_mask: __mmask16 = if tail == 16 {
        0xFFFF
    } else {
        (1u16 << tail) - 1
    };
    let lanes = |k: usize| if k + 1 < N { 0xFFFF } else { tail_mask };
    let mut acc_a = [_mm512_setzero_ps(); N];
    let mut acc_b = [_mm512_setzero_ps(); N];
    // SAFETY: rows named by set bits hold `out.len()` columns from `m` (checked by the
    // caller); loads are masked to that width.
    unsafe {
        for (w, &word) in mask.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let j = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let (v, row) = (_mm512_set1_ps(*values.get_unchecked(j)), m.add(j * ld));
                for k in 0..N {
                    acc_a[k] = _mm512_fmadd_ps(
                        v,
                        _mm512_maskz_loadu_ps(lanes(k), row.add(16 * k)),
                        acc_a[k],
                    );
                }
                if bits == 0 {
                    break;
                }
                let j = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let (v, row) = (_mm512_set1_ps(*values.get_unchecked(j)), m.add(j * ld));
                for k in 0..N {
                    acc_b[k] = _mm512_fmadd_ps(
                        v,
                        _mm512_maskz_loadu_ps(lanes(k), row.add(16 * k)),
                        acc_b[k],
                    );
                }
            }
        }
        for k in 0..N {
            let dst = out.as_mut_ptr().add(16 * k);
            let sum = _mm512_add_ps(
                _mm512_add_ps(acc_a[k], acc_b[k]),
                _mm512_maskz_loadu_ps(lanes(k), dst),
            );
            _mm512_mask_storeu_ps(dst, lanes(k), sum);
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
    // Tiles of 16×16 keep both the reads and the writes within a few cache lines.
    const T: usize = 16;
    for r0 in (0..rows).step_by(T) {
        for t0 in (c0..c1).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in t0..(t0 + T).min(c1) {
                    dst[(c - c0) * dst_stride + r] = src[r * cols + c];
                }
            }
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
    fn masked_row_product_matches_the_naive_sum_for_all_widths() {
        let (rows, ld) = (150, 300);
        let m = pseudo_random(rows * ld, 9, 1_000_000);
        for width in [1, 7, 16, 33, 64, 100, 128, 129, 200, 300] {
            for zero_every in [1, 2, 5, 1000] {
                let values = pseudo_random(rows, 3, zero_every);
                let mut mask = vec![0; mask_words(rows)];
                nonzero_mask(&values, &mut mask);
                let mut out = pseudo_random(width, 4, 1_000_000);
                let mut expected: Vec<f64> = out.iter().map(|&v| v as f64).collect();
                for (j, &v) in values.iter().enumerate() {
                    for (k, e) in expected.iter_mut().enumerate() {
                        *e += v as f64 * m[j * ld + k] as f64;
                    }
                }
                masked_row_product(&values, &mask, &m, ld, &mut out);
                for (k, (&o, &e)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (o as f64 - e).abs() < 1e-3,
                        "width {width} zeros 1/{zero_every} column {k}: {o} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn transpose_columns_swaps_rows_and_columns() {
        let (rows, cols, stride) = (19, 37, 23);
        let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let (c0, c1) = (5, 30);
        let mut dst = vec![-1.0; (c1 - c0) * stride];
        transpose_columns(&src, rows, cols, c0, c1, &mut dst, stride);
        for r in 0..rows {
            for c in c0..c1 {
                assert_eq!(dst[(c - c0) * stride + r], src[r * cols + c]);
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
