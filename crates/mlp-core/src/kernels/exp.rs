//! e^x of many values at once, with the bits of [`libm::expf`] one value at a time.
//!
//! Softmax takes its exponentials from libm (the same bits on every machine, which a
//! platform's own `expf` does not promise), and 640 scalar calls were 4–5 µs of a training
//! step, every worker paying them for the whole batch (docs/PERFORMANCE.md). libm's `expf`
//! (FreeBSD's) is a few `f32` multiplications, additions and one division after a branch on
//! the size of |x|; every lane here takes all branches and keeps its own, with the same
//! operations in the same order, so each lane is rounded as the scalar code rounds it. Where
//! libm scales its result in several steps or returns a special value (|x| ≥ 87.33655, e^x
//! near or past either end of the `f32` range; and NaN), the values of that vector are
//! computed by libm one at a time.

use fearless_simd::{Bytes, Select, Simd, SimdBase, SimdFloat, SimdInt, SimdMask, f32x16, i32x16};

// libm's constants (src/math/expf.rs), by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);
/// |x| from which libm takes its special cases (overflow, underflow, NaN).
const SPECIAL: f32 = f32::from_bits(0x42ae_ac50);
/// |x| above which libm reduces by k·ln 2 with k = ±1 (0.5 ln 2) ...
const HALF_LN2: f32 = f32::from_bits(0x3eb1_7218);
/// ... and above which by the nearest k (1.5 ln 2).
const THREE_HALVES_LN2: f32 = f32::from_bits(0x3f85_1592);
/// |x| at or below which libm returns 1 + x (2⁻¹³; libm's comment says 2⁻¹⁴).
const TINY: f32 = f32::from_bits(0x3900_0000);

/// Replaces each value v of `values` by `libm::expf(v)`, bit for bit, 16 at a time.
#[inline(always)]
pub fn exp_in_place<S: Simd>(simd: S, values: &mut [f32]) {
    let mut chunks = values.chunks_exact_mut(16);
    for chunk in &mut chunks {
        match exp16(simd, f32x16::from_slice(simd, chunk)) {
            Some(e) => e.store_slice(chunk),
            None => chunk.iter_mut().for_each(|v| *v = libm::expf(*v)),
        }
    }
    for v in chunks.into_remainder() {
        *v = libm::expf(*v);
    }
}

/// libm's `expf` on 16 lanes, if every |x| is below [`SPECIAL`] (else `None`). The scalar
/// code's names: k the multiple of ln 2 taken off, hi − lo the reduced argument, c the
/// polynomial, y e^(hi − lo), scaled by 2^k (one multiplication for these k, as `scalbnf`
/// does it).
#[inline(always)]
fn exp16<S: Simd>(simd: S, x: f32x16<S>) -> Option<f32x16<S>> {
    let splat = |v: f32| f32x16::splat(simd, v);
    let ax = x.abs();
    if ax.simd_lt(splat(SPECIAL)).to_bitmask() != 0xffff {
        return None;
    }
    let negative = x.simd_lt(splat(0.0));
    // k = (x / ln 2 ± 0.5) as i32, ±1 nearer 0, 0 nearer still: libm's `as i32` and
    // `k as f32`, as conversions (vectorised on every level, where `trunc` is not at SSE2).
    let half = negative.select(splat(-0.5), splat(0.5));
    let nearest: f32x16<S> = (splat(INV_LN2) * x + half).to_int::<i32x16<S>>().to_float();
    let one = negative.select(splat(-1.0), splat(1.0));
    let k = ax.simd_gt(splat(THREE_HALVES_LN2)).select(nearest, one);
    let k = ax.simd_gt(splat(HALF_LN2)).select(k, splat(0.0));
    // With k = 0 these are libm's hi = x, lo = 0 exactly (x − 0·c is x).
    let hi = x - k * splat(LN2_HI);
    let lo = k * splat(LN2_LO);
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (splat(P1) + rr * splat(P2));
    let y = splat(1.0) + ((r * c / (splat(2.0) - c) - lo) + hi);
    // 2^k from its exponent bits (k within ±126 here); y · 2⁰ is y.
    let k: i32x16<S> = k.to_int();
    let scale: f32x16<S> = ((k + 127) << 23).bitcast();
    Some(ax.simd_gt(splat(TINY)).select(y * scale, splat(1.0) + x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::on_every_level;

    /// Values where libm's branches change, a few ulps either side, and the special ones.
    fn edges() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0,
            -1.0,
        ];
        for t in [
            SPECIAL,
            HALF_LN2,
            THREE_HALVES_LN2,
            TINY,
            88.722_83,
            103.972_08,
            1e-30,
        ] {
            for d in 0..4u32 {
                for b in [t.to_bits() - d, t.to_bits() + d] {
                    let v_ = f32::from_bits(b);
                    v.extend([v_, -v_]);
                }
            }
        }
        v.extend([
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::MAX,
            f32::MIN,
        ]);
        v
    }

    /// Every level against libm: each edge filling a vector of its own and then among plain
    /// values (so that plain edges take the vector path, and special ones send their
    /// neighbours to libm), then a sweep of every 4099th bit pattern (about a million values
    /// from every binade, both signs), in vectors that mix special and plain values as they
    /// come.
    #[test]
    fn exp_in_place_gives_libms_bits_on_every_level() {
        let mut values = Vec::new();
        for (i, edge) in edges().into_iter().enumerate() {
            values.extend([edge; 16]);
            values.extend((0..16).map(|lane| if lane == i % 16 { edge } else { 0.5 }));
        }
        values.extend((0..u32::MAX / 4099).map(|i| f32::from_bits(i * 4099)));
        let expected: Vec<u32> = values.iter().map(|&v| libm::expf(v).to_bits()).collect();
        on_every_level(|level, name| {
            let mut got = values.clone();
            fearless_simd::dispatch!(level, s => exp_in_place(s, &mut got));
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    *e,
                    "{name}: exp({:e}) (bits {:#x})",
                    values[i],
                    values[i].to_bits()
                );
            }
        });
    }

    /// The softmax range, densely: every bit pattern of [−88, 0] whose low 6 bits are 7.
    #[test]
    fn exp_in_place_gives_libms_bits_on_softmax_inputs() {
        let (lo, hi) = ((-0.0f32).to_bits(), (-88.0f32).to_bits());
        let values: Vec<f32> = (lo..=hi)
            .step_by(64)
            .map(|b| f32::from_bits(b + 7))
            .collect();
        let expected: Vec<u32> = values.iter().map(|&v| libm::expf(v).to_bits()).collect();
        on_every_level(|level, name| {
            let mut got = values.clone();
            fearless_simd::dispatch!(level, s => exp_in_place(s, &mut got));
            let wrong = (0..values.len()).find(|&i| got[i].to_bits() != expected[i]);
            assert!(
                wrong.is_none(),
                "{name}: exp({:e})",
                wrong.map_or(0.0, |i| values[i])
            );
        });
    }
}
