//! The second layer's small dense products, many at once, with the bits of the plain loops
//! ([`dot`], [`axpy`]) they replace: vectorised across products instead of within one.

use fearless_simd::{Simd, SimdBase, SimdFloat, f32x16};

use super::fits;
use super::product::lanes_of;
use super::vector::{F32s, load, load_padded, store_padded};
#[cfg(doc)]
use super::{axpy, dot};

/// `out[i * m + c] = dot(a_i, b_c)` for the `n` rows a_i of `a` and the `m` rows b_c of `b`
/// (rows of `width` values), bit for bit what [`dot`] gives: each a sum in order from 0.
///
/// A dot product alone is a chain of dependent additions. Here `b` is first laid out by
/// column into `scratch`, 16 of its rows at a time, so that the 16 lanes of a vector hold 16
/// different products, and four rows of `a` run side by side: 4 × 16 independent sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the shapes of two matrices, the simd token, scratch
pub fn dot_rows<S: Simd>(
    simd: S,
    a: &[f32],
    n: usize,
    b: &[f32],
    m: usize,
    width: usize,
    scratch: &mut Vec<[f32; 16]>,
    out: &mut [f32],
) {
    assert!(
        fits(a.len(), 0, n, width, 0) && fits(b.len(), 0, m, width, 0),
        "rows of {width}"
    );
    assert!(fits(out.len(), 0, n, m, 0), "out is too short");
    if n == 0 {
        return;
    }
    const R: usize = 4;
    for c0 in (0..m).step_by(16) {
        let cols = (m - c0).min(16);
        by_column(&b[c0 * width..], cols, width, scratch);
        for i0 in (0..n).step_by(R) {
            // Rows past n repeat the last one; their sums are not stored.
            let rows: [&[f32]; R] =
                std::array::from_fn(|r| &a[(i0 + r).min(n - 1) * width..][..width]);
            let mut sums = [f32x16::splat(simd, 0.0); R];
            for (j, column) in scratch.iter().enumerate() {
                let column = f32x16::from_slice(simd, column);
                for (sum, row) in sums.iter_mut().zip(&rows) {
                    *sum = f32x16::splat(simd, row[j]).mul_add_precise(column, *sum);
                }
            }
            for (r, sum) in sums.iter().enumerate().take(n - i0) {
                out[(i0 + r) * m + c0..][..cols].copy_from_slice(&sum.as_slice()[..cols]);
            }
        }
    }
}

/// `scratch[j][c] = b[c * width + j]` for the first `cols` (≤ 16) rows of `b`, zeros after.
#[inline(always)]
fn by_column(b: &[f32], cols: usize, width: usize, scratch: &mut Vec<[f32; 16]>) {
    scratch.clear();
    scratch.resize(width, [0.0; 16]);
    for c in 0..cols {
        for (column, &v) in scratch.iter_mut().zip(&b[c * width..][..width]) {
            column[c] = v;
        }
    }
}

/// `out[o * width..][..width] = Σ_t coeffs[o * stride.0 + t * stride.1] · rows[t * width..]`
/// for `o < outputs` and `t < terms`, each sum started from 0 and taken in order of t, one
/// fused multiply-add per term: bit for bit the loop
/// `out_o.fill(0.0); for t { axpy(coeff(o, t), row_t, out_o) }`.
///
/// The engine's backward pass is two of these: da1 = dz2·W2ᵀ (o a batch row, t a class) and
/// dW2ᵀ = dz2ᵀ·a1 (o a class, t a batch row). As `axpy` loops they reloaded and stored the
/// sums at every term; here the sums of four vectors of columns stay in registers across the
/// terms.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // two strided operands and their shapes
pub fn combine_rows<S: Simd>(
    simd: S,
    coeffs: &[f32],
    stride: (usize, usize),
    rows: &[f32],
    terms: usize,
    width: usize,
    out: &mut [f32],
    outputs: usize,
) {
    if outputs > 0 && terms > 0 {
        // The last coefficient, (outputs − 1)·stride.0 + (terms − 1)·stride.1, is inside.
        let last_output = (outputs - 1).checked_mul(stride.0);
        assert!(
            last_output.is_some_and(|start| fits(coeffs.len(), start, terms - 1, stride.1, 1)),
            "coeffs is too short"
        );
    }
    assert!(
        fits(rows.len(), 0, terms, width, 0) && fits(out.len(), 0, outputs, width, 0),
        "rows of {width}"
    );
    const N: usize = 4;
    let tile = N * F32s::<S>::LEN;
    for o in 0..outputs {
        let coeffs = (coeffs, o * stride.0, stride.1);
        let dst = &mut out[o * width..][..width];
        for c0 in (0..width).step_by(tile) {
            let cols = (width - c0).min(tile);
            if cols == tile {
                combine_tile::<S, N, true>(simd, coeffs, rows, terms, width, dst, (c0, cols));
            } else {
                combine_tile::<S, N, false>(simd, coeffs, rows, terms, width, dst, (c0, cols));
            }
        }
    }
}

/// Columns `c0..c0 + cols` of one output of [`combine_rows`], whose coefficients are
/// `coeffs.0[coeffs.1 + t * coeffs.2]`. A whole tile (`WHOLE`, `cols` then `N · LEN`) is its
/// own copy with plain loads: with the padded loads' run-time lengths in the loop, the sums
/// went through the stack at every term and each partial load called `memcpy`: the two
/// products took ~10 µs of a shard's step at AVX-512 on a Zen 4, and the whole backward pass
/// outside dW1 takes 5 µs now (docs/PERFORMANCE.md).
#[inline(always)]
fn combine_tile<S: Simd, const N: usize, const WHOLE: bool>(
    simd: S,
    (coeffs, first, step): (&[f32], usize, usize),
    rows: &[f32],
    terms: usize,
    width: usize,
    dst: &mut [f32],
    (c0, cols): (usize, usize),
) {
    let lanes = F32s::<S>::LEN;
    let cols = if WHOLE { N * lanes } else { cols };
    let mut sums = [F32s::<S>::splat(simd, 0.0); N];
    for t in 0..terms {
        let c = F32s::<S>::splat(simd, coeffs[first + t * step]);
        let row = &rows[t * width + c0..][..cols];
        for (k, sum) in sums.iter_mut().enumerate() {
            let m = if WHOLE {
                load(simd, row, k * lanes)
            } else {
                let (at, len) = lanes_of(k, lanes, cols);
                load_padded(simd, row, at, len)
            };
            *sum = c.mul_add_precise(m, *sum);
        }
    }
    let dst = &mut dst[c0..][..cols];
    for (k, sum) in sums.iter().enumerate() {
        let (at, len) = lanes_of(k, lanes, cols);
        store_padded::<S>(*sum, dst, at, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::{bits, on_every_level, pseudo_random};
    use crate::kernels::{axpy, dot};

    #[test]
    fn dot_rows_gives_the_bits_of_dot_on_every_level() {
        on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_dot_rows(s, name)));
    }

    fn check_dot_rows<S: Simd>(simd: S, level: &str) {
        for width in [0, 1, 15, 16, 17, 64, 100] {
            for m in [1, 10, 16, 17, 40] {
                for n in [0, 1, 7, 8] {
                    let (a, b) = (
                        pseudo_random(n * width, 3, 4),
                        pseudo_random(m * width, 4, 9),
                    );
                    let mut out = vec![f32::NAN; n * m];
                    dot_rows(simd, &a, n, &b, m, width, &mut Vec::new(), &mut out);
                    for i in 0..n {
                        for c in 0..m {
                            let expected = dot(&a[i * width..][..width], &b[c * width..][..width]);
                            assert_eq!(
                                out[i * m + c].to_bits(),
                                expected.to_bits(),
                                "{level}: width {width}, {m} rows of b, ({i}, {c})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn combine_rows_gives_the_bits_of_the_axpy_loop_on_every_level() {
        on_every_level(
            |level, name| fearless_simd::dispatch!(level, s => check_combine_rows(s, name)),
        );
    }

    fn check_combine_rows<S: Simd>(simd: S, level: &str) {
        for width in [0, 1, 15, 16, 64, 65, 100] {
            for (outputs, terms) in [(1, 1), (3, 0), (7, 10), (10, 7), (64, 10)] {
                let rows = pseudo_random(terms * width, 5, 7);
                let coeffs = pseudo_random(outputs * terms, 6, 5);
                // Coefficients by output (stride (terms, 1)) and by term (stride (1, outputs)).
                for stride in [(terms, 1), (1, outputs)] {
                    let mut out = vec![f32::NAN; outputs * width];
                    combine_rows(
                        simd, &coeffs, stride, &rows, terms, width, &mut out, outputs,
                    );
                    for o in 0..outputs {
                        let mut expected = vec![0.0; width];
                        for t in 0..terms {
                            let c = coeffs[o * stride.0 + t * stride.1];
                            axpy(c, &rows[t * width..][..width], &mut expected);
                        }
                        assert_eq!(
                            bits(&out[o * width..][..width]),
                            bits(&expected),
                            "{level}: width {width}, {outputs} × {terms}, stride {stride:?}, output {o}"
                        );
                    }
                }
            }
        }
    }
}
