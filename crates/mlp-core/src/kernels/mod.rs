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
//! the kernels visit set bits only. The values are [`Entries`]: `f32`s, or bytes read through
//! a table (images as they are stored, gathered without converting). The backward product
//! reads the batch's columns in place (a [`SparseBlock`] with a `step`), with their masks
//! from [`row_and_column_masks`].

/// Whether the AVX-512 kernels can run on this CPU (checked once, then cached by std).
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(test)]
    if test_data::PORTABLE.with(|p| p.get()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU also has AVX-512BW (byte and word instructions), which the masks of
/// byte entries use.
#[inline]
pub(crate) fn has_avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512() && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `start + count·stride + extra ≤ len` without overflowing on the way (a sum that
/// overflows does not fit): the bounds checks before the kernels' raw-pointer loops, which
/// must hold for any sizes a caller passes, however large.
pub(crate) fn fits(len: usize, start: usize, count: usize, stride: usize, extra: usize) -> bool {
    count
        .checked_mul(stride)
        .and_then(|offset| offset.checked_add(start))
        .and_then(|end| end.checked_add(extra))
        .is_some_and(|end| end <= len)
}

mod dense;
mod entries;
mod gradient;
mod mask;
mod product;

pub use dense::{combine_rows, dot_rows};
pub use entries::Entries;
pub use gradient::{Descent, SparseColumns, sparse_gradient_step};
pub use mask::{mask_words, nonzero_mask, row_and_column_masks};
pub use product::{MAX_BLOCK_ROWS, SparseBlock, masked_rows_product};

/// `Σ a[k]·b[k]`, accumulated in 16 independent lanes so that the compiler can vectorise it.
///
/// This and the other small helpers here are `inline(always)`: called from the engine's
/// AVX-512 functions they must be compiled into them, as AVX-512 code. Left to the inliner,
/// `dot` stayed an out-of-line SSE function (the engine's sum of squares of dW1 called it
/// 196 times per shard and step).
#[inline(always)]
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
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `Σ v[k]²`, in 16 lanes like [`dot`].
#[inline(always)]
pub fn sum_of_squares(v: &[f32]) -> f32 {
    dot(v, v)
}

#[cfg(test)]
pub(crate) mod test_data {
    thread_local! {
        /// Set by tests to run the portable kernels on a machine that has AVX-512.
        pub(crate) static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f` once with the AVX-512 kernels (where the CPU has them) and once portable.
    pub(crate) fn on_both_paths(f: impl Fn()) {
        f();
        PORTABLE.with(|p| p.set(true));
        f();
        PORTABLE.with(|p| p.set(false));
    }

    /// The row and column masks of `rows × cols` entries, made into buffers of set bits (so
    /// that a word left unwritten shows), column masks `stride` words apart.
    pub(crate) fn masks_of(
        entries: super::Entries,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> (Vec<u64>, Vec<u64>) {
        let mut row_masks = vec![u64::MAX; rows * super::mask_words(cols)];
        let mut column_masks = vec![u64::MAX; cols * stride];
        super::row_and_column_masks(
            entries,
            rows,
            cols,
            &mut row_masks,
            &mut column_masks,
            stride,
        );
        (row_masks, column_masks)
    }

    /// Deterministic pseudo-random values in [-1, 1), every `zero_every`-th about 0.
    pub(super) fn pseudo_random(n: usize, seed: u32, zero_every: u32) -> Vec<f32> {
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
}

#[cfg(test)]
mod tests {
    use super::test_data::pseudo_random;
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum() {
        for len in [0, 3, 16, 37, 128] {
            let (a, b) = (pseudo_random(len, 1, 5), pseudo_random(len, 2, 5));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "len {len}");
        }
    }
}
