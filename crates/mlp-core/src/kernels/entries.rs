//! The values of a sparse operand as the kernels read them: `f32`s, or bytes that each stand
//! for an `f32` of a 256-entry table.
//!
//! Bytes are how images arrive (pixels 0–255). Read through a table (`table[p] = p / 255`,
//! say), a batch gathered as bytes is a quarter of the memory of the same batch converted to
//! `f32`, and gathering it is a copy: the conversion happens as the kernels broadcast each
//! value, where an extra load costs nothing next to the FMAs it feeds.

/// A read-only sequence of `f32` entries.
#[derive(Debug, Clone, Copy)]
pub enum Entries<'a> {
    /// The entries themselves.
    F32(&'a [f32]),
    /// Entry i is `table[bytes[i]]`. Masks of bytes ([`row_and_column_masks`]) mark the non-zero
    /// *bytes*, so `table[0]` should be 0 and the other entries non-zero for a mask to mark
    /// exactly the non-zero entries (a kernel only multiplies what the masks mark).
    ///
    /// [`row_and_column_masks`]: super::row_and_column_masks
    Bytes {
        /// Indices into `table`.
        bytes: &'a [u8],
        /// What each byte stands for.
        table: &'a [f32; 256],
    },
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
            Self::Bytes { bytes, table } => table[usize::from(bytes[i])],
        }
    }
}

/// Unchecked reads for the AVX-512 loops, one type per kind of [`Entries`], so that each loop
/// is compiled for its kind (no branch per entry).
#[cfg(target_arch = "x86_64")]
pub(super) trait Read: Copy {
    /// Entry `i`.
    ///
    /// # Safety
    /// `i` is less than the length of the entries this was made from.
    unsafe fn read(self, i: usize) -> f32;
}

/// Reads `f32` entries (from [`Entries::F32`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct ReadF32(pub(super) *const f32);

/// Reads byte entries through their table (from [`Entries::Bytes`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct ReadBytes {
    pub(super) bytes: *const u8,
    pub(super) table: *const f32,
}

#[cfg(target_arch = "x86_64")]
impl Read for ReadF32 {
    #[inline(always)]
    unsafe fn read(self, i: usize) -> f32 {
        // SAFETY: the caller keeps i inside the entries.
        unsafe { *self.0.add(i) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Read for ReadBytes {
    #[inline(always)]
    unsafe fn read(self, i: usize) -> f32 {
        // SAFETY: the caller keeps i inside the bytes; every byte indexes the 256-entry table.
        unsafe { *self.table.add(usize::from(*self.bytes.add(i))) }
    }
}

/// Calls `$body` with `$r` bound to the [`Read`] for `$entries`, compiled once per kind.
#[cfg(target_arch = "x86_64")]
macro_rules! with_read {
    ($entries:expr, |$r:ident| $body:expr) => {
        match $entries {
            $crate::kernels::Entries::F32(values) => {
                let $r = $crate::kernels::entries::ReadF32(values.as_ptr());
                $body
            }
            $crate::kernels::Entries::Bytes { bytes, table } => {
                let $r = $crate::kernels::entries::ReadBytes {
                    bytes: bytes.as_ptr(),
                    table: table.as_ptr(),
                };
                $body
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use with_read;

#[cfg(test)]
mod tests {
    use crate::kernels::test_data::{masks_of, on_both_paths, pseudo_random};
    use crate::kernels::{
        Descent, Entries, MAX_BLOCK_ROWS, SparseBlock, SparseColumns, mask_words,
        masked_rows_product, sparse_gradient_step,
    };

    /// `table[p] = p / 255`, as image pixels are read.
    fn unit_table() -> [f32; 256] {
        std::array::from_fn(|p| p as f32 / 255.0)
    }

    /// Bytes, about half 0, and the floats they stand for.
    fn bytes_and_floats(len: usize, seed: u32, table: &[f32; 256]) -> (Vec<u8>, Vec<f32>) {
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
        let floats = bytes.iter().map(|&p| table[usize::from(p)]).collect();
        (bytes, floats)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Masks, products and the fused step, each given bytes and then the floats they stand
    /// for: the same masks and the same bits, on the AVX-512 and the portable paths.
    #[test]
    fn every_kernel_reads_bytes_as_the_floats_they_stand_for() {
        let table = unit_table();
        on_both_paths(|| {
            // Columns 784 (whole 16-lane groups) and 30 (a partial group at each row's end).
            for (rows, cols) in [(32, 784), (33, 30), (70, 17)] {
                let (bytes, floats) = bytes_and_floats(rows * cols, (rows + cols) as u32, &table);
                let as_bytes = Entries::Bytes {
                    bytes: &bytes,
                    table: &table,
                };
                let as_floats = Entries::F32(&floats);
                let stride = mask_words(rows);
                let masks = |entries| masks_of(entries, rows, cols, stride);
                let (row_masks, column_masks) = masks(as_floats);
                assert_eq!(masks(as_bytes), (row_masks.clone(), column_masks.clone()));

                // Rows 3, 0, 2 (the first three, reordered) times a matrix, as the forward
                // pass multiplies them.
                let width = 40;
                let m = pseudo_random(cols * width, 5, 1_000_000);
                let product = |vals| {
                    let starts = [3 * cols, 0, 2 * cols];
                    let mut union = vec![0; mask_words(cols)];
                    for &s in &starts {
                        let row = &row_masks[s / cols * mask_words(cols)..][..mask_words(cols)];
                        union.iter_mut().zip(row).for_each(|(u, r)| *u |= r);
                    }
                    let block = SparseBlock {
                        vals,
                        rows: &starts,
                        step: 1,
                        union: &union,
                        m: &m,
                        ld: width,
                    };
                    let mut out = vec![0.5f32; 3 * width];
                    masked_rows_product(&block, &mut out, &[0, width, 2 * width], width);
                    bits(&out)
                };
                assert_eq!(product(as_bytes), product(as_floats), "{rows} × {cols}");

                // The fused step over the whole matrix, as the backward pass takes it.
                let width = 32;
                let d = pseudo_random(rows * width, 6, 3);
                let step = |vals| {
                    let x = SparseColumns {
                        vals,
                        rows,
                        cols,
                        masks: &column_masks,
                        mask_stride: stride,
                    };
                    let mut w = pseudo_random(cols * width, 7, 1_000_000);
                    let mut scratch = vec![0.0; MAX_BLOCK_ROWS * width];
                    let squares = sparse_gradient_step(
                        &[(x, &d)],
                        width,
                        &mut w,
                        Descent { lr: 0.1, l2: 1e-3 },
                        &mut scratch,
                        &mut Vec::new(),
                    );
                    (squares.to_bits(), bits(&w))
                };
                assert_eq!(step(as_bytes), step(as_floats), "{rows} × {cols}");
            }
        });
    }
}
