//! Where figures are drawn: an embedded font, the `Figure` trait, and rendering one figure to
//! PNG bytes (and, for figures made only of vector shapes, to SVG text).
//!
//! Text in a PNG is rasterised from DejaVu Sans compiled into the binary, so reports render
//! the same on a bare machine with no system fonts (plotters' bitmap backend otherwise draws
//! no text at all).

use std::sync::Once;

use anyhow::anyhow;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, GrayImage, ImageEncoder, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The font family every figure asks for.
pub const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both calls only fail on bytes that are not a font; these are DejaVu's own files.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Result of drawing on a plotters area of backend `DB`.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure: vector shapes and text drawn through plotters, plus optional raster images
/// pasted in afterwards at exact pixel positions (weights, test images).
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);

    /// Draws the figure's shapes and text.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;

    /// Pastes raster content onto the finished PNG. Figures that have some cannot be SVG.
    fn paste(&self, _png: &mut RgbImage) {}

    /// Whether the figure is complete without [`Figure::paste`], so an SVG form exists.
    fn has_svg(&self) -> bool {
        true
    }
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Draws `figure` into an RGB image.
pub fn raster(figure: &impl Figure) -> anyhow::Result<RgbImage> {
    register_font();
    let (w, h) = figure.size();
    let mut buffer = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        figure.draw(&root).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    let mut image = RgbImage::from_raw(w, h, buffer).expect("buffer sized to the figure");
    figure.paste(&mut image);
    Ok(image)
}

/// The figure as PNG file bytes.
pub fn png(figure: &impl Figure) -> anyhow::Result<Vec<u8>> {
    let image = raster(figure)?;
    let mut bytes = Vec::new();
    // Best compression: reports are written once and some are kept in git.
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| anyhow!("PNG encoding failed: {e}"))?;
    Ok(bytes)
}

/// The figure as SVG text, or `None` for figures with raster content.
pub fn svg(figure: &impl Figure) -> anyhow::Result<Option<String>> {
    if !figure.has_svg() {
        return Ok(None);
    }
    register_font(); // the SVG backend measures text with it, to place labels
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, figure.size()).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        figure.draw(&root).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(text))
}

/// Copies `image` onto `canvas` with its top-left corner at `(x, y)`, each source pixel
/// becoming a `zoom`×`zoom` block of grey (nearest neighbour: no smoothing that would blur
/// what the pixels say).
pub fn paste_grey(canvas: &mut RgbImage, image: &GrayImage, (x, y): (u32, u32), zoom: u32) {
    for (px, py, pixel) in image.enumerate_pixels() {
        let v = pixel.0[0];
        for dy in 0..zoom {
            for dx in 0..zoom {
                let (cx, cy) = (x + px * zoom + dx, y + py * zoom + dy);
                if cx < canvas.width() && cy < canvas.height() {
                    canvas.put_pixel(cx, cy, image::Rgb([v, v, v]));
                }
            }
        }
    }
}

/// A heatmap cell: the rectangle from `top_left` of `size`, shaded by `share` (0 white, 1 deep
/// blue), with `text` centred in ink that stays legible on the shade.
pub fn shaded_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    (w, h): (i32, i32),
    share: f64,
    text: String,
    size: f64,
) -> DrawResult<DB> {
    root.draw(&Rectangle::new(
        [(x, y), (x + w, y + h)],
        shade(share).filled(),
    ))?;
    let ink: &'static RGBColor = if share > 0.5 { &WHITE } else { &BLACK };
    let style = font(size)
        .color(ink)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(text, (x + w / 2, y + h / 2), style))
}

/// White for 0, deep blue for 1.
pub fn shade(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0).sqrt(); // sqrt: small values stay visible
    let mix = |from: f64, to: f64| (from + (to - from) * s).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// A text style in the embedded font.
pub fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Splits `text` into lines of at most `width` characters, at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
