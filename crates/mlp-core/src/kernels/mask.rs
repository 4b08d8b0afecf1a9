//! Bit masks of the non-zero entries of a row: the kernels visit set bits only.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::has_avx512;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::pseudo_random;

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
}
