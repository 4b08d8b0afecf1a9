//! The first layer's weights as pictures: hidden unit k's 784 incoming weights (column k of
//! W1) drawn as a 28×28 tile, brighter = larger, tiles in a grid.

use image::{GrayImage, Luma, RgbImage};
use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Figure, font, paste_grey, wrap};

/// How weights become grey levels. Both are symmetric around zero, so mid-grey always means
/// a zero weight and the sign of a weight is never hidden by the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightScale {
    /// Each tile by its own largest |w|: shows every unit's pattern, hides their relative size.
    PerTile,
    /// All tiles by the largest |w| among the units shown: compares units with each other.
    Shared,
}

impl WeightScale {
    /// The sentence that states the normalisation on the figure and in the report.
    pub fn describe(self) -> &'static str {
        match self {
            WeightScale::PerTile => {
                "per-tile symmetric scale: grey = round(127.5 + 127.5·w/m), m = that tile's largest |w| (mid-grey = 0, white = +m, black = −m)"
            }
            WeightScale::Shared => {
                "shared symmetric scale: grey = round(127.5 + 127.5·w/m), m = the largest |w| over all tiles shown (mid-grey = 0, white = +m, black = −m)"
            }
        }
    }
}

/// The grey level of weight `w` when `m` is the largest |w| of its scale.
pub fn grey_level(w: f32, m: f32) -> u8 {
    if m == 0.0 {
        return 128; // an all-zero tile is all "zero"
    }
    (127.5 + 127.5 * f64::from(w) / f64::from(m))
        .round()
        .clamp(0.0, 255.0) as u8
}

/// Where tile `k` lands: a tile is an image of `width`×`height` weights, each drawn as a
/// `zoom`×`zoom` block, with `gap` pixels between tiles and around the edge, `columns` to a
/// row, below a caption band `top` pixels high. The figure is at least `min_width` wide, so
/// that the caption fits above a narrow grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    pub width: u32,
    pub height: u32,
    pub zoom: u32,
    pub gap: u32,
    pub columns: u32,
    pub rows: u32,
    pub top: u32,
    pub min_width: u32,
}

impl GridLayout {
    /// A near-square grid for `tiles` tiles of `width`×`height` weights.
    pub fn new(tiles: usize, (width, height): (u32, u32), zoom: u32) -> Self {
        let columns = (tiles as f64).sqrt().ceil().max(1.0) as u32;
        let rows = (tiles as u32).div_ceil(columns).max(1);
        Self {
            width,
            height,
            zoom,
            gap: 2,
            columns,
            rows,
            top: 0,
            min_width: 0,
        }
    }

    /// The top-left pixel of tile `k`.
    pub fn origin(&self, k: usize) -> (u32, u32) {
        let (col, row) = (k as u32 % self.columns, k as u32 / self.columns);
        let (x_step, y_step) = self.steps();
        (self.gap + col * x_step, self.top + self.gap + row * y_step)
    }

    /// Size of the whole figure.
    pub fn size(&self) -> (u32, u32) {
        let (x_step, y_step) = self.steps();
        (
            (self.gap + self.columns * x_step).max(self.min_width),
            self.top + self.gap + self.rows * y_step,
        )
    }

    fn steps(&self) -> (u32, u32) {
        (
            self.width * self.zoom + self.gap,
            self.height * self.zoom + self.gap,
        )
    }
}

/// Grey tiles of the units `units` of `w1` (inputs, hidden): tile `i` is column `units[i]`
/// laid out as a `width`×`height` image, row-major like the IDX images the inputs came from.
pub fn tiles(
    w1: ArrayView2<f32>,
    units: &[usize],
    scale: WeightScale,
    (width, height): (u32, u32),
) -> Vec<GrayImage> {
    assert_eq!(
        w1.nrows(),
        (width * height) as usize,
        "W1 has one row per pixel of an input image"
    );
    let shared_max = units
        .iter()
        .flat_map(|&k| {
            w1.column(k)
                .into_iter()
                .map(|w| w.abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0f32, f32::max);
    units
        .iter()
        .map(|&k| {
            let column = w1.column(k);
            let m = match scale {
                WeightScale::PerTile => column.iter().fold(0.0f32, |m, w| m.max(w.abs())),
                WeightScale::Shared => shared_max,
            };
            GrayImage::from_fn(width, height, |x, y| {
                Luma([grey_level(column[(y * width + x) as usize], m)])
            })
        })
        .collect()
}

/// The weight grid figure: a caption stating what is shown and how it is scaled, then the tiles.
pub struct WeightGrid {
    pub layout: GridLayout,
    pub tiles: Vec<GrayImage>,
    caption: Vec<String>,
}

/// Caption text: 13 px DejaVu Sans averages under 7 px per character.
const LINE_HEIGHT: u32 = 17;
const CHAR_WIDTH: u32 = 7;

impl WeightGrid {
    /// Tiles of the first `count` hidden units of `w1` (inputs, hidden), for input images of
    /// `image_size` = (width, height) pixels.
    pub fn new(
        w1: ArrayView2<f32>,
        image_size: (u32, u32),
        count: usize,
        scale: WeightScale,
        zoom: u32,
    ) -> Self {
        let (width, height) = image_size;
        let hidden = w1.ncols();
        let count = count.min(hidden);
        let units: Vec<usize> = (0..count).collect();
        let mut layout = GridLayout::new(count, image_size, zoom);
        // Narrow grids get a wider figure rather than a caption cut off at the edge.
        layout.min_width = 360;
        let chars = (layout.size().0 / CHAR_WIDTH) as usize;
        let title = format!(
            "First-layer weights: hidden units 0–{} of {hidden}, one {width}×{height} tile each, in order row by row",
            count.saturating_sub(1)
        );
        let mut caption = wrap(&title, chars);
        caption.extend(wrap(scale.describe(), chars));
        layout.top = 8 + LINE_HEIGHT * caption.len() as u32 + 4;
        Self {
            layout,
            tiles: tiles(w1, &units, scale, image_size),
            caption,
        }
    }
}

/// The colour between tiles: not a grey, so it cannot be mistaken for a weight.
const GAP_COLOUR: RGBColor = RGBColor(40, 70, 140);

impl Figure for WeightGrid {
    fn size(&self) -> (u32, u32) {
        self.layout.size()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (w, h) = self.size();
        for (i, line) in self.caption.iter().enumerate() {
            let y = 8 + (LINE_HEIGHT as usize * i) as i32;
            root.draw(&Text::new(line.clone(), (6, y), font(13.0)))?;
        }
        root.draw(&Rectangle::new(
            [(0, self.layout.top as i32), (w as i32, h as i32)],
            GAP_COLOUR.filled(),
        ))
    }

    fn paste(&self, png: &mut RgbImage) {
        for (k, tile) in self.tiles.iter().enumerate() {
            paste_grey(png, tile, self.layout.origin(k), self.layout.zoom);
        }
    }

    fn has_svg(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::canvas::raster;
    use ndarray::Array2;

    /// Golden grey levels: 127.5 + 127.5·w/m, rounded half away from zero.
    #[test]
    fn grey_levels_are_symmetric_around_mid_grey() {
        assert_eq!(grey_level(0.0, 1.0), 128);
        assert_eq!(grey_level(1.0, 1.0), 255);
        assert_eq!(grey_level(-1.0, 1.0), 0);
        assert_eq!(grey_level(0.5, 1.0), 191); // 191.25
        assert_eq!(grey_level(-0.5, 2.0), 96); // 95.625
        assert_eq!(grey_level(0.3, 0.0), 128);
    }

    fn w1(inputs: usize, hidden: usize) -> Array2<f32> {
        // Deterministic, varied, with both signs and units of very different sizes.
        Array2::from_shape_fn((inputs, hidden), |(i, k)| {
            let t = ((i * 131 + k * 71) % 97) as f32 / 48.0 - 1.0;
            t * (k + 1) as f32 * 0.01
        })
    }

    /// The stated normalisation, written out independently of `grey_level`.
    fn expected(w: f32, m: f32) -> u8 {
        (127.5 + 127.5 * f64::from(w) / f64::from(m)).round() as u8
    }

    fn check_tiles(scale: WeightScale, zoom: u32) {
        let (width, height, hidden, shown) = (28u32, 28u32, 12, 10);
        let w1 = w1((width * height) as usize, hidden);
        let grid = WeightGrid::new(w1.view(), (width, height), shown, scale, zoom);
        let png = raster(&grid).unwrap();
        assert_eq!(png.dimensions(), grid.layout.size());
        let shared = (0..shown)
            .flat_map(|k| w1.column(k).to_vec())
            .fold(0.0f32, |m, w| m.max(w.abs()));
        for k in 0..shown {
            let column = w1.column(k);
            let m = match scale {
                WeightScale::PerTile => column.iter().fold(0.0f32, |m, w| m.max(w.abs())),
                WeightScale::Shared => shared,
            };
            let (x0, y0) = grid.layout.origin(k);
            for r in 0..height {
                for c in 0..width {
                    let want = expected(column[(r * width + c) as usize], m);
                    for (dx, dy) in [(0, 0), (zoom - 1, zoom - 1)] {
                        let got = png.get_pixel(x0 + c * zoom + dx, y0 + r * zoom + dy).0;
                        assert_eq!(got, [want; 3], "tile {k}, row {r}, column {c}");
                    }
                }
            }
            // The pixel just outside the tile is the gap colour, not a weight.
            let outside = png.get_pixel(x0 + width * zoom, y0).0;
            assert_eq!(outside, [GAP_COLOUR.0, GAP_COLOUR.1, GAP_COLOUR.2]);
        }
    }

    #[test]
    fn tile_k_is_column_k_of_w1_per_tile_scale() {
        check_tiles(WeightScale::PerTile, 2);
    }

    #[test]
    fn tile_k_is_column_k_of_w1_shared_scale() {
        check_tiles(WeightScale::Shared, 1);
    }

    #[test]
    fn the_caption_fits_above_a_narrow_grid() {
        // One 4×4 tile is 14 pixels wide; the scale statement must still be whole.
        let w1 = Array2::from_shape_fn((16, 3), |(i, k)| (i + k) as f32 - 8.0);
        let grid = WeightGrid::new(w1.view(), (4, 4), 1, WeightScale::PerTile, 3);
        let (width, _) = grid.layout.size();
        assert!(
            grid.caption
                .iter()
                .all(|l| l.chars().count() as u32 * CHAR_WIDTH <= width)
        );
        assert!(grid.caption.concat().contains("m = that tile's largest"));
        assert_eq!(grid.layout.origin(0), (2, grid.layout.top + 2));
    }

    #[test]
    fn non_square_images_lay_out_row_major() {
        let w1 = Array2::from_shape_fn((6, 1), |(i, _)| i as f32 - 2.0);
        let tile = &tiles(w1.view(), &[0], WeightScale::PerTile, (3, 2))[0];
        assert_eq!(tile.dimensions(), (3, 2));
        // Weights -2, -1, 0 on the first row, 1, 2, 3 on the second; m = 3.
        let row: Vec<u8> = tile.pixels().map(|p| p.0[0]).collect();
        assert_eq!(row, [43, 85, 128, 170, 213, 255]);
    }
}
