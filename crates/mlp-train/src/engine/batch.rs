//! The batch as the training step reads it: gathered rows (augmented, and with input
//! dropout, when the run asks) with their non-zero masks, the masks of the batch's columns
//! (pixels) for the backward pass, and which examples were gathered ahead.

use std::sync::LazyLock;

use mlp_core::kernels::{
    ByteTable, Entries, SparseColumns, mask_words, row_and_column_masks, row_masks,
};

use super::Sample;
use super::input_noise::{InputNoise, perturb};
use crate::data::LabelledData;
use crate::regularise::StepKeys;

/// [`PIXEL_VALUES`](crate::PIXEL_VALUES) as the kernels read bytes: p / 255, with its
/// formula, with which the packing converts a block's bytes 16 at a time
/// (`mlp_core::kernels::ByteTable::quotients`).
static PIXELS: LazyLock<ByteTable> = LazyLock::new(|| ByteTable::quotients(255.0, 1.0));

/// A gathered batch: its rows with the masks of their non-zeros, and for training the masks
/// of each pixel's non-zeros, as the backward pass reads them. The rows are bytes read
/// through a table when the data set has them ([`LabelledData::byte_images`]), else `f32`s.
#[derive(Debug)]
pub(super) struct Batch {
    x: Vec<f32>,
    x_bytes: Vec<u8>,
    /// Whether the rows are in `x_bytes` (standing for `table`) rather than `x`.
    as_bytes: bool,
    /// What a byte stands for: [`PIXELS`], times 1/(1 − rate) under input dropout.
    table: ByteTable,
    /// The input dropout scale `table` was made for (none: the plain values).
    table_scale: Option<f32>,
    /// One image, for augmentation.
    scratch: Vec<f32>,
    scratch_bytes: Vec<u8>,
    pub(super) y: Vec<usize>,
    pub(super) x_masks: Vec<u64>,
    /// The rows in the order the forward pass takes them (see [`BlockOrder`]).
    pub(super) order: BlockOrder,
    /// Per pixel: which of the batch's rows are non-zero there.
    pixel_masks: Vec<u64>,
    /// Mask words per pixel.
    pixel_mask_stride: usize,
    /// Values per row.
    inputs: usize,
}

impl Batch {
    /// Buffers for batches of up to `batch_size` rows of `inputs` values.
    pub(super) fn new(inputs: usize, batch_size: usize) -> Self {
        Self {
            x: vec![0.0; batch_size * inputs],
            x_bytes: vec![0; batch_size * inputs],
            as_bytes: false,
            table: PIXELS.clone(),
            table_scale: None,
            scratch: vec![0.0; inputs],
            scratch_bytes: vec![0; inputs],
            y: vec![0; batch_size],
            x_masks: vec![0; batch_size * mask_words(inputs)],
            order: BlockOrder::new(inputs, batch_size),
            pixel_masks: vec![0; inputs * mask_words(batch_size)],
            pixel_mask_stride: mask_words(batch_size),
            inputs,
        }
    }

    /// Gathers the examples at `indices`, puts them through `noise` under the step's `key`,
    /// masks the non-zeros of each row and of each pixel (see [`Batch::pixels`]), and orders
    /// the rows for the forward pass.
    pub(super) fn fill(
        &mut self,
        token: fearless_simd::Level,
        data: &dyn LabelledData,
        indices: &[usize],
        noise: &InputNoise,
        key: u64,
    ) {
        let (n, inputs) = (indices.len(), self.inputs);
        let values = ..n * inputs;
        let y = &mut self.y[..n];
        let images = data.byte_images();
        self.as_bytes = images.is_some();
        match images {
            Some(images) => {
                assert_eq!(images.features(), inputs, "byte images of another size");
                images.gather_bytes(indices, &mut self.x_bytes[values], y)
            }
            None => data.gather(indices, &mut self.x[values], y),
        }
        let keys = StepKeys::of(key);
        let dropout = noise.dropout.map(|d| (d, keys.input));
        // The table changes only with the run's input dropout: made again only then, not
        // at every step.
        let scale = noise.dropout.map(|d| d.scale());
        if scale != self.table_scale {
            self.table = scale.map_or_else(|| PIXELS.clone(), |s| ByteTable::quotients(255.0, s));
            self.table_scale = scale;
        }
        if self.as_bytes {
            // Kept pixels are scaled by the table (dropped ones become byte 0).
            let kept = |_: &mut u8, _: f32| {};
            let rows = &mut self.x_bytes[..n * inputs];
            perturb(
                rows,
                inputs,
                noise,
                &keys,
                dropout,
                &mut self.scratch_bytes,
                kept,
            );
        } else {
            let scale = |x: &mut f32, m: f32| *x *= m;
            let rows = &mut self.x[..n * inputs];
            perturb(
                rows,
                inputs,
                noise,
                &keys,
                dropout,
                &mut self.scratch,
                scale,
            );
        }
        let src = entries(&self.x, &self.x_bytes, self.as_bytes, &self.table).slice(0..n * inputs);
        let row_masks = &mut self.x_masks[..n * mask_words(inputs)];
        let (column_masks, stride) = (&mut self.pixel_masks, self.pixel_mask_stride);
        fearless_simd::dispatch!(token, simd => {
            row_and_column_masks(simd, src, n, inputs, row_masks, column_masks, stride)
        });
        self.order.sort(&self.x_masks[..n * mask_words(inputs)]);
    }

    /// The batch by pixel, what the backward pass multiplies by: pixel p is column p of the
    /// batch's `n` rows, read in place.
    pub(super) fn pixels(&self, n: usize) -> SparseColumns<'_> {
        SparseColumns {
            vals: self.values().slice(0..n * self.inputs),
            rows: n,
            cols: self.inputs,
            masks: &self.pixel_masks,
            mask_stride: self.pixel_mask_stride,
        }
    }

    /// Values per row.
    pub(super) fn inputs(&self) -> usize {
        self.inputs
    }

    /// The gathered rows, one after the other, as the kernels read them.
    pub(super) fn values(&self) -> Entries<'_> {
        entries(&self.x, &self.x_bytes, self.as_bytes, &self.table)
    }
}

/// The batch's rows: `bytes` read through `table` if `as_bytes`, else `x`.
fn entries<'a>(x: &'a [f32], bytes: &'a [u8], as_bytes: bool, table: &'a ByteTable) -> Entries<'a> {
    if as_bytes {
        Entries::Bytes { bytes, table }
    } else {
        Entries::F32(x)
    }
}

/// Copies the examples at `indices` into `y` and into `bytes` when `data` has byte images,
/// else into `x`, masks each row's non-zeros, and returns the rows as the kernels read them.
/// Bytes keep a chunk of rows a quarter of the size: 256 images are 200 KB, which fit a
/// 512 KB L2 cache beside a shard's W1 (as `f32`s, 800 KB, they did not).
#[allow(clippy::too_many_arguments)]
pub(super) fn gather_rows<'a>(
    token: fearless_simd::Level,
    data: &dyn LabelledData,
    indices: &[usize],
    x: &'a mut [f32],
    bytes: &'a mut [u8],
    y: &mut [usize],
    masks: &mut [u64],
    inputs: usize,
) -> Entries<'a> {
    let n = indices.len();
    let rows = match data.byte_images() {
        Some(images) => {
            assert_eq!(images.features(), inputs, "byte images of another size");
            images.gather_bytes(indices, &mut bytes[..n * inputs], y);
            Entries::Bytes {
                bytes: &bytes[..n * inputs],
                table: &PIXELS,
            }
        }
        None => {
            data.gather(indices, &mut x[..n * inputs], y);
            Entries::F32(&x[..n * inputs])
        }
    };
    fearless_simd::dispatch!(token, simd => row_masks(simd, rows, n, inputs, masks));
    rows
}

/// An order of a batch's rows for the forward pass, which multiplies them four at a time
/// over the union of their non-zeros: similar images next to each other make smaller unions.
/// Rows are sorted by the width of their silhouette (the columns with any non-zero pixel),
/// then its height, then their count of non-zeros; rows that are not square images of at
/// most 64 × 64 are sorted by the count alone. On Fashion-MNIST batches of 64 this takes the
/// union of a block from 79 % of the pixels in batch order to 64 % (by count alone: 72 %).
/// The order changes no result (for finite weights): each row's sum runs over the same pixels
/// in the same order, with only zeros added — pinned by a test below.
#[derive(Debug)]
pub(super) struct BlockOrder {
    /// Side of the square image a row is, if it is one (and at most 64 pixels wide).
    side: Option<usize>,
    words: usize,
    /// Per row, its sort key and index packed into one integer (see [`BlockOrder::key`]).
    keys: Vec<u64>,
    rows: Vec<usize>,
}

impl BlockOrder {
    /// Bits of a key that hold the row's index: batches are smaller than 2²⁴ rows.
    const INDEX_BITS: u32 = 24;

    pub(super) fn new(inputs: usize, batch_size: usize) -> Self {
        assert!(
            batch_size < 1 << Self::INDEX_BITS,
            "batches are under 2^24 rows"
        );
        let side = inputs.isqrt();
        Self {
            side: (side * side == inputs && side <= 64).then_some(side),
            words: mask_words(inputs),
            keys: Vec::with_capacity(batch_size),
            rows: Vec::with_capacity(batch_size),
        }
    }

    /// Width (7 bits), height (7 bits), count of non-zeros (26 bits, saturated) and the row's
    /// index, high bits first: sorting the integers sorts by the tuple, with no ties.
    fn key(width: u32, height: u32, count: u32, index: usize) -> u64 {
        (u64::from(width) << 57)
            | (u64::from(height) << 50)
            | (u64::from(count.min((1 << 26) - 1)) << Self::INDEX_BITS)
            | index as u64
    }

    /// Orders the rows whose masks are `masks` (one row every `mask_words(inputs)` words).
    pub(super) fn sort(&mut self, masks: &[u64]) {
        let words = self.words;
        assert!(words > 0, "rows have at least one input");
        self.keys.clear();
        self.keys
            .extend(masks.chunks_exact(words).enumerate().map(|(i, mask)| {
                let count = mask.iter().map(|w| w.count_ones()).sum();
                let (width, height) = self.side.map_or((0, 0), |side| silhouette(mask, side));
                Self::key(width, height, count, i)
            }));
        self.keys.sort_unstable();
        self.rows.clear();
        let index = (1 << Self::INDEX_BITS) - 1;
        self.rows
            .extend(self.keys.iter().map(|k| (k & index) as usize));
    }

    /// The rows, in order.
    pub(super) fn rows(&self) -> &[usize] {
        &self.rows
    }
}

/// Width and height of the non-zero pixels of the `side` × `side` image whose mask is `mask`:
/// how many columns and rows of the image hold any.
fn silhouette(mask: &[u64], side: usize) -> (u32, u32) {
    let field = u64::MAX >> (64 - side);
    let (mut columns, mut height) = (0u64, 0);
    for y in 0..side {
        let (word, shift) = (y * side / 64, y * side % 64);
        let mut row = mask[word] >> shift;
        if shift + side > 64 {
            row |= mask[word + 1] << (64 - shift);
        }
        let row = row & field;
        columns |= row;
        height += u32::from(row != 0);
    }
    (columns.count_ones(), height)
}

/// The examples gathered ahead into the training batches, and run through the forward pass:
/// their data set, indices and key. The data set is known by its address only, which is why
/// [`super::Engine::train_step`] asks that the call after one with a `next` pass the same,
/// unchanged data object.
#[derive(Debug)]
pub(super) struct ReadyBatch {
    data: Option<usize>,
    indices: Vec<usize>,
    key: u64,
}

impl ReadyBatch {
    /// Nothing ready, room for batches of `batch_size` indices.
    pub(super) fn new(batch_size: usize) -> Self {
        Self {
            data: None,
            indices: Vec::with_capacity(batch_size),
            key: 0,
        }
    }

    fn address(data: &dyn LabelledData) -> usize {
        (data as *const dyn LabelledData).cast::<()>() as usize
    }

    pub(super) fn holds(&self, data: &dyn LabelledData, batch: Sample) -> bool {
        self.data == Some(Self::address(data))
            && self.indices == batch.indices
            && self.key == batch.key
    }

    pub(super) fn set(&mut self, data: &dyn LabelledData, batch: Sample) {
        if batch.indices.is_empty() {
            return self.clear();
        }
        self.data = Some(Self::address(data));
        self.indices.clear();
        self.indices.extend_from_slice(batch.indices);
        self.key = batch.key;
    }

    pub(super) fn clear(&mut self) {
        self.data = None;
        self.indices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_core::Activation;
    use mlp_core::kernels::nonzero_mask;

    /// The bytes a batch is read through are the pixel values the rest of the crate uses,
    /// and under input dropout those values scaled, bit for bit.
    #[test]
    fn the_batchs_byte_tables_are_the_pixel_values() {
        assert_eq!(PIXELS.values(), &crate::data::PIXEL_VALUES);
        let scale = 1.0 / 0.8f32;
        let scaled = crate::data::PIXEL_VALUES.map(|v| (v * scale).to_bits());
        let table = ByteTable::quotients(255.0, scale);
        assert_eq!(table.values().map(f32::to_bits), scaled);
    }

    /// The mask of a 28 × 28 image whose non-zero pixels fill `rows` × `columns`.
    fn rectangle(rows: std::ops::Range<usize>, columns: std::ops::Range<usize>) -> Vec<u64> {
        let mut image = vec![0.0f32; 784];
        for y in rows {
            for x in columns.clone() {
                image[y * 28 + x] = 0.5;
            }
        }
        let mut mask = vec![0; mask_words(784)];
        nonzero_mask(fearless_simd::Fallback::new(), &image, &mut mask);
        mask
    }

    #[test]
    fn silhouette_measures_the_columns_and_rows_that_hold_non_zeros() {
        // Row 2's pixels 5..12 are bits 61..68: across two 64-bit words.
        assert_eq!(silhouette(&rectangle(2..5, 5..12), 28), (7, 3));
        assert_eq!(silhouette(&rectangle(0..28, 0..28), 28), (28, 28));
        assert_eq!(silhouette(&rectangle(27..28, 0..1), 28), (1, 1));
        assert_eq!(silhouette(&rectangle(0..0, 0..0), 28), (0, 0));
    }

    #[test]
    fn block_order_sorts_by_width_then_height_then_count() {
        let images = [
            rectangle(0..10, 0..20), // 20 wide
            rectangle(0..5, 3..8),   // 5 wide, 5 high
            rectangle(0..9, 3..8),   // 5 wide, 9 high
            rectangle(0..5, 3..8),   // as row 1: the index breaks the tie
        ];
        let masks: Vec<u64> = images.concat();
        let mut order = BlockOrder::new(784, 4);
        order.sort(&masks);
        assert_eq!(order.rows(), [1, 3, 2, 0]);
        // Not a square: by the count of non-zeros alone.
        let mut order = BlockOrder::new(3, 3);
        order.sort(&[0b111, 0b001, 0b101]);
        assert_eq!(order.rows(), [1, 2, 0]);
    }

    /// Pins what the forward pass's order relies on: z1, a1 and the logits are the same bits
    /// in any order of the rows, the silhouette order included (for finite weights).
    #[test]
    fn the_forward_pass_gives_the_same_bits_in_any_order_of_the_rows() {
        use super::super::shard::{ForwardBuffers, RowTerms, Scratch, Shard, SparseRows, Tensors};
        use rand::{RngExt, SeedableRng};

        let (n, inputs, width, classes) = (20, 784, 48, 10);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut uniform =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
        // W1 in the panels the engine gives the best level (regression: a fixed 16 split
        // the AVX-512 level's tiles of 64 columns, and the test failed only there).
        let level = mlp_core::SimdLevel::best().token().expect("best");
        let tile = mlp_core::kernels::tile_columns(level);
        let layout = mlp_core::kernels::Panels::columns(inputs, tile);
        let params = Tensors {
            w1: uniform(layout.len(inputs, width)),
            b1: uniform(width),
            w2t: uniform(classes * width),
            b2: uniform(classes),
        };
        let shard = Shard::new(params, (inputs, layout), 0, n, classes);
        // Images with rectangles of non-zero pixels of many sizes, so that the order sorts.
        let mut x = vec![0.0f32; n * inputs];
        for (i, image) in x.chunks_exact_mut(inputs).enumerate() {
            let (w, h) = (3 + i % 17, 28 - i % 11);
            for y in 0..h {
                for x in (i % 5)..(i % 5 + w) {
                    image[y * 28 + x] = ((i * 31 + y * 7 + x) % 13) as f32 / 13.0;
                }
            }
        }
        let mut masks = vec![0u64; n * mask_words(inputs)];
        for (row, mask) in x
            .chunks_exact(inputs)
            .zip(masks.chunks_exact_mut(mask_words(inputs)))
        {
            nonzero_mask(fearless_simd::Fallback::new(), row, mask);
        }
        let mut sorted = BlockOrder::new(inputs, n);
        sorted.sort(&masks);
        let identity: Vec<usize> = (0..n).collect();
        assert_ne!(
            sorted.rows(),
            identity,
            "the test's images are not in silhouette order"
        );
        let reversed: Vec<usize> = (0..n).rev().collect();

        let rows = SparseRows {
            values: (&x).into(),
            masks: &masks,
            len: inputs,
            stride: inputs,
            mask_stride: mask_words(inputs),
        };
        let run = |order: &[usize]| {
            let mut fwd = ForwardBuffers::new(n, width);
            let mut scratch = Scratch::new(inputs, width);
            let mut z2 = vec![0.0f32; n * classes];
            shard.forward_into(
                level,
                &mut fwd,
                &mut scratch,
                &RowTerms::Read(&rows),
                order,
                Activation::Relu,
                None,
                &mut z2,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(fwd.z1()), bits(&z2))
        };
        let expected = run(&identity);
        assert_eq!(run(sorted.rows()), expected, "silhouette order");
        assert_eq!(run(&reversed), expected, "reversed order");
    }
}
