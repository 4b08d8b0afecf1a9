//! Training curves from history.json: loss, accuracy, gradient norm and learning rate per
//! epoch (per step, from the run's settings, when its schedule changes every step), four
//! panels in one figure.

use mlp_train::History;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, FONT, Figure, font};

/// Colours of the training and validation series, the same in every panel.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(214, 39, 40);

/// The learning-rate panel's title.
const LR_TITLE: &str = "Learning rate";

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
    /// The learning rate of every step (x in epochs: step s of E per epoch at 1 + s/E),
    /// drawn instead of the per-epoch series when the schedule is per step.
    lr_steps: Option<Vec<(f64, f64)>>,
}

impl<'a> Curves<'a> {
    /// The curves of `history`, the learning rate per step if `config` (config.json's
    /// `train`) has a per-step schedule over epochs of `steps_per_epoch` steps.
    pub fn new(
        history: &'a History,
        config: Option<&mlp_train::TrainConfig>,
        steps_per_epoch: usize,
    ) -> Self {
        // The SIMD level a run recorded need not be this machine's: it changes no number.
        let lr_steps = config
            .and_then(|c| {
                mlp_train::TrainConfig {
                    simd: None,
                    ..c.clone()
                }
                .validate()
                .ok()
            })
            .map(|c| c.lr_schedule(steps_per_epoch))
            .filter(|s| s.is_per_step() && steps_per_epoch > 0)
            .map(|schedule| {
                let total = history.len() * steps_per_epoch;
                // At most about 2,000 points: every k-th step.
                let k = total.div_ceil(2000).max(1);
                (0..total)
                    .step_by(k)
                    .map(|s| {
                        let (epoch, step) = (s / steps_per_epoch, s % steps_per_epoch);
                        let x = 1.0 + s as f64 / steps_per_epoch as f64;
                        (x, f64::from(schedule.at(epoch, step, steps_per_epoch)))
                    })
                    .collect()
            });
        let mut curves = Self {
            lr_steps,
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
                    title: LR_TITLE,
                    legend: SeriesLabelPosition::UpperRight,
                    y_name: "learning rate",
                    series: vec![("learning rate", TRAIN, &history.lr)],
                },
            ],
        };
        // A run without a validation set has no validation series to draw or name.
        for panel in &mut curves.panels {
            panel.series.retain(|(_, _, values)| !values.is_empty());
        }
        curves
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

impl Curves<'_> {
    /// The panel's y range: of its series, or of every step's rate for a per-step schedule.
    fn y_range(&self, panel: &Panel) -> std::ops::Range<f64> {
        match &self.lr_steps {
            Some(steps) if panel.title == LR_TITLE => {
                let values: Vec<f64> = steps.iter().map(|&(_, lr)| lr).collect();
                y_range(&[("learning rate", TRAIN, &values)])
            }
            _ => y_range(&panel.series),
        }
    }
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 680)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        // One epoch still gets a visible x range.
        // Step s of a per-step schedule sits at 1 + s/E, the last epoch's steps up to E + 1.
        let x_max = match self.lr_steps {
            Some(_) => self.epochs as f64 + 1.0,
            None => self.epochs.max(2) as f64,
        };
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(&self.panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FONT, 17))
                .margin(10)
                .margin_right(24)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(1.0..x_max, self.y_range(panel))?;
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
                let per_epoch = values.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v));
                let points: Vec<(f64, f64)> = match &self.lr_steps {
                    Some(steps) if panel.title == LR_TITLE => steps.clone(),
                    _ => per_epoch.collect(),
                };
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
