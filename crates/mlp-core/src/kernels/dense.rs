//! The second layer's small dense products, many at once, with the bits of the simple loops
//! ([`dot`], [`axpy`]) they replace: vectorised across products instead of within one.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{axpy, dot, fits, has_avx512};

/// `out[i * m + c] = dot(a_i, b_c)` for the `n` rows a_i of `a` and the `m` rows b_c of `b`
/// (rows of `width` values), bit for bit what [`dot`] gives.
///
/// `dot` sums 16 lanes and then adds the lanes together one at a time: 15 dependent scalar
/// additions per product, which dominated the logits (640 products of 64 per shard and step).
/// Here `b` is first laid out by column into `scratch`, 16 of its rows at a time, so that the
/// 16 lanes of a register hold 16 different products: lane k of all of them is one register,
/// and the final sum is 15 additions of whole registers, in `dot`'s order.
pub fn dot_rows(
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
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for c0 in (0..m).step_by(16) {
            let cols = (m - c0).min(16);
            by_column(&b[c0 * width..], cols, width, scratch);
            // SAFETY: AVX-512F is present; the sizes were checked above.
            unsafe { dot_rows_avx512(a, n, width, scratch, cols, &mut out[c0..], m) };
        }
        return;
    }
    let _ = scratch;
    for i in 0..n {
        for c in 0..m {
            out[i * m + c] = dot(&a[i * width..][..width], &b[c * width..][..width]);
        }
    }
}

/// `scratch[j][c] = b[c * width + j]` for the first `cols` (≤ 16) rows of `b`, zeros after.
#[cfg(target_arch = "x86_64")]
fn by_column(b: &[f32], cols: usize, width: usize, scratch: &mut Vec<[f32; 16]>) {
    scratch.clear();
    scratch.resize(width, [0.0; 16]);
    for c in 0..cols {
        for (column, &v) in scratch.iter_mut().zip(&b[c * width..][..width]) {
            column[c] = v;
        }
    }
}

/// The products of every row of `a` with the `cols` rows laid out in `columns`, into
/// `out[i * out_stride..][..cols]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_rows_avx512(
    a: &[f32],
    n: usize,
    width: usize,
    columns: &[[f32; 16]],
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    // `dot`'s sums start from the empty sum, whatever std makes it (-0.0 or 0.0).
    let empty: f32 = [0.0f32; 0].iter().sum();
    let chunks = width / 16;
    let lanes_out: __mmask16 = if cols == 16 { 0xFFFF } else { (1 << cols) - 1 };
    for i in 0..n {
        let row = &a[i * width..][..width];
        // lanes[k], lane c: lane k of dot(a_i, b_c), as `dot` accumulates it.
        let mut lanes = [_mm512_setzero_ps(); 16];
        for q in 0..chunks {
            for (k, lane) in lanes.iter_mut().enumerate() {
                let j = 16 * q + k;
                // SAFETY: `columns[j]` is 16 floats.
                let column = unsafe { _mm512_loadu_ps(columns[j].as_ptr()) };
                let product = _mm512_mul_ps(_mm512_set1_ps(row[j]), column);
                *lane = _mm512_add_ps(*lane, product);
            }
        }
        let mut sum = _mm512_set1_ps(empty);
        for lane in lanes {
            sum = _mm512_add_ps(sum, lane);
        }
        let mut tail = _mm512_set1_ps(empty);
        for j in 16 * chunks..width {
            // SAFETY: as above.
            let column = unsafe { _mm512_loadu_ps(columns[j].as_ptr()) };
            tail = _mm512_add_ps(tail, _mm512_mul_ps(_mm512_set1_ps(row[j]), column));
        }
        let dst = &mut out[i * out_stride..][..cols];
        // SAFETY: the store is masked to the `cols` floats of `dst`.
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes_out, _mm512_add_ps(sum, tail)) };
    }
}

/// `out[o * width..][..width] = Σ_t coeffs[o * stride.0 + t * stride.1] · rows[t * width..]`
/// for `o < outputs` and `t < terms`, each sum started from 0 and taken in order of t, one
/// multiplication and one addition per term: bit for bit the loop
/// `out_o.fill(0.0); for t { axpy(coeff(o, t), row_t, out_o) }`.
///
/// The engine's backward pass is two of these: da1 = dz2·W2ᵀ (o a batch row, t a class) and
/// dW2ᵀ = dz2ᵀ·a1 (o a class, t a batch row). As `axpy` loops they reloaded and stored the
/// sums at every term; here the sums of 64 columns stay in registers across the terms.
pub fn combine_rows(
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
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: AVX-512F is present; the sizes were checked above.
        unsafe { combine_rows_avx512(coeffs, stride, rows, terms, width, out, outputs) };
        return;
    }
    for o in 0..outputs {
        let out = &mut out[o * width..][..width];
        out.fill(0.0);
        for t in 0..terms {
            let coeff = coeffs[o * stride.0 + t * stride.1];
            axpy(coeff, &rows[t * width..][..width], out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn combine_rows_avx512(
    coeffs: &[f32],
    stride: (usize, usize),
    rows: &[f32],
    terms: usize,
    width: usize,
    out: &mut [f32],
    outputs: usize,
) {
    const REGISTERS: usize = 4;
    for o in 0..outputs {
        for k0 in (0..width).step_by(16 * REGISTERS) {
            let lanes = |r: usize| -> __mmask16 {
                let left = width.saturating_sub(k0 + 16 * r);
                if left >= 16 { 0xFFFF } else { (1 << left) - 1 }
            };
            let mut sums = [_mm512_setzero_ps(); REGISTERS];
            for t in 0..terms {
                let c = _mm512_set1_ps(coeffs[o * stride.0 + t * stride.1]);
                let row = &rows[t * width..][..width];
                for (r, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: the load is masked to the columns of `row` from k0 + 16r on
                    // (none when that is past the end).
                    let x = unsafe {
                        _mm512_maskz_loadu_ps(lanes(r), row.as_ptr().add((k0 + 16 * r).min(width)))
                    };
                    *sum = _mm512_add_ps(*sum, _mm512_mul_ps(c, x));
                }
            }
            let dst = &mut out[o * width..][..width];
            for (r, sum) in sums.iter().enumerate() {
                // SAFETY: as for the loads.
                unsafe {
                    _mm512_mask_storeu_ps(
                        dst.as_mut_ptr().add((k0 + 16 * r).min(width)),
                        lanes(r),
                        *sum,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::{on_both_paths, pseudo_random};

    #[test]
    fn dot_rows_gives_the_bits_of_dot() {
        on_both_paths(check_dot_rows);
    }

    fn check_dot_rows() {
        for width in [0, 1, 15, 16, 17, 64, 100] {
            for m in [1, 10, 16, 17, 40] {
                for n in [0, 7] {
                    let (a, b) = (
                        pseudo_random(n * width, 3, 4),
                        pseudo_random(m * width, 4, 9),
                    );
                    let mut out = vec![f32::NAN; n * m];
                    dot_rows(&a, n, &b, m, width, &mut Vec::new(), &mut out);
                    for i in 0..n {
                        for c in 0..m {
                            let expected = dot(&a[i * width..][..width], &b[c * width..][..width]);
                            assert_eq!(
                                out[i * m + c].to_bits(),
                                expected.to_bits(),
                                "width {width}, {m} rows of b, ({i}, {c})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn combine_rows_gives_the_bits_of_the_axpy_loop() {
        on_both_paths(|| {
            for width in [0, 1, 15, 16, 64, 65, 100] {
                for (outputs, terms) in [(1, 1), (7, 10), (10, 7), (64, 10)] {
                    let rows = pseudo_random(terms * width, 5, 7);
                    let coeffs = pseudo_random(outputs * terms, 6, 5);
                    // Coefficients by output (stride (terms, 1)) and by term (stride (1, outputs)).
                    for stride in [(terms, 1), (1, outputs)] {
                        let mut out = vec![f32::NAN; outputs * width];
                        combine_rows(&coeffs, stride, &rows, terms, width, &mut out, outputs);
                        for o in 0..outputs {
                            let mut expected = vec![0.0; width];
                            for t in 0..terms {
                                let c = coeffs[o * stride.0 + t * stride.1];
                                axpy(c, &rows[t * width..][..width], &mut expected);
                            }
                            let bits =
                                |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&out[o * width..][..width]),
                                bits(&expected),
                                "width {width}, {outputs} × {terms}, stride {stride:?}, output {o}"
                            );
                        }
                    }
                }
            }
        });
    }
}
