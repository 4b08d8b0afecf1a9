//! A search's figure: validation accuracy over two hyperparameters, the others held at the
//! best trial's values.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::{DrawResult, Figure, font, shaded_cell};
use super::inputs::Trial;

/// A hyperparameter a search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hyperparameter {
    Lr,
    Hidden,
    L2,
    Activation,
}

impl Hyperparameter {
    const ALL: [Hyperparameter; 4] = [
        Hyperparameter::Lr,
        Hyperparameter::Hidden,
        Hyperparameter::L2,
        Hyperparameter::Activation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hyperparameter::Lr => "learning rate",
            Hyperparameter::Hidden => "hidden units",
            Hyperparameter::L2 => "L2 strength",
            Hyperparameter::Activation => "activation",
        }
    }

    /// The trial's value on this axis, as text (exact: it is what sorts and matches).
    fn value(self, t: &Trial) -> String {
        match self {
            Hyperparameter::Lr => t.lr.to_string(),
            Hyperparameter::Hidden => t.hidden.to_string(),
            Hyperparameter::L2 => t.l2.to_string(),
            Hyperparameter::Activation => t.activation.clone(),
        }
    }

    /// Sorted distinct values of the axis over `trials` (numbers numerically).
    fn levels(self, trials: &[&Trial]) -> Vec<String> {
        let mut levels: Vec<String> = trials.iter().map(|t| self.value(t)).collect();
        levels.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(b),
        });
        levels.dedup();
        levels
    }
}

/// The heatmap's data: a cell per (x, y) level pair.
pub struct SearchHeatmap {
    pub x: Hyperparameter,
    pub y: Hyperparameter,
    pub x_levels: Vec<String>,
    pub y_levels: Vec<String>,
    /// `cells[row][col]`: the trial at (`x_levels[col]`, `y_levels[row]`), if the grid had one.
    pub cells: Vec<Vec<Option<Trial>>>,
    /// The held axes and the best trial's values on them.
    pub held: Vec<(Hyperparameter, String)>,
    /// The settings a grid does not vary, as the best trial had them.
    pub fixed: String,
    pub best_id: String,
}

impl SearchHeatmap {
    /// The slice of `trials` that holds every other setting at `best`'s value (the settings
    /// a grid does not vary included, as merged searches may differ in them).
    pub fn new(trials: &[Trial], best: &Trial, x: Hyperparameter, y: Hyperparameter) -> Self {
        let held: Vec<(Hyperparameter, String)> = Hyperparameter::ALL
            .into_iter()
            .filter(|a| *a != x && *a != y)
            .map(|a| (a, a.value(best)))
            .collect();
        let fixed = |t: &Trial| (t.batch_size, t.epochs, t.lr_decay.to_bits());
        let slice: Vec<&Trial> = trials
            .iter()
            .filter(|t| held.iter().all(|(a, v)| a.value(t) == *v) && fixed(t) == fixed(best))
            .collect();
        let (x_levels, y_levels) = (x.levels(&slice), y.levels(&slice));
        let cells = y_levels
            .iter()
            .map(|yv| {
                x_levels
                    .iter()
                    .map(|xv| {
                        slice
                            .iter()
                            .find(|t| x.value(t) == *xv && y.value(t) == *yv)
                            .map(|t| (*t).clone())
                    })
                    .collect()
            })
            .collect();
        Self {
            x,
            y,
            x_levels,
            y_levels,
            cells,
            held,
            best_id: best.id.clone(),
            fixed: format!(
                "batch {}, {} epochs, decay {}",
                best.batch_size, best.epochs, best.lr_decay
            ),
        }
    }
}

const CELL: (i32, i32) = (96, 40);
const LEFT: i32 = 130;
const TOP: i32 = 104;

impl Figure for SearchHeatmap {
    fn size(&self) -> (u32, u32) {
        let w = LEFT + self.x_levels.len() as i32 * CELL.0 + 30;
        let h = TOP + self.y_levels.len() as i32 * CELL.1 + 50;
        (w.max(560) as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let held: Vec<String> = self
            .held
            .iter()
            .map(|(a, v)| format!("{} {v}", a.name()))
            .collect();
        root.draw(&Text::new(
            "Best validation accuracy of each trial",
            (10, 10),
            font(16.0),
        ))?;
        root.draw(&Text::new(
            format!(
                "held at the best trial's values: {}; {}",
                held.join(", "),
                self.fixed
            ),
            (10, 32),
            font(12.0),
        ))?;
        let accs = self
            .cells
            .iter()
            .flatten()
            .flatten()
            .filter_map(|t| t.best_val_acc);
        let (lo, hi) = accs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), a| {
            (lo.min(a), hi.max(a))
        });
        let centre = |s: TextStyle<'static>| s.pos(Pos::new(HPos::Center, VPos::Center));
        for (j, level) in self.x_levels.iter().enumerate() {
            let x = LEFT + j as i32 * CELL.0 + CELL.0 / 2;
            root.draw(&Text::new(level.clone(), (x, TOP - 12), centre(font(12.0))))?;
        }
        let width = self.x_levels.len() as i32 * CELL.0;
        root.draw(&Text::new(
            format!("{} →", self.x.name()),
            (LEFT + width / 2, TOP - 34),
            centre(font(13.0)),
        ))?;
        root.draw(&Text::new(
            format!("{} ↓", self.y.name()),
            (10, TOP - 12),
            font(13.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        for (i, (level, row)) in self.y_levels.iter().zip(&self.cells).enumerate() {
            let y = TOP + i as i32 * CELL.1;
            root.draw(&Text::new(
                level.clone(),
                (LEFT - 10, y + CELL.1 / 2),
                font(12.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            for (j, cell) in row.iter().enumerate() {
                let x = LEFT + j as i32 * CELL.0;
                let (text, share) = match cell {
                    Some(Trial {
                        best_val_acc: Some(a),
                        ..
                    }) => (
                        format!("{a:.4}"),
                        if hi > lo { (a - lo) / (hi - lo) } else { 1.0 },
                    ),
                    Some(t) => (t.status.clone(), 0.0),
                    None => ("not run".to_owned(), 0.0),
                };
                // Shade from a floor, so the worst cell is still tinted and text stays legible.
                let share = 0.08 + 0.72 * share;
                shaded_cell(root, (x, y), CELL, share, text, 13.0)?;
                if cell.as_ref().is_some_and(|t| t.id == self.best_id) {
                    root.draw(&Rectangle::new(
                        [(x + 1, y + 1), (x + CELL.0 - 1, y + CELL.1 - 1)],
                        RGBColor(230, 140, 0).stroke_width(3),
                    ))?;
                }
            }
        }
        let bottom = TOP + self.y_levels.len() as i32 * CELL.1 + 20;
        root.draw(&Text::new(
            "orange frame: the best trial; darker = higher accuracy (scaled from the lowest to the highest shown)",
            (10, bottom),
            font(11.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(lr: f64, hidden: usize, l2: f64, acc: Option<f64>) -> Trial {
        Trial {
            id: format!("lr{lr}-h{hidden}-l2{l2}"),
            lr,
            hidden,
            l2,
            activation: "relu".to_owned(),
            batch_size: 64,
            epochs: 5,
            lr_decay: 0.95,
            status: if acc.is_some() { "ok" } else { "diverged" }.to_owned(),
            best_val_acc: acc,
            best_epoch: acc.map(|_| 1),
            seconds: 1.0,
        }
    }

    #[test]
    fn heatmap_holds_the_other_hyperparameters_at_the_best_trial() {
        // Ranked best first, as results.json is.
        let trials = vec![
            trial(0.1, 64, 0.001, Some(0.9)),
            trial(0.1, 64, 0.0, Some(0.89)),
            trial(0.05, 128, 0.001, Some(0.85)),
            trial(0.05, 64, 0.0, Some(0.84)),
            trial(0.5, 64, 0.001, None),
            // From a merged search that trained longer: not comparable, so not shown.
            Trial {
                epochs: 10,
                ..trial(0.05, 64, 0.001, Some(0.95))
            },
        ];
        let map = SearchHeatmap::new(
            &trials,
            &trials[0],
            Hyperparameter::Lr,
            Hyperparameter::Hidden,
        );
        assert_eq!(map.x_levels, ["0.05", "0.1", "0.5"]);
        assert_eq!(map.y_levels, ["64", "128"]);
        assert_eq!(
            map.held,
            [
                (Hyperparameter::L2, "0.001".to_owned()),
                (Hyperparameter::Activation, "relu".to_owned())
            ]
        );
        let acc = |r: usize, c: usize| map.cells[r][c].as_ref().map(|t| t.status.clone());
        assert_eq!(acc(0, 1), Some("ok".to_owned()));
        assert_eq!(map.cells[0][1].as_ref().unwrap().best_val_acc, Some(0.9));
        assert_eq!(
            acc(0, 0),
            None,
            "lr 0.05 h64 l2 0.001 ran only for 10 epochs"
        );
        assert_eq!(acc(0, 2), Some("diverged".to_owned()));
        assert_eq!(map.cells[1][0].as_ref().unwrap().best_val_acc, Some(0.85));
        assert_eq!(map.best_id, trials[0].id);
    }
}
