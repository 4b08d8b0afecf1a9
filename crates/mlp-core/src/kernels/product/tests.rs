//! The sparse product against the loop that defines it, on every level.

use super::*;
use crate::kernels::nonzero_mask;
use crate::kernels::test_data::{bits, in_layout, on_every_level, pseudo_random};

/// The OR of the masks of `len` entries, `step` apart, from each of `starts` in `vals`.
fn union_of(vals: &[f32], starts: &[usize], step: usize, len: usize) -> Vec<u64> {
    let mut union = vec![0; crate::kernels::mask_words(len)];
    for &start in starts {
        let row: Vec<f32> = (0..len).map(|j| vals[start + j * step]).collect();
        let mut mask = vec![0; union.len()];
        nonzero_mask(fearless_simd::Fallback::new(), &row, &mut mask);
        union.iter_mut().zip(&mask).for_each(|(u, m)| *u |= m);
    }
    union
}

/// The loop the kernel is defined by, on plain floats.
fn defining_loop(block: &SparseBlock, width: usize, out: &mut [f32], out_rows: &[usize]) {
    for (&row, &out_row) in block.rows.iter().zip(out_rows) {
        for k in 0..width {
            let mut acc = 0.0f32;
            for (w, &word) in block.union.iter().enumerate() {
                for bit in 0..64 {
                    if word >> bit & 1 == 1 {
                        let j = w * 64 + bit;
                        acc = block
                            .vals
                            .get(row + j * block.step)
                            .mul_add(block.m[block.layout.index(j, k)], acc);
                    }
                }
            }
            out[out_row + k] += acc;
        }
    }
}

#[test]
fn masked_rows_product_gives_the_bits_of_its_loop_on_every_level() {
    on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_product(s, name)));
}

/// Every block size and width, with rows read three ways: consecutive rows, rows in
/// another order, and columns of a row-major matrix read as rows; the matrix row-major
/// and in panels.
fn check_product<S: Simd>(simd: S, level: &str) {
    let (len, ld) = (150, 300);
    let m = pseudo_random(len * ld, 9, 1_000_000);
    let paneled = in_layout(&m, len, ld, Panels::columns(len, 64));
    let stride = len + 3;
    for rows in 1..=MAX_BLOCK_ROWS {
        let layouts: [(&str, Vec<usize>, usize); 3] = [
            ("consecutive", (0..rows).map(|r| r * stride).collect(), 1),
            (
                "reordered",
                (0..rows).map(|r| (rows - 1 - r) * 2 * stride).collect(),
                1,
            ),
            // vals as (len, stride) row-major, its columns 5, 7, 9… as the block's rows.
            ("columns", (0..rows).map(|r| 5 + 2 * r).collect(), stride),
        ];
        for (order, starts, step) in layouts {
            for (width, (m, layout)) in [0, 1, 7, 8, 16, 33, 64, 100, 129, 300]
                .into_iter()
                .flat_map(|w| {
                    [
                        (&m, Panels::row_major(ld)),
                        (&paneled, Panels::columns(len, 64)),
                    ]
                    .map(|matrix| (w, matrix))
                })
            {
                for zero_every in [1, 2, 5, 1000] {
                    let vals = pseudo_random(
                        2 * MAX_BLOCK_ROWS * stride.max(len * step),
                        rows as u32 + 3,
                        zero_every,
                    );
                    let block = SparseBlock {
                        vals: (&vals).into(),
                        rows: &starts,
                        step,
                        union: &union_of(&vals, &starts, step, len),
                        m,
                        layout,
                    };
                    // Output rows in reverse order, with room between them.
                    let out_rows: Vec<usize> =
                        (0..rows).map(|r| (rows - 1 - r) * (width + 5)).collect();
                    let start = pseudo_random(rows * (width + 5), 4, 1_000_000);
                    let mut expected = start.clone();
                    defining_loop(&block, width, &mut expected, &out_rows);
                    let mut out = start.clone();
                    masked_rows_product(
                        simd,
                        &block,
                        &mut out,
                        &out_rows,
                        width,
                        &mut PackedBlock::default(),
                    );
                    let case = format!(
                        "{level}, {order}, {layout:?}: rows {rows} width {width} zeros 1/{zero_every}"
                    );
                    assert_eq!(bits(&out), bits(&expected), "{case}");
                    // Packed beforehand, without the matrix.
                    let mut packed = PackedBlock::default();
                    packed.pack_block(simd, &SparseBlock { m: &[], ..block });
                    let mut out = start.clone();
                    packed_rows_product(simd, &packed, (m, layout), &mut out, &out_rows, width);
                    assert_eq!(bits(&out), bits(&expected), "{case}, packed before");
                }
            }
        }
    }
}

/// What the engine's orderings rely on: a row's sums are the same bits whichever rows
/// share its block, since the other rows' non-zeros only add zeros (0·m, finite m) to it.
#[test]
fn a_rows_result_does_not_depend_on_the_rows_in_its_block() {
    let (len, width) = (300, 100);
    let m = pseudo_random(len * width, 11, 1_000_000);
    let vals = pseudo_random(4 * len, 12, 2);
    let product = |rows: &[usize]| {
        let union = union_of(&vals, rows, 1, len);
        let block = SparseBlock {
            vals: (&vals).into(),
            rows,
            step: 1,
            union: &union,
            m: &m,
            layout: Panels::row_major(width),
        };
        let out_rows: Vec<usize> = (0..rows.len()).map(|r| r * width).collect();
        let mut out = vec![0.0f32; rows.len() * width];
        let level = crate::simd::SimdLevel::best().token().expect("best");
        let mut packed = PackedBlock::default();
        fearless_simd::dispatch!(level, s => masked_rows_product(s, &block, &mut out, &out_rows, width, &mut packed));
        out
    };
    // Rows 2, 0, 3, 1 in one block, then each in a block of its own.
    let order = [2 * len, 0, 3 * len, len];
    let together = product(&order);
    for (k, &start) in order.iter().enumerate() {
        assert_eq!(
            bits(&product(&[start])),
            bits(&together[k * width..][..width]),
            "row at {start}"
        );
    }
}

#[test]
#[should_panic(expected = "row 7 is outside the matrix")]
fn packed_terms_are_refused_a_matrix_without_their_rows() {
    let vals = [1.0f32; 8];
    let mut packed = PackedBlock::default();
    packed.pack_block(
        fearless_simd::Fallback::new(),
        &SparseBlock {
            vals: Entries::F32(&vals),
            rows: &[0],
            step: 1,
            union: &[0b1000_0001],
            m: &[],
            layout: Panels::row_major(2),
        },
    );
    // 7 rows of 2: row 7 is missing.
    packed_rows_product(
        fearless_simd::Fallback::new(),
        &packed,
        (&[1.0; 14], Panels::row_major(2)),
        &mut [0.0; 2],
        &[0],
        2,
    );
}

#[test]
#[should_panic(expected = "vals is too short")]
fn a_row_that_runs_past_vals_is_refused() {
    let vals = [1.0f32; 10];
    let m = [1.0f32; 8 * 2];
    let block = SparseBlock {
        vals: Entries::F32(&vals),
        rows: &[0, 6],
        step: 1,
        union: &[0b1000_0001],
        m: &m,
        layout: Panels::row_major(2),
    };
    masked_rows_product(
        fearless_simd::Fallback::new(),
        &block,
        &mut [0.0; 4],
        &[0, 2],
        2,
        &mut PackedBlock::default(),
    );
}
