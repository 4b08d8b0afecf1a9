//! Random numbers as a pure function of a key and an index, and dropout masks made from them.
//!
//! Training with dropout or augmentation draws a number for every hidden unit of every row of
//! every batch, and the engine's threads each draw for their own columns. A sequential
//! generator would make the draws depend on which thread ran first; a counter-based one does
//! not: [`draw`]`(key, index)` is SplitMix64's output for the state `key + (index + 1)·γ`, the same
//! bits whoever computes it, in any order. The training loop takes each epoch's key from the
//! run's seeded generator, so a seed still fixes everything.

/// SplitMix64's increment, γ = 2⁶⁴/φ.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// 64 random bits for `index` under `key` (SplitMix64's finaliser of `key + (index + 1)·γ`).
#[inline(always)]
pub fn draw(key: u64, index: u64) -> u64 {
    let mut z = key.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Inverted dropout at `rate`: each unit is kept with probability 1 − rate and scaled by
/// 1/(1 − rate), so that its expected value is unchanged and inference needs no scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Units whose draw's high 32 bits fall below this are dropped: rate·2³², rounded.
    threshold: u64,
    /// 1/(1 − rate), what a kept unit is multiplied by.
    scale: f32,
}

impl Dropout {
    /// Dropout at `rate` (in [0, 1)), or `None` when the rate is 0 (nothing dropped).
    pub fn new(rate: f32) -> Option<Self> {
        assert!((0.0..1.0).contains(&rate), "dropout rates are in [0, 1)");
        (rate > 0.0).then(|| Self {
            threshold: (f64::from(rate) * 4_294_967_296.0).round() as u64,
            scale: (1.0 / (1.0 - f64::from(rate))) as f32,
        })
    }

    /// The factor of unit `index` under `key`: 0 (dropped) or 1/(1 − rate) (kept).
    #[inline(always)]
    pub fn factor(&self, key: u64, index: u64) -> f32 {
        if draw(key, index) >> 32 < self.threshold {
            0.0
        } else {
            self.scale
        }
    }

    /// What a kept unit is multiplied by, 1/(1 − rate).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The factors of a `rows × cols` layer under `key`, unit (i, j) being index `i·cols + j`:
    /// the mask the engine draws for a batch's hidden layer, whole, for reference passes.
    pub fn mask(&self, key: u64, rows: usize, cols: usize) -> ndarray::Array2<f32> {
        ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| {
            self.factor(key, (i * cols + j) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_splitmix64() {
        // SplitMix64 seeded with 1234567: its first outputs (from the reference C code,
        // https://prng.di.unimi.it/splitmix64.c), which are draw(1234567, 0), (…, 1).
        assert_eq!(draw(1234567, 0), 6457827717110365317);
        assert_eq!(draw(1234567, 1), 3203168211198807973);
    }

    #[test]
    fn dropout_keeps_about_one_minus_the_rate_and_scales_the_kept() {
        let d = Dropout::new(0.25).unwrap();
        let mask = d.mask(42, 200, 100);
        let kept = mask.iter().filter(|&&f| f != 0.0).count();
        // 20,000 units: the kept fraction is 0.75 ± 0.006 (two standard deviations).
        assert!((kept as f64 / 20_000.0 - 0.75).abs() < 0.006, "{kept}");
        assert!(mask.iter().all(|&f| f == 0.0 || f == 1.0 / 0.75));
        assert!(Dropout::new(0.0).is_none());
        // Another key, another mask.
        assert_ne!(d.mask(43, 200, 100), mask);
    }
}
