//! The fused step against the loop that defines it, on every level.

use super::*;
use crate::kernels::test_data::{bits, masks_of, on_every_level, pseudo_random};

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
            let (_, mut masks) =
                masks_of(fearless_simd::Fallback::new(), (&x).into(), n, cols, stride);
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

/// The step as its doc defines it, on plain floats, entry by entry.
fn defining_loop(
    parts: &[(SparseColumns, &[f32])],
    width: usize,
    w: &mut [f32],
    step: Descent,
) -> f64 {
    let cols = parts[0].0.cols;
    let mut total = 0.0f64;
    for p0 in (0..cols).step_by(MAX_BLOCK_ROWS) {
        let r = MAX_BLOCK_ROWS.min(cols - p0);
        let mut g = vec![0.0f32; r * width];
        for (x, d) in parts {
            // The rows where any of the block's columns is non-zero, in order.
            let rows: Vec<usize> = (0..x.rows)
                .filter(|&j| {
                    (p0..p0 + r).any(|p| x.masks[p * x.mask_stride + j / 64] >> (j % 64) & 1 == 1)
                })
                .collect();
            for q in 0..r {
                for k in 0..width {
                    let mut acc = 0.0f32;
                    for &j in &rows {
                        acc = x
                            .vals
                            .get(j * x.cols + p0 + q)
                            .mul_add(d[j * width + k], acc);
                    }
                    g[q * width + k] += acc;
                }
            }
        }
        let mut lanes = [0.0f32; 16];
        for row in g.chunks_exact(width) {
            for (k, &v) in row.iter().enumerate() {
                lanes[k % 16] = v.mul_add(v, lanes[k % 16]);
            }
        }
        total += f64::from(lanes.iter().fold(0.0f32, |s, &l| s + l));
        for (w, &g) in w[p0 * width..][..r * width].iter_mut().zip(&g) {
            step.apply(w, g);
        }
    }
    total
}

/// For every block size, width and number of parts (a part with no rows included), and
/// with mask bits that must be ignored set.
#[test]
fn the_fused_step_gives_the_bits_of_its_loop_on_every_level() {
    on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_step(s, name)));
}

fn check_step<S: Simd>(simd: S, level: &str) {
    let parts_rows: [&[usize]; 5] = [&[32, 32], &[1], &[0, 3], &[31, 32, 5], &[70, 64]];
    for width in [16, 32, 48, 64, 80, 128, 176, 20, 100, 7] {
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
                let case = format!("{level}: width {width}, {cols} columns, parts {rows:?}");
                let step = Descent { lr: 0.1, l2: 1e-3 };
                let mut looped = w0.clone();
                let expected = defining_loop(&parts, width, &mut looped, step);
                assert_ne!(bits(&looped), bits(&w0), "{case}: nothing moved");

                let mut kernel = w0.clone();
                let mut scratch = vec![f32::NAN; MAX_BLOCK_ROWS * width];
                let squares = sparse_gradient_step(
                    simd,
                    &parts,
                    width,
                    &mut kernel,
                    step,
                    &mut scratch,
                    (&mut Vec::new(), &mut PackedBlock::default()),
                );
                assert_eq!(squares.to_bits(), expected.to_bits(), "{case}: squares");
                assert_eq!(bits(&kernel), bits(&looped), "{case}: weights");
            }
        }
    }
}
