//! What the report says: the blocks of report.md and report.html, in reading order.

use super::inputs::{Run, Search};
use super::page::Block;
use super::{Numbers, ReportOptions};

fn figure(file: &str, alt: &str) -> Block {
    Block::Figure {
        file: file.to_owned(),
        alt: alt.to_owned(),
    }
}

fn row(cells: &[&dyn std::fmt::Display]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// The whole report.
pub fn document(
    run: &Run,
    search: Option<&Search>,
    numbers: &Numbers,
    options: &ReportOptions,
) -> Vec<Block> {
    let mut blocks = vec![Block::Paragraph(format!(
        "Made by `cargo xtask report --run {}` from the run's config.json, history.json and model.msgpack, and the test set in `{}`.",
        options.run.display(),
        options.data_dir.display()
    ))];
    if let Some(search) = search {
        blocks.extend(search_blocks(search));
        blocks.push(Block::Heading(format!(
            "The best trial ({})",
            search.best_trial().id
        )));
        blocks.push(Block::Paragraph(format!(
            "Everything below is about the model in `{}`.",
            run.dir.display()
        )));
    }
    blocks.extend(result_blocks(run, numbers));
    blocks.push(Block::Heading("Training curves".to_owned()));
    blocks.push(figure(
        "curves.png",
        "Loss, accuracy, mean gradient norm and learning rate per epoch",
    ));
    blocks.push(Block::Paragraph(
        "Train loss and accuracy are running means over each epoch's mini-batches, measured while the weights changed; validation numbers are measured after each epoch. The gradient norm is that of the data loss (without the L2 term), averaged over the epoch's mini-batches.".to_owned(),
    ));
    blocks.extend(model_blocks(&run.model.model, numbers, options));
    blocks
}

/// The report of a model file alone (ours, or a network trained in PyTorch): what the
/// model does on the test set, without a history or settings to show.
pub fn model_document(
    path: &std::path::Path,
    saved: &mlp_train::SavedModel,
    numbers: &Numbers,
    options: &ReportOptions,
) -> Vec<Block> {
    let model = &saved.model;
    let rows = test_rows(model, numbers);
    let mut blocks = vec![
        Block::Paragraph(format!(
            "Made by `cargo xtask report --run {}` from the model file alone (no training history or settings to draw), and the test set in `{}`.",
            path.display(),
            options.data_dir.display()
        )),
        Block::Heading("Result".to_owned()),
        Block::Table(vec!["measure".to_owned(), "value".to_owned()], rows),
    ];
    blocks.extend(model_blocks(model, numbers, options));
    blocks
}

/// The figures of the model itself: its first-layer weights, and its test-set confusion
/// matrix and mistakes.
fn model_blocks(model: &mlp_core::Mlp, numbers: &Numbers, options: &ReportOptions) -> Vec<Block> {
    let mut blocks = vec![Block::Heading("First-layer weights".to_owned())];
    blocks.push(figure(
        "weights.png",
        "Each hidden unit's 784 incoming weights as a 28×28 image",
    ));
    let inputs = model.shape().inputs;
    blocks.push(Block::Paragraph(format!(
        "Tile k is column k of W1 ({inputs}×{}), pixel (row r, column c) from weight (r·width + c) of that column, for hidden units 0 to {}. Normalisation: {}.",
        model.shape().hidden,
        numbers.weight_units.len().saturating_sub(1),
        options.weight_scale.describe()
    )));
    blocks.push(Block::Heading("Test set: confusion matrix".to_owned()));
    blocks.push(figure("confusion.png", "Confusion matrix of the test set"));
    blocks.push(per_class_table(numbers));
    blocks.push(Block::Heading(
        "Test set: the most confident mistakes".to_owned(),
    ));
    blocks.push(figure(
        "mistakes.png",
        "The misclassified test images with the highest predicted probability",
    ));
    blocks.push(Block::Paragraph(format!(
        "Test-set indices, in order: {}. Look at one with `mlp predict --test-index N`.",
        numbers
            .mistakes
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )));
    blocks
}

/// The result rows every report has: the model and its test-set numbers.
fn test_rows(model: &mlp_core::Mlp, numbers: &Numbers) -> Vec<Vec<String>> {
    vec![
        row(&[&"model", &format!("{} {}", model.shape(), model.activation)]),
        row(&[
            &"test accuracy",
            &format!(
                "{:.4} ({} of {})",
                numbers.test_accuracy, numbers.test_correct, numbers.test_count
            ),
        ]),
        row(&[&"test loss", &format!("{:.4}", numbers.test_loss)]),
    ]
}

fn result_blocks(run: &Run, numbers: &Numbers) -> Vec<Block> {
    let h = &run.history;
    let (best_epoch, best_val) =
        h.val_acc
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, &a)| {
                if a > best.1 { (i + 1, a) } else { best }
            });
    let model = &run.model.model;
    let seconds: f64 = h.epoch_seconds.iter().sum();
    let last = h.len() - 1;
    let mut rows = test_rows(model, numbers);
    let kept = if h.val_acc.is_empty() {
        format!(
            "no validation set: the model of the last epoch, {}",
            h.len()
        )
    } else {
        format!("{best_val:.4} at epoch {best_epoch} (the kept model)")
    };
    let val_loss = h
        .val_loss
        .get(last)
        .map_or("-".to_owned(), |l| format!("{l:.4}"));
    rows.extend([
        row(&[&"best validation accuracy", &kept]),
        row(&[&"epochs", &h.len()]),
        row(&[
            &"last epoch: train loss / validation loss",
            &format!("{:.4} / {val_loss}", h.train_loss[last]),
        ]),
        row(&[
            &"training time (epochs, validation included)",
            &format!("{seconds:.1} s"),
        ]),
    ]);
    let mut blocks = vec![
        Block::Heading("Result".to_owned()),
        Block::Table(vec!["measure".to_owned(), "value".to_owned()], rows),
        Block::Heading("Configuration (config.json)".to_owned()),
    ];
    let mut settings = Vec::new();
    flatten("", &run.config, &mut settings);
    blocks.push(Block::Table(
        vec!["setting".to_owned(), "value".to_owned()],
        settings.into_iter().map(|(k, v)| vec![k, v]).collect(),
    ));
    blocks
}

/// `{"train": {"lr": 0.2}}` → ("train.lr", "0.2").
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn per_class_table(numbers: &Numbers) -> Block {
    let rows = numbers
        .class_names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let counts = &numbers.confusion[c];
            let total: usize = counts.iter().sum();
            // The class most often predicted instead of the right one.
            let confused = (0..counts.len())
                .filter(|&p| p != c && counts[p] > 0)
                .max_by_key(|&p| (counts[p], std::cmp::Reverse(p)))
                .map_or("-".to_owned(), |p| {
                    format!("{} ({})", numbers.class_names[p], counts[p])
                });
            row(&[
                name,
                &counts[c],
                &total,
                &format!("{:.4}", numbers.per_class_accuracy[c]),
                &confused,
            ])
        })
        .collect();
    Block::Table(
        [
            "class",
            "correct",
            "images",
            "accuracy",
            "most often mistaken for",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    )
}

fn search_blocks(search: &Search) -> Vec<Block> {
    let rows = search
        .trials
        .iter()
        .enumerate()
        .map(|(rank, t)| {
            let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
            row(&[
                &(rank + 1),
                &t.id,
                &t.lr,
                &t.hidden,
                &t.l2,
                &t.activation,
                &t.status,
                &opt(t.best_val_acc),
                &t.best_epoch.map_or("-".to_owned(), |e| e.to_string()),
                &format!("{:.1}", t.seconds),
            ])
        })
        .collect();
    vec![
        Block::Heading("Search".to_owned()),
        Block::Paragraph(format!(
            "{} trials from `{}`, ranked by best validation accuracy (the test set played no part in the ranking).",
            search.trials.len(),
            search.dir.display()
        )),
        figure("search.png", "Validation accuracy over two hyperparameters"),
        Block::Table(
            [
                "rank",
                "id",
                "lr",
                "hidden",
                "l2",
                "activation",
                "status",
                "val acc",
                "epoch",
                "seconds",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ),
    ]
}
