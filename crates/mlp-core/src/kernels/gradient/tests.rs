//! The fused step against the loop that defines it, on every level.

use super::*;
use crate::kernels::test_data::{
    bits, from_layout, in_layout, masks_of, on_every_level, pseudo_random,
};
use crate::kernels::update::{Adam, Descent, Momentum};

/// x (`rows × cols`) about half zeros and some −0.0, its column masks with set bits that must
/// be ignored (past the rows, and in a padding word per column), and d.
struct Case {
    x: Vec<f32>,
    masks: Vec<u64>,
    stride: usize,
    d: Vec<f32>,
}

fn case(rows: usize, cols: usize, width: usize) -> Case {
    let mut x = pseudo_random(rows * cols, 20 + rows as u32, 2);
    x.iter_mut().step_by(7).for_each(|v| *v = -0.0);
    let words = mask_words(rows);
    let stride = words + 1;
    let (_, mut masks) = masks_of(
        fearless_simd::Fallback::new(),
        (&x).into(),
        rows,
        cols,
        stride,
    );
    for column in masks.chunks_exact_mut(stride) {
        column[words] = u64::MAX;
        if !rows.is_multiple_of(64) {
            column[words - 1] |= u64::MAX << (rows % 64);
        }
    }
    let d = pseudo_random(rows * width, 30 + rows as u32, 5);
    Case {
        x,
        masks,
        stride,
        d,
    }
}

/// The step as its doc defines it, on plain floats, entry by entry.
fn defining_loop(
    x: &SparseColumns,
    d: &[f32],
    width: usize,
    (w, m, v): (&mut [f32], &mut [f32], &mut [f32]),
    step: Update,
) -> f64 {
    let cols = x.cols;
    let mut total = 0.0f64;
    for p0 in (0..cols).step_by(MAX_BLOCK_ROWS) {
        let r = MAX_BLOCK_ROWS.min(cols - p0);
        // The rows where any of the block's columns is non-zero, in order.
        let rows: Vec<usize> = (0..x.rows)
            .filter(|&j| {
                (p0..p0 + r).any(|p| x.masks[p * x.mask_stride + j / 64] >> (j % 64) & 1 == 1)
            })
            .collect();
        let mut g = vec![0.0f32; r * width];
        for q in 0..r {
            for k in 0..width {
                let mut acc = 0.0f32;
                for &j in &rows {
                    acc = x
                        .vals
                        .get(j * x.cols + p0 + q)
                        .mul_add(d[j * width + k], acc);
                }
                g[q * width + k] = acc;
            }
        }
        let mut lanes = [0.0f32; 16];
        for c in (0..width).step_by(16) {
            for q in 0..r {
                for k in c..(c + 16).min(width) {
                    let v = g[q * width + k];
                    lanes[k - c] = v.mul_add(v, lanes[k - c]);
                }
            }
        }
        total += f64::from(lanes.iter().fold(0.0f32, |s, &l| s + l));
        let block = p0 * width..(p0 + r) * width;
        let moment = |m: &mut [f32]| if m.is_empty() { 0..0 } else { block.clone() };
        let (mb, vb) = (moment(m), moment(v));
        step.apply_to(&mut w[block], &g, &mut m[mb], &mut v[vb]);
    }
    total
}

/// Every update rule, with L2 and decay, moments that start non-zero.
fn rules() -> [Update; 4] {
    [
        Update::Sgd(Descent { lr: 0.1, l2: 1e-3 }),
        Update::Momentum(Momentum {
            lr: 0.1,
            l2: 1e-3,
            momentum: 0.9,
            nesterov: false,
        }),
        Update::Momentum(Momentum {
            lr: 0.05,
            l2: 0.0,
            momentum: 0.8,
            nesterov: true,
        }),
        Update::Adam(Adam {
            lr_t: 0.003,
            eps_t: 1e-7,
            beta1: 0.9,
            beta2: 0.999,
            l2: 1e-4,
            decay: 1e-3,
        }),
    ]
}

/// For every block size and width, batches of one row to more than 64, and with mask bits
/// that must be ignored set; every update rule.
#[test]
fn the_fused_step_gives_the_bits_of_its_loop_on_every_level() {
    on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_step(s, name)));
}

fn check_step<S: Simd>(simd: S, level: &str) {
    // Panels a tile wide (as the engine keeps W1) and two.
    let tile =
        crate::kernels::vector::tile_vectors::<S>() * <S::f32s as fearless_simd::SimdBase<S>>::LEN;
    for width in [16, 32, 48, 64, 80, 128, 176, 20, 100, 7] {
        for cols in [1, 3, 4, 30, 784] {
            for rows in [0, 1, 3, 32, 64, 70] {
                let data = case(rows, cols, width);
                let x = SparseColumns {
                    vals: (&data.x).into(),
                    rows,
                    cols,
                    masks: &data.masks,
                    mask_stride: data.stride,
                };
                let w0 = pseudo_random(cols * width, 40, 1_000_000);
                let case = format!("{level}: width {width}, {cols} columns, {rows} rows");
                for step in rules() {
                    let case = format!("{case}, {step:?}");
                    let len = |k| if step.moments() > k { w0.len() } else { 0 };
                    let m0 = pseudo_random(len(0), 41, 100);
                    let v0: Vec<f32> = pseudo_random(len(1), 42, 100)
                        .iter()
                        .map(|v| v * v)
                        .collect();
                    let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
                    let expected =
                        defining_loop(&x, &data.d, width, (&mut w, &mut m, &mut v), step);
                    assert_ne!(bits(&w), bits(&w0), "{case}: nothing moved");

                    // Row-major, and in the panels the engine keeps W1 in.
                    for layout in [
                        Panels::row_major(width),
                        Panels::columns(cols, tile),
                        Panels::columns(cols, 2 * tile),
                    ] {
                        let laid = |m: &[f32]| {
                            if m.is_empty() {
                                Vec::new()
                            } else {
                                in_layout(m, cols, width, layout)
                            }
                        };
                        // The terms read as the step goes, and packed beforehand.
                        let (mut union, mut packed) = (Vec::new(), PackedBlock::default());
                        let mut blocks = Vec::new();
                        pack_column_blocks(simd, &x, &mut Vec::new(), &mut blocks);
                        for packed_before in [false, true] {
                            let case =
                                format!("{case}, {layout:?}, packed before: {packed_before}");
                            let terms = if packed_before {
                                ColumnTerms::Packed(&blocks)
                            } else {
                                ColumnTerms::Read(&mut union, &mut packed)
                            };
                            let (mut kw, mut km, mut kv) = (laid(&w0), laid(&m0), laid(&v0));
                            let squares = sparse_gradient_step(
                                simd,
                                &x,
                                &data.d,
                                width,
                                (&mut kw, layout),
                                step,
                                (&mut km, &mut kv),
                                terms,
                            );
                            let back = |m: &[f32]| {
                                if m.is_empty() {
                                    Vec::new()
                                } else {
                                    from_layout(m, cols, width, layout)
                                }
                            };
                            assert_eq!(squares.to_bits(), expected.to_bits(), "{case}: squares");
                            assert_eq!(bits(&back(&kw)), bits(&w), "{case}: weights");
                            assert_eq!(bits(&back(&km)), bits(&m), "{case}: first moments");
                            assert_eq!(bits(&back(&kv)), bits(&v), "{case}: second moments");
                            // The padding of the last panel is never written: laid out again
                            // with zero padding, the weights are what the step left.
                            assert_eq!(bits(&laid(&back(&kw))), bits(&kw), "{case}: padding");
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "the packed blocks are not x's")]
fn packed_blocks_of_another_x_are_refused() {
    // Blocks packed from 70 rows, then a step on 32 of them: their terms reach row 69.
    let (cols, width) = (8, 16);
    let data = case(70, cols, width);
    let x = |rows| SparseColumns {
        vals: (&data.x).into(),
        rows,
        cols,
        masks: &data.masks,
        mask_stride: data.stride,
    };
    let simd = fearless_simd::Fallback::new();
    let mut blocks = Vec::new();
    pack_column_blocks(simd, &x(70), &mut Vec::new(), &mut blocks);
    let mut w = vec![0.0; cols * width];
    sparse_gradient_step(
        simd,
        &x(32),
        &data.d,
        width,
        (&mut w, Panels::row_major(width)),
        Update::Sgd(Descent { lr: 0.1, l2: 0.0 }),
        (&mut [], &mut []),
        ColumnTerms::Packed(&blocks),
    );
}
