//! The model's predictions on the test set, and the two figures made from them: the confusion
//! matrix and the most confidently misclassified images.

use fmnist_data::Dataset;
use image::{GrayImage, RgbImage};
use mlp_core::{BatchMetrics, Mlp, Workspace};
use ndarray::{Array2, Axis};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::{DrawResult, Figure, font, paste_grey, shaded_cell};

/// What the model said about each test image.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub labels: Vec<usize>,
    pub predicted: Vec<usize>,
    /// The probability the model gave its prediction.
    pub confidence: Vec<f32>,
    /// Mean cross-entropy.
    pub loss: f64,
}

/// Rows per forward pass.
const BATCH: usize = 1000;

/// Runs `model` over all of `data` with mlp-core's reference forward pass.
pub fn predict(model: &Mlp, data: &Dataset) -> Predictions {
    let features = data.features();
    let mut ws = Workspace::new(model.shape(), BATCH);
    let mut x = Array2::<f32>::zeros((BATCH, features));
    let mut y = vec![0usize; BATCH];
    let mut metrics = BatchMetrics::default();
    let mut out = Predictions {
        labels: Vec::with_capacity(data.len()),
        predicted: Vec::with_capacity(data.len()),
        confidence: Vec::with_capacity(data.len()),
        loss: 0.0,
    };
    for start in (0..data.len()).step_by(BATCH) {
        let n = BATCH.min(data.len() - start);
        let indices: Vec<usize> = (start..start + n).collect();
        let x_rows = &mut x.as_slice_mut().expect("standard layout")[..n * features];
        data.gather_normalised(&indices, x_rows, &mut y[..n]);
        let x_view = x.slice(ndarray::s![..n, ..]);
        metrics.merge(model.forward(x_view, &y[..n], &mut ws));
        for (p, &label) in ws.probabilities(n).axis_iter(Axis(0)).zip(&y[..n]) {
            let best = mlp_core::loss::argmax(p);
            out.labels.push(label);
            out.predicted.push(best);
            out.confidence.push(p[best]);
        }
    }
    out.loss = metrics.mean_loss();
    out
}

impl Predictions {
    /// `confusion[[true, predicted]]` counts.
    pub fn confusion(&self, classes: usize) -> Array2<usize> {
        let mut confusion = Array2::zeros((classes, classes));
        for (&t, &p) in self.labels.iter().zip(&self.predicted) {
            confusion[[t, p]] += 1;
        }
        confusion
    }

    /// Indices of the `count` misclassified images the model was surest about, surest first
    /// (ties by index, so the choice is deterministic).
    pub fn confident_mistakes(&self, count: usize) -> Vec<usize> {
        let mut wrong: Vec<usize> = (0..self.labels.len())
            .filter(|&i| self.labels[i] != self.predicted[i])
            .collect();
        wrong.sort_by(|&a, &b| {
            self.confidence[b]
                .total_cmp(&self.confidence[a])
                .then(a.cmp(&b))
        });
        wrong.truncate(count);
        wrong
    }
}

/// Accuracy of each true class: the diagonal over the row sums.
pub fn per_class_accuracy(confusion: &Array2<usize>) -> Vec<f64> {
    confusion
        .axis_iter(Axis(0))
        .enumerate()
        .map(|(c, row)| row[c] as f64 / row.sum().max(1) as f64)
        .collect()
}

/// Heatmap of the confusion matrix: counts in the cells, shaded by their share of the true
/// class's row, with the per-class accuracy in a last column.
pub struct ConfusionFigure<'a> {
    pub confusion: &'a Array2<usize>,
    pub class_names: &'a [String],
}

const CELL: (i32, i32) = (72, 34);
const LEFT: i32 = 150;
const TOP: i32 = 92;

impl Figure for ConfusionFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let n = self.confusion.nrows() as i32;
        (
            (LEFT + (n + 1) * CELL.0 + 20) as u32,
            (TOP + n * CELL.1 + 20) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let n = self.confusion.nrows();
        let total: usize = self.confusion.sum();
        let correct: usize = self.confusion.diag().sum();
        let title = format!(
            "Confusion matrix on the test set: {correct} of {total} correct ({:.4})",
            correct as f64 / total.max(1) as f64
        );
        root.draw(&Text::new(title, (10, 10), font(16.0)))?;
        let centre = |style: TextStyle<'static>| style.pos(Pos::new(HPos::Center, VPos::Center));
        let width = (n as i32 + 1) * CELL.0;
        root.draw(&Text::new(
            "predicted class →",
            (LEFT + width / 2, 44),
            centre(font(13.0)),
        ))?;
        root.draw(&Text::new("true class ↓", (10, TOP - 16), font(13.0)))?;
        let accuracy = per_class_accuracy(self.confusion);
        for (j, name) in self.class_names.iter().enumerate().take(n) {
            let x = LEFT + j as i32 * CELL.0 + CELL.0 / 2;
            root.draw(&Text::new(name.clone(), (x, TOP - 16), centre(font(11.0))))?;
        }
        root.draw(&Text::new(
            "accuracy",
            (LEFT + n as i32 * CELL.0 + CELL.0 / 2, TOP - 16),
            centre(font(11.0)),
        ))?;
        for (i, row) in self.confusion.axis_iter(Axis(0)).enumerate() {
            let y = TOP + i as i32 * CELL.1;
            let name = self.class_names.get(i).cloned().unwrap_or_default();
            root.draw(&Text::new(
                name,
                (LEFT - 8, y + CELL.1 / 2),
                font(12.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            let row_total = row.sum().max(1) as f64;
            for (j, &count) in row.iter().enumerate() {
                let share = count as f64 / row_total;
                let x = LEFT + j as i32 * CELL.0;
                shaded_cell(root, (x, y), CELL, share, count.to_string(), 12.0)?;
            }
            root.draw(&Text::new(
                format!("{:.3}", accuracy[i]),
                (LEFT + n as i32 * CELL.0 + CELL.0 / 2, y + CELL.1 / 2),
                centre(font(12.0)),
            ))?;
        }
        root.draw(&Rectangle::new(
            [
                (LEFT, TOP),
                (LEFT + n as i32 * CELL.0, TOP + n as i32 * CELL.1),
            ],
            BLACK.stroke_width(1),
        ))
    }
}

/// A grid of test images with their true and predicted classes.
pub struct MistakeGrid {
    pub images: Vec<GrayImage>,
    /// (true class, predicted class, confidence) per image.
    pub captions: Vec<(String, String, f32)>,
    pub title: String,
    /// Pixels per tile, the image (zoomed) with its two caption lines below.
    tile: (u32, u32),
}

/// Screen pixels per image pixel in the mistake grid.
pub const MISTAKE_ZOOM: u32 = 3;
const MISTAKE_COLUMNS: u32 = 8;
const MISTAKE_TOP: u32 = 34;
/// Room for two caption lines such as "said: T-shirt/top 0.999" in 11 px text.
const CAPTION: (u32, u32) = (130, 36);

impl MistakeGrid {
    /// The `indices` images of `data`, labelled from `predictions`.
    pub fn new(
        data: &Dataset,
        predictions: &Predictions,
        indices: &[usize],
        names: &[String],
    ) -> Self {
        let (h, w) = data.image_shape();
        let (w, h) = (w as u32, h as u32);
        let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
        Self {
            images: indices
                .iter()
                .map(|&i| {
                    GrayImage::from_raw(w, h, data.image(i).to_vec())
                        .expect("image sized by its dataset")
                })
                .collect(),
            captions: indices
                .iter()
                .map(|&i| {
                    (
                        name(predictions.labels[i]),
                        name(predictions.predicted[i]),
                        predictions.confidence[i],
                    )
                })
                .collect(),
            title: format!(
                "The {} misclassified test images the model was most sure of (true class, prediction, its probability)",
                indices.len()
            ),
            tile: mistake_tile((w, h)),
        }
    }

    /// The top-left pixel of image `k`.
    pub fn origin(&self, k: usize) -> (u32, u32) {
        mistake_origin(k, self.tile)
    }
}

/// Pixels per tile of the mistake grid for images of `(width, height)` pixels: the zoomed
/// image with its two caption lines below.
fn mistake_tile((w, h): (u32, u32)) -> (u32, u32) {
    (
        (w * MISTAKE_ZOOM + 10).max(CAPTION.0),
        h * MISTAKE_ZOOM + CAPTION.1,
    )
}

/// Where image `k` of the mistake grid starts, for tiles of `tile` pixels.
fn mistake_origin(k: usize, tile: (u32, u32)) -> (u32, u32) {
    let (col, row) = (k as u32 % MISTAKE_COLUMNS, k as u32 / MISTAKE_COLUMNS);
    (col * tile.0 + 8, MISTAKE_TOP + row * tile.1)
}

/// Where image `k` of the mistake grid starts, for images of `(width, height)` pixels.
pub fn mistake_image_origin(k: usize, image_size: (u32, u32)) -> (u32, u32) {
    mistake_origin(k, mistake_tile(image_size))
}

impl Figure for MistakeGrid {
    fn size(&self) -> (u32, u32) {
        let rows = (self.images.len() as u32).div_ceil(MISTAKE_COLUMNS).max(1);
        (
            MISTAKE_COLUMNS * self.tile.0 + 8,
            MISTAKE_TOP + rows * self.tile.1,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.draw(&Text::new(self.title.clone(), (8, 8), font(13.0)))?;
        let below_image = (self.tile.1 - CAPTION.1 + 2) as i32;
        for (k, (truth, guess, p)) in self.captions.iter().enumerate() {
            let (x, y) = self.origin(k);
            let (x, y) = (x as i32, y as i32 + below_image);
            root.draw(&Text::new(format!("true: {truth}"), (x, y), font(11.0)))?;
            root.draw(&Text::new(
                format!("said: {guess} {p:.3}"),
                (x, y + 14),
                font(11.0).color(&RGBColor(180, 20, 20)),
            ))?;
        }
        Ok(())
    }

    fn paste(&self, png: &mut RgbImage) {
        for (k, image) in self.images.iter().enumerate() {
            paste_grey(png, image, self.origin(k), MISTAKE_ZOOM);
        }
    }

    fn has_svg(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predictions() -> Predictions {
        Predictions {
            labels: vec![0, 1, 2, 1, 0, 2],
            predicted: vec![0, 2, 2, 0, 1, 0],
            confidence: vec![0.9, 0.6, 0.8, 0.95, 0.6, 0.7],
            loss: 0.0,
        }
    }

    #[test]
    fn confusion_counts_true_rows_predicted_columns() {
        let confusion = predictions().confusion(3);
        assert_eq!(confusion.sum(), 6);
        assert_eq!(confusion[[1, 2]], 1);
        assert_eq!(confusion[[1, 0]], 1);
        assert_eq!(confusion.diag().sum(), 2);
        assert_eq!(per_class_accuracy(&confusion), [0.5, 0.0, 0.5]);
    }

    #[test]
    fn confident_mistakes_are_wrong_surest_first_ties_by_index() {
        assert_eq!(predictions().confident_mistakes(10), [3, 5, 1, 4]);
        assert_eq!(predictions().confident_mistakes(2), [3, 5]);
    }
}
