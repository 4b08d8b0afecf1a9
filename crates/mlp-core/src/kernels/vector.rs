//! Loads and stores of a level's native vectors (whole, or the first few lanes of one with
//! zeros after), and the two reductions whose order every level shares.

use fearless_simd::{Simd, SimdBase, SimdFloat, f32x16};

/// The native `f32` vector of level `S`: 16 lanes with AVX-512, 8 with AVX2, 4 otherwise.
pub(crate) type F32s<S> = <S as Simd>::f32s;

/// Largest native vector, in lanes.
pub(crate) const MAX_LANES: usize = 16;

/// Vectors of sums per row of a block in the sparse products: 4 (64 columns) with AVX-512,
/// 2 (16 columns) with AVX2, whose 16 registers hold no more beside a matrix row's; 4 (16
/// columns) with 4-lane vectors. Tiles are thus whole 16-column chunks, which the dW1 step's
/// sum of squares takes in order.
#[inline(always)]
pub(crate) fn tile_vectors<S: Simd>() -> usize {
    if F32s::<S>::LEN == 8 { 2 } else { 4 }
}

/// `src[at..at + LEN]` as a vector.
#[inline(always)]
pub(crate) fn load<S: Simd>(simd: S, src: &[f32], at: usize) -> F32s<S> {
    F32s::<S>::from_slice(simd, &src[at..at + F32s::<S>::LEN])
}

/// `src[at..at + len]` (`len` ≤ LEN) in the first lanes of a vector, zeros in the others.
#[inline(always)]
pub(crate) fn load_padded<S: Simd>(simd: S, src: &[f32], at: usize, len: usize) -> F32s<S> {
    let lanes = F32s::<S>::LEN;
    if len == lanes {
        return load(simd, src, at);
    }
    let mut padded = [0.0f32; MAX_LANES];
    padded[..len].copy_from_slice(&src[at..at + len]);
    F32s::<S>::from_slice(simd, &padded[..lanes])
}

/// `v`'s first `len` lanes into `dst[at..at + len]`.
#[inline(always)]
pub(crate) fn store_padded<S: Simd>(v: F32s<S>, dst: &mut [f32], at: usize, len: usize) {
    let lanes = F32s::<S>::LEN;
    if len == lanes {
        v.store_slice(&mut dst[at..at + lanes]);
    } else {
        dst[at..at + len].copy_from_slice(&v.as_slice()[..len]);
    }
}

/// `((0 + l[0]) + l[1]) + … + l[15]`: how 16 lanes of partial sums become one.
#[inline(always)]
pub(crate) fn lane_sum(lanes: &[f32; 16]) -> f32 {
    lanes.iter().fold(0.0, |sum, &l| sum + l)
}

/// `Σ a[k]·b[k]`, in order of k from 0: `s = 0; for k { s = a[k].mul_add(b[k], s) }`.
///
/// The logits are such sums ([`dot_rows`](super::dot_rows) computes many at once, on any
/// level). This scalar form uses `f32::mul_add`, correctly rounded where the platform's `fma`
/// is (glibc's, and the FMA instruction): the tests' reference, not the engine's path.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |sum, (x, y)| x.mul_add(*y, sum))
}

/// y ← alpha · x + y, element by element, each a fused multiply-add (`f32::mul_add`, as in
/// [`dot`]: the tests' reference for [`combine_rows`](super::combine_rows)).
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y = alpha.mul_add(x, *y);
    }
}

/// `Σ v[k]²` in 16 lanes: lane k sums `v[k]², v[k + 16]², …` in order, one fused
/// multiply-add each, and the lanes are added by `lane_sum` (the last 16 padded with zeros).
/// The lanes are part of the definition, so every level keeps them.
#[inline(always)]
pub fn sum_of_squares<S: Simd>(simd: S, v: &[f32]) -> f32 {
    let mut lanes = f32x16::splat(simd, 0.0);
    for chunk in v.chunks(16) {
        let x = if chunk.len() == 16 {
            f32x16::from_slice(simd, chunk)
        } else {
            let mut padded = [0.0f32; 16];
            padded[..chunk.len()].copy_from_slice(chunk);
            f32x16::from_slice(simd, &padded)
        };
        lanes = x.mul_add_precise(x, lanes);
    }
    lane_sum(lanes.as_array())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::pseudo_random;

    /// The 16 lanes, in order, on every level: the definition the gradient norm relies on.
    #[test]
    fn sum_of_squares_keeps_its_lanes_on_every_level() {
        use crate::kernels::test_data::on_every_level;
        for len in [0, 1, 15, 16, 17, 100, 640] {
            let v = pseudo_random(len, len as u32 + 9, 4);
            let mut lanes = [0.0f32; 16];
            for (k, &x) in v.iter().enumerate() {
                lanes[k % 16] = x.mul_add(x, lanes[k % 16]);
            }
            let expected = lane_sum(&lanes).to_bits();
            on_every_level(|level, name| {
                let got = fearless_simd::dispatch!(level, s => sum_of_squares(s, &v));
                assert_eq!(got.to_bits(), expected, "{name}, len {len}");
            });
        }
    }

    #[test]
    fn dot_and_sum_of_squares_match_the_naive_sums() {
        for len in [0, 3, 16, 37, 128] {
            let (a, b) = (pseudo_random(len, 1, 5), pseudo_random(len, 2, 5));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "len {len}");
            let squares: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
            let simd = fearless_simd::Fallback::new();
            assert!(
                (sum_of_squares(simd, &a) as f64 - squares).abs() < 1e-4,
                "len {len}"
            );
        }
    }
}
