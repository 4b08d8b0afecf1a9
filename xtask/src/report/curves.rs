//! Training curves from history.json: loss, accuracy, gradient norm and learning rate per
//! epoch, four panels in one figure.

use mlp_train::History;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, FONT, Figure, font};

/// Colours of the training and validation series, the same in every panel.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(214, 39, 40);

/// One panel: a title, a y-axis name, and named series of one value per epoch.
struct Panel<'a> {
    title: &'static str,
    y_name: &'static str,
    legend: SeriesLabelPosition,
    series: Vec<(&'static str, RGBColor, &'a [f64])>,
}

/// The 2×2 figure of a run's curves. Each series is drawn as one polyline with a point per
/// epoch, in the order: train loss, validation loss, train accuracy, validation accuracy,
/// gradient norm, learning rate.
pub struct Curves<'a> {
    panels: [Panel<'a>; 4],
    epochs: usize,
}

impl<'a> Curves<'a> {
    pub fn new(history: &'a History) -> Self {
        Self {
            epochs: history.len(),
            panels: [
                Panel {
                    title: "Cross-entropy loss",
                    legend: SeriesLabelPosition::UpperRight,
                    y_name: "loss",
                    series: vec![
                        ("train (running mean)", TRAIN, &history.train_loss),
                        ("validation", VALIDATION, &history.val_loss),
                    ],
                },
                Panel {
                    title: "Accuracy",
                    legend: SeriesLabelPosition::LowerRight,
                    y_name: "accuracy",
                    series: vec![
                        ("train (running mean)", TRAIN, &history.train_acc),
                        ("validation", VALIDATION, &history.val_acc),
                    ],
                },
                Panel {
                    title: "Mean gradient norm per mini-batch",
                    legend: SeriesLabelPosition::UpperRight,
                    y_name: "‖∇ data loss‖",
                    series: vec![("gradient norm", TRAIN, &history.grad_norm)],
                },
                Panel {
                    title: "Learning rate",
                    legend: SeriesLabelPosition::UpperRight,
                    y_name: "learning rate",
                    series: vec![("learning rate", TRAIN, &history.lr)],
                },
            ],
        }
    }
}

/// The span of the finite values of `series`, widened a little so lines clear the frame.
fn y_range(series: &[(&str, RGBColor, &[f64])]) -> std::ops::Range<f64> {
    let values = series.iter().flat_map(|(_, _, v)| v.iter().copied());
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
    (lo - pad)..(hi + pad)
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 680)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        // One epoch still gets a visible x range.
        let x_max = self.epochs.max(2) as f64;
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(&self.panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FONT, 17))
                .margin(10)
                .margin_right(24)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(1.0..x_max, y_range(&panel.series))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc(panel.y_name)
                .label_style(font(12.0))
                .axis_desc_style(font(13.0))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for &(name, colour, values) in &panel.series {
                let points = values.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v));
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 2), (x + 16, y + 2)], colour.filled())
                    });
            }
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .label_font(font(12.0))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .position(panel.legend.clone())
                    .draw()?;
            }
        }
        Ok(())
    }
}
