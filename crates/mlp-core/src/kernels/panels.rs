//! Where a dense matrix's entries lie in its slice: row-major, or in panels of columns.
//!
//! The sparse products read a matrix a tile of columns at a time, down the rows the union
//! names. Row-major, the rows of a 16-column AVX2 tile of a 64-column shard are 256 bytes
//! apart, one cache line in four, and the hardware prefetcher does not follow a walk whose
//! stride changes at every skipped row. In panels as wide as the level's tile
//! ([`tile_columns`]), a tile's rows are consecutive: on the real data the forward
//! product's loop ran 13–15 % faster (docs/PERFORMANCE.md). The layout changes where
//! entries are, never a sum's order.

use fearless_simd::{Level, Simd, SimdBase};

use super::vector::{F32s, tile_vectors};

/// Columns per tile of the sparse products on `level`: 64 with AVX-512, 16 otherwise. The
/// engine keeps W1 in panels this wide.
pub fn tile_columns(level: Level) -> usize {
    fearless_simd::dispatch!(level, simd => tile_of(simd))
}

#[inline(always)]
fn tile_of<S: Simd>(_: S) -> usize {
    tile_vectors::<S>() * F32s::<S>::LEN
}

/// Entry (row j, column c) of a matrix is at `(c / ld)·panel + j·ld + c % ld` of its slice.
///
/// [`Panels::row_major`] is the usual layout: one panel, its rows `ld` apart (every column
/// below `ld`). [`Panels::columns`] cuts the columns into panels of `ld` (a power of two),
/// each holding every row, consecutive, the last padded to `ld` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panels {
    /// Distance between consecutive rows within a panel (the columns of a panel of many).
    ld: usize,
    /// Distance between panels (0 for row-major: a single panel).
    panel: usize,
}

impl Panels {
    /// Row-major, rows `ld` apart.
    pub const fn row_major(ld: usize) -> Self {
        Self { ld, panel: 0 }
    }

    /// `rows` rows in panels of `width` columns (a power of two, so that finding an entry
    /// takes shifts rather than a division).
    pub const fn columns(rows: usize, width: usize) -> Self {
        assert!(width.is_power_of_two(), "panels are a power of two wide");
        Self {
            ld: width,
            panel: rows * width,
        }
    }

    /// Distance between consecutive rows (within a panel).
    #[inline(always)]
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// Floats a matrix of `rows × cols` takes in this layout (padding included).
    pub fn len(&self, rows: usize, cols: usize) -> usize {
        if self.panel == 0 {
            rows * self.ld
        } else {
            cols.div_ceil(self.ld) * self.panel
        }
    }

    /// Where entry (`row`, `col`) is.
    #[inline(always)]
    pub fn index(&self, row: usize, col: usize) -> usize {
        if self.panel == 0 {
            row * self.ld + col
        } else {
            let shift = self.ld.trailing_zeros();
            (col >> shift) * self.panel + row * self.ld + (col & (self.ld - 1))
        }
    }

    /// Panics unless `cols` columns can be read `tile` at a time (tiles starting at multiples
    /// of `tile`) with each tile's columns consecutive: within one row-major panel, or in
    /// panels a whole number of tiles wide.
    pub(crate) fn check_tiles(&self, cols: usize, tile: usize) {
        assert!(self.ld >= 1, "rows are at least 1 apart");
        if self.panel == 0 {
            assert!(
                cols <= self.ld,
                "{cols} columns requested from rows of {}",
                self.ld
            );
        } else {
            assert!(
                self.ld.is_multiple_of(tile),
                "panels of {} columns split tiles of {tile}",
                self.ld
            );
        }
    }

    /// Whether every entry of rows `..=row`, columns `..cols` (at least one) is inside a
    /// slice of `len`: the largest index is the last column of `row`.
    pub(crate) fn fits(&self, len: usize, row: usize, cols: usize) -> bool {
        let last = cols - 1;
        let (panel, col) = match self.panel {
            0 => (0, last),
            _ => (last / self.ld, last % self.ld),
        };
        let panel_start = panel.checked_mul(self.panel);
        panel_start.is_some_and(|start| super::fits(len, start, row, self.ld, col + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_each_entry_once_and_row_major_is_the_usual_layout() {
        let (rows, cols) = (5, 40);
        let panels = Panels::columns(rows, 16);
        let len = panels.len(rows, cols);
        assert_eq!(len, 3 * 16 * rows, "three panels, the last padded");
        let mut seen = vec![false; len];
        for j in 0..rows {
            for c in 0..cols {
                let at = panels.index(j, c);
                assert!(!seen[at], "({j}, {c}) shares {at}");
                seen[at] = true;
            }
        }
        assert_eq!(panels.index(2, 17), 16 * rows + 2 * 16 + 1);
        assert!(panels.fits(len, rows - 1, cols));
        assert!(!panels.fits(len - 9, rows - 1, cols));
        let rm = Panels::row_major(cols + 3);
        assert_eq!(rm.index(2, 17), 2 * (cols + 3) + 17);
        assert_eq!(rm.len(rows, cols), rows * (cols + 3));
    }
}
