//! The values of a sparse operand as the kernels read them: `f32`s, or bytes that each stand
//! for an `f32` of a 256-entry table.
//!
//! Bytes are how images arrive (pixels 0–255). Read through a table (`table[p] = p / 255`,
//! say), a batch gathered as bytes is a quarter of the memory of the same batch converted to
//! `f32`, and gathering it is a copy: the conversion happens as the kernels broadcast each
//! value, one more (dependent) load per broadcast. That costs the dW1 kernel about 1 µs a
//! step, which the quicker gather more than pays for (docs/PERFORMANCE.md). A table made by
//! [`ByteTable::quotients`] also knows its formula, with which the packing of a block's terms
//! converts 16 bytes at a time (`pack_bytes.rs`).

/// A read-only sequence of `f32` entries.
#[derive(Debug, Clone, Copy)]
pub enum Entries<'a> {
    /// The entries themselves.
    F32(&'a [f32]),
    /// Entry i is `table.values()[bytes[i]]`. Masks of bytes ([`row_and_column_masks`]) mark the
    /// non-zero *bytes*, so `table[0]` must be 0 (and the other entries non-zero, for the
    /// masks to skip every zero): the products multiply every entry under a block's union of
    /// masks, and they are independent of how rows are grouped only because the entries
    /// outside a row's own mask are 0.
    ///
    /// [`row_and_column_masks`]: super::row_and_column_masks
    Bytes {
        /// Indices into `table`.
        bytes: &'a [u8],
        /// What each byte stands for.
        table: &'a ByteTable,
    },
}

/// What each byte of [`Entries::Bytes`] stands for: 256 values, and, for a table of
/// quotients ([`ByteTable::quotients`]), the formula that makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ByteTable {
    values: [f32; 256],
    quotient: Option<Quotient>,
}

impl ByteTable {
    /// The table `values` (`values[0]` must be 0, see [`Entries::Bytes`]).
    pub fn new(values: [f32; 256]) -> Self {
        Self {
            values,
            quotient: None,
        }
    }

    /// The table of `(b / divisor) · scale` for every byte b, each operation rounded as
    /// `b as f32 / divisor * scale` rounds: image pixels are `quotients(255.0, 1.0)`, and
    /// under input dropout `quotients(255.0, 1 / (1 − rate))`.
    ///
    /// Packing a block's terms then converts its bytes 16 at a time, as
    /// `b·hi + b·lo` (`hi` + `lo` the reciprocal of `divisor` to twice an `f32`'s precision,
    /// one product rounded, the sum fused and rounded once) times `scale`, on the levels
    /// with a fused multiply-add: a formula kept only when it gives the division's bits for
    /// all 256 bytes (it does for 255), checked here.
    pub fn quotients(divisor: f32, scale: f32) -> Self {
        let values = std::array::from_fn(|b| b as f32 / divisor * scale);
        let hi = 1.0 / divisor;
        let lo = (1.0 / f64::from(divisor) - f64::from(hi)) as f32;
        let quotient = Quotient { hi, lo, scale };
        let exact =
            (0..=255u8).all(|b| quotient.of(b).to_bits() == values[usize::from(b)].to_bits());
        Self {
            values,
            quotient: exact.then_some(quotient),
        }
    }

    /// The 256 values.
    pub fn values(&self) -> &[f32; 256] {
        &self.values
    }

    /// The formula of the values, if known.
    pub(super) fn quotient(&self) -> Option<Quotient> {
        self.quotient
    }
}

/// A [`ByteTable::quotients`] formula: byte b stands for `b.mul_add(hi, b · lo) · scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Quotient {
    pub(super) hi: f32,
    pub(super) lo: f32,
    pub(super) scale: f32,
}

impl Quotient {
    /// What byte `b` stands for.
    pub(super) fn of(self, b: u8) -> f32 {
        let b = f32::from(b);
        b.mul_add(self.hi, b * self.lo) * self.scale
    }
}

impl<'a> From<&'a [f32]> for Entries<'a> {
    fn from(values: &'a [f32]) -> Self {
        Self::F32(values)
    }
}

impl<'a> From<&'a Vec<f32>> for Entries<'a> {
    fn from(values: &'a Vec<f32>) -> Self {
        Self::F32(values)
    }
}

impl<'a> Entries<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(values) => values.len(),
            Self::Bytes { bytes, .. } => bytes.len(),
        }
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the masks of [`row_and_column_masks`](super::row_and_column_masks) mark entry
    /// `i` (panics if `i >= len()`): an `f32` other than ±0 (NaN included), a byte other than 0.
    pub fn is_nonzero(&self, i: usize) -> bool {
        match self {
            Self::F32(values) => values[i] != 0.0,
            Self::Bytes { bytes, .. } => bytes[i] != 0,
        }
    }

    /// Entries `range` (panics if it runs past `len()`).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Entries<'a> {
        match self {
            Self::F32(values) => Self::F32(&values[range]),
            Self::Bytes { bytes, table } => Self::Bytes {
                bytes: &bytes[range],
                table,
            },
        }
    }

    /// Entry `i` (panics if `i >= len()`).
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Self::F32(values) => values[i],
            Self::Bytes { bytes, table } => table.values[usize::from(bytes[i])],
        }
    }
}

/// Reads of one kind of [`Entries`], one type per kind, so that each kernel loop is compiled
/// for its kind (no branch per entry).
///
/// Unchecked: the sparse products read four entries per set bit of a union, and a bounds
/// check on each (with the one on the matrix row) was a quarter of the instructions of their
/// inner loop, which is bound by how fast the core issues them, not by its multiply-adds
/// (docs/PERFORMANCE.md). The kernels check every index once per block instead
/// (`SparseBlock::check`, and `sparse_gradient_step`'s asserts).
pub(super) trait Read: Copy {
    /// Entry `i`.
    ///
    /// # Safety
    /// `i` is below the entries' length.
    unsafe fn read(self, i: usize) -> f32;
}

/// Reads `f32` entries (from [`Entries::F32`]).
#[derive(Clone, Copy)]
pub(super) struct ReadF32<'a>(pub(super) &'a [f32]);

/// Reads byte entries through their table (from [`Entries::Bytes`]); any byte indexes the
/// 256-entry table, so the table needs no check.
#[derive(Clone, Copy)]
pub(super) struct ReadBytes<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) table: &'a [f32; 256],
}

impl Read for ReadF32<'_> {
    #[inline(always)]
    unsafe fn read(self, i: usize) -> f32 {
        // SAFETY: `i` is in bounds (the caller's promise).
        unsafe { *self.0.get_unchecked(i) }
    }
}

impl Read for ReadBytes<'_> {
    #[inline(always)]
    unsafe fn read(self, i: usize) -> f32 {
        // SAFETY: `i` is in bounds (the caller's promise); any byte indexes the table.
        self.table[usize::from(unsafe { *self.bytes.get_unchecked(i) })]
    }
}

/// Calls `$body` with `$r` bound to the [`Read`] for `$entries`, compiled once per kind.
macro_rules! with_read {
    ($entries:expr, |$r:ident| $body:expr) => {
        match $entries {
            $crate::kernels::Entries::F32(values) => {
                let $r = $crate::kernels::entries::ReadF32(values);
                $body
            }
            $crate::kernels::Entries::Bytes { bytes, table } => {
                let $r = $crate::kernels::entries::ReadBytes {
                    bytes,
                    table: table.values(),
                };
                $body
            }
        }
    };
}
pub(super) use with_read;

#[cfg(test)]
mod tests {
    use crate::kernels::test_data::{bits, masks_of, on_every_level, pseudo_random};
    use crate::kernels::{
        ByteTable, ColumnTerms, Descent, Entries, Panels, SparseBlock, SparseColumns, Update,
        mask_words, masked_rows_product, sparse_gradient_step,
    };
    use fearless_simd::Simd;

    /// `table[p] = p / 255`, as image pixels are read.
    fn unit_table() -> ByteTable {
        ByteTable::quotients(255.0, 1.0)
    }

    /// Bytes, about half 0, and the floats they stand for.
    fn bytes_and_floats(len: usize, seed: u32, table: &ByteTable) -> (Vec<u8>, Vec<f32>) {
        let bytes: Vec<u8> = pseudo_random(len, seed, 2)
            .iter()
            .map(|&v| {
                if v == 0.0 {
                    0
                } else {
                    (v.abs() * 254.0) as u8 + 1
                }
            })
            .collect();
        let floats = bytes
            .iter()
            .map(|&p| table.values()[usize::from(p)])
            .collect();
        (bytes, floats)
    }

    /// Masks, products and the fused step, each given bytes and then the floats they stand
    /// for: the same masks and the same bits, on every level, at widths with whole and
    /// partial tiles.
    #[test]
    fn every_kernel_reads_bytes_as_the_floats_they_stand_for() {
        on_every_level(|level, name| fearless_simd::dispatch!(level, s => check_bytes(s, name)));
    }

    fn check_bytes<S: Simd>(simd: S, level: &str) {
        let table = unit_table();
        {
            // Columns 784 (whole 16-lane groups), 30 and 17 (a partial group at each row's
            // end); 70 rows (two mask words).
            for (rows, cols) in [(32, 784), (33, 30), (70, 17)] {
                let (bytes, floats) = bytes_and_floats(rows * cols, (rows + cols) as u32, &table);
                let as_bytes = Entries::Bytes {
                    bytes: &bytes,
                    table: &table,
                };
                let as_floats = Entries::F32(&floats);
                let case = format!("{level}, {rows} × {cols}");

                // Rows 3, 0, 2 times a matrix, as the forward pass multiplies them; and
                // columns 5, 1 read as rows, as the block loop of the backward pass does.
                let words = mask_words(cols);
                let (row_masks, _) = masks_of(simd, as_floats, rows, cols, mask_words(rows));
                for width in [40, 100] {
                    let m = pseudo_random(cols.max(rows) * width, 5, 1_000_000);
                    let product = |vals, starts: &[usize], step: usize, union: &[u64]| {
                        let block = SparseBlock {
                            vals,
                            rows: starts,
                            step,
                            union,
                            m: &m,
                            layout: Panels::row_major(width),
                        };
                        let out_rows: Vec<usize> = (0..starts.len()).map(|r| r * width).collect();
                        let mut out = vec![0.5f32; starts.len() * width];
                        masked_rows_product(
                            simd,
                            &block,
                            &mut out,
                            &out_rows,
                            width,
                            &mut Default::default(),
                        );
                        bits(&out)
                    };
                    let mut union = vec![0; words];
                    for r in [3, 0, 2] {
                        let mask = &row_masks[r * words..][..words];
                        union.iter_mut().zip(mask).for_each(|(u, m)| *u |= m);
                    }
                    let starts = [3 * cols, 0, 2 * cols];
                    assert_eq!(
                        product(as_bytes, &starts, 1, &union),
                        product(as_floats, &starts, 1, &union),
                        "{case}, width {width}: rows"
                    );
                    let all_rows: Vec<u64> = (0..mask_words(rows))
                        .map(|w| u64::MAX >> (64 - (rows - 64 * w).min(64)))
                        .collect();
                    let columns = [5 % cols, 1 % cols];
                    assert_eq!(
                        product(as_bytes, &columns, cols, &all_rows),
                        product(as_floats, &columns, cols, &all_rows),
                        "{case}, width {width}: columns"
                    );
                }

                // The fused step, read by columns as the backward pass reads a batch, at
                // widths with whole and partial tiles.
                let (_, column_masks) = masks_of(simd, as_floats, rows, cols, 2);
                for width in [24, 32, 64, 80] {
                    let d = pseudo_random(rows * width, 6, 3);
                    let step = |vals: Entries| {
                        let x = SparseColumns {
                            vals,
                            rows,
                            cols,
                            masks: &column_masks,
                            mask_stride: 2,
                        };
                        let mut w = pseudo_random(cols * width, 7, 1_000_000);
                        let squares = sparse_gradient_step(
                            simd,
                            &x,
                            &d,
                            width,
                            (&mut w, Panels::row_major(width)),
                            Update::Sgd(Descent { lr: 0.1, l2: 1e-3 }),
                            (&mut [], &mut []),
                            ColumnTerms::Read(&mut Vec::new(), &mut Default::default()),
                        );
                        (squares.to_bits(), bits(&w))
                    };
                    assert_eq!(step(as_bytes), step(as_floats), "{case}, width {width}");
                }
            }
        }
    }
}
