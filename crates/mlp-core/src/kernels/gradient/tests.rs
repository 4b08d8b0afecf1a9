//! The fused step against the loop that defines it.

use super::*;
use crate::kernels::row_and_column_masks;
use crate::kernels::test_data::pseudo_random;

/// One part of a batch: x with its column masks, and d.
struct Part {
    x: Vec<f32>,
    masks: Vec<u64>,
    stride: usize,
    d: Vec<f32>,
}

/// Parts of `rows` rows over `cols` columns, about half zeros and some −0.0, with set bits
/// where the masks must be ignored (past the rows, and in a padding word per column).
fn parts_data(rows: &[usize], cols: usize, width: usize) -> Vec<Part> {
    rows.iter()
        .enumerate()
        .map(|(h, &n)| {
            let mut x = pseudo_random(n * cols, 20 + h as u32, 2);
            x.iter_mut().step_by(7).for_each(|v| *v = -0.0);
            let words = mask_words(n);
            let stride = words + 1;
            let mut row_masks = vec![0; n * mask_words(cols)];
            let mut masks = vec![0; cols * stride];
            row_and_column_masks((&x).into(), n, cols, &mut row_masks, &mut masks, stride);
            for column in masks.chunks_exact_mut(stride) {
                column[words] = u64::MAX;
                if n % 64 != 0 {
                    column[words - 1] |= u64::MAX << (n % 64);
                }
            }
            let d = pseudo_random(n * width, 30 + h as u32, 5);
            Part {
                x,
                masks,
                stride,
                d,
            }
        })
        .collect()
}

/// The fused path gives the bits of the loop that defines it (and the public function
/// takes the loop where the fused path does not apply), for every block size, width and
/// number of parts, a part with no rows included.
#[test]
fn the_fused_step_gives_the_bits_of_the_block_loop() {
    let parts_rows: [&[usize]; 5] = [&[32, 32], &[1], &[0, 3], &[31, 32, 5], &[70, 64]];
    for width in [16, 32, 48, 64, 80, 128, 176, 20, 100] {
        for cols in [1, 3, 4, 30, 784] {
            for rows in parts_rows {
                let data = parts_data(rows, cols, width);
                let parts: Vec<(SparseColumns, &[f32])> = data
                    .iter()
                    .zip(rows)
                    .map(|(part, &n)| {
                        let columns = SparseColumns {
                            vals: (&part.x).into(),
                            rows: n,
                            cols,
                            masks: &part.masks,
                            mask_stride: part.stride,
                        };
                        (columns, part.d.as_slice())
                    })
                    .collect();
                let w0 = pseudo_random(cols * width, 40, 1_000_000);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let case = format!("width {width}, {cols} columns, parts {rows:?}");
                let mut looped = w0.clone();
                let mut scratch = vec![0.0; MAX_BLOCK_ROWS * width];
                let step = Descent { lr: 0.1, l2: 1e-3 };
                let expected = step_by_blocks(
                    &parts,
                    width,
                    &mut looped,
                    step,
                    &mut scratch,
                    &mut Vec::new(),
                );
                assert_ne!(bits(&looped), bits(&w0), "{case}: nothing moved");

                let mut public = w0.clone();
                scratch.fill(f32::NAN);
                let squares = sparse_gradient_step(
                    &parts,
                    width,
                    &mut public,
                    step,
                    &mut scratch,
                    &mut Vec::new(),
                );
                assert_eq!(squares.to_bits(), expected.to_bits(), "{case}: squares");
                assert_eq!(bits(&public), bits(&looped), "{case}: weights");

                // The fused path itself, where it applies (so that a CPU on which it
                // does not run cannot make this test compare the loop with itself).
                #[cfg(target_arch = "x86_64")]
                if has_avx512() && width.is_multiple_of(16) {
                    let mut fused = w0.clone();
                    scratch.fill(f32::NAN);
                    // SAFETY: AVX-512F is present; the sizes are those checked above.
                    let squares =
                        unsafe { fused_avx512(&parts, width, &mut fused, step, &mut scratch) };
                    assert_eq!(
                        squares.to_bits(),
                        expected.to_bits(),
                        "{case}: fused squares"
                    );
                    assert_eq!(bits(&fused), bits(&looped), "{case}: fused weights");
                }
            }
        }
    }
}
