//! A pass's blocks packed once for all the shards a thread runs.
//!
//! The sparse products' terms (a block's set bits and its rows' entries there) depend on the
//! batch, not on the matrix they multiply. Where a level's tiles are narrower than a shard
//! (AVX2's 16 columns of 64, and the 4-lane levels'), every product packs its block's terms
//! for its tiles to share; with several shards on a thread (one thread, or a wide layer) each
//! shard packed every block again, ~20 % of each kernel. A thread running several shards now
//! packs a pass's blocks once here, and its shards read them. (AVX-512's single tile reads
//! its terms straight, within the time of its multiply-adds, and packs nothing.)

use fearless_simd::Level;
use mlp_core::kernels::{
    MAX_BLOCK_ROWS, PackedBlock, Panels, SparseColumns, pack_column_blocks, tile_columns,
};

use super::shard::{BlockRows, RowTerms, SparseRows};
use super::worker::SHARD_WIDTH;

/// Whether a thread running `shards` shards at `level` packs its passes' blocks once here.
/// The terms and their order are the same either way, and so are the bits.
pub(super) fn shares_blocks(level: Level, shards: usize) -> bool {
    shards > 1 && tile_columns(level) < SHARD_WIDTH
}

/// One thread's packed blocks: the forward pass's blocks of rows and the dW1 step's blocks
/// of pixel columns, reused from step to step (and, evaluating, from chunk to chunk, where
/// only the blocks of rows are used).
#[derive(Debug, Default)]
pub(super) struct SharedBlocks {
    block: BlockRows,
    rows: Vec<PackedBlock>,
    columns: Vec<PackedBlock>,
}

impl SharedBlocks {
    /// What the forward passes of `shards` shards at `level` multiply by: `rows`' blocks in
    /// `order` packed here once for all of them where [`shares_blocks`], else `rows` read.
    pub(super) fn row_terms<'a>(
        &'a mut self,
        level: Level,
        shards: usize,
        rows: &'a SparseRows<'a>,
        order: &[usize],
    ) -> RowTerms<'a> {
        if shares_blocks(level, shards) {
            RowTerms::Packed(self.pack_rows(level, rows, order))
        } else {
            RowTerms::Read(rows)
        }
    }

    /// The blocks of `rows` in `order` (`MAX_BLOCK_ROWS` at a time, as the forward pass
    /// takes them), packed.
    fn pack_rows(&mut self, level: Level, rows: &SparseRows, order: &[usize]) -> &[PackedBlock] {
        let blocks = order.len().div_ceil(MAX_BLOCK_ROWS);
        // Grown, never shrunk: a short batch or chunk (the last of an epoch or of a data
        // set) would otherwise free the blocks' buffers, to be allocated again after it.
        if self.rows.len() < blocks {
            self.rows.resize_with(blocks, PackedBlock::default);
        }
        let (packed_rows, block) = (&mut self.rows[..blocks], &mut self.block);
        // Packing is scalar code, but compiled for the level it is quicker (AVX2's bit
        // instructions).
        fearless_simd::dispatch!(level, simd => {
            for (group, packed) in order.chunks(MAX_BLOCK_ROWS).zip(&mut *packed_rows) {
                let x = rows.block(group.iter().copied(), block, &[], Panels::row_major(0));
                packed.pack_block(simd, &x);
            }
        });
        &self.rows[..blocks]
    }

    /// The dW1 step's blocks of `pixels`, packed (`kernels::pack_column_blocks`).
    pub(super) fn pack_columns(&mut self, level: Level, pixels: &SparseColumns) -> &[PackedBlock] {
        let (union, blocks) = (&mut self.block.union, &mut self.columns);
        fearless_simd::dispatch!(level, simd => pack_column_blocks(simd, pixels, union, blocks));
        &self.columns
    }
}
