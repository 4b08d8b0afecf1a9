//! `cargo xtask report` end to end: runs made by the real `mlp` binary, reported by the real
//! `xtask` binary, and the figures checked against the files they were drawn from.

mod common;

use std::path::{Path, PathBuf};

use common::{mlp_binary, real_data_dir, run, s, synthetic_data, xtask_ok};
use image::RgbImage;
use mlp_train::{History, load_model};
use xtask::report::Numbers;
use xtask::report::curves::Curves;
use xtask::report::weights::{GridLayout, WeightScale};

// ---------------------------------------------------------------------------------------
// Reading figures back

/// Every data series of a curves SVG: the points of each 2-pixel-wide polyline, in order.
fn svg_series(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .filter(|element| element.contains("stroke-width=\"2\""))
        .map(|element| {
            let points = element.split("points=\"").nth(1).unwrap();
            let points = &points[..points.find('"').unwrap()];
            points
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Asserts that each series of a panel is drawn with one point per epoch, evenly spaced
/// left to right, and that all of the panel's series share one linear map from value to
/// pixel row (up to plotters' rounding to whole pixels): a series drawn on its own scale, or
/// in another series' place, fails.
fn assert_panel(points: &[&Vec<(f64, f64)>], values: &[&Vec<f64>]) {
    let pairs: Vec<(f64, f64)> = points
        .iter()
        .zip(values)
        .flat_map(|(p, v)| {
            assert_eq!(p.len(), v.len(), "one point per epoch");
            let steps: Vec<f64> = p.windows(2).map(|w| w[1].0 - w[0].0).collect();
            for step in &steps {
                assert!(
                    *step > 0.0 && (step - steps[0]).abs() <= 1.0,
                    "epochs evenly spaced: {steps:?}"
                );
            }
            v.iter().zip(p.iter()).map(|(&v, &(_, y))| (v, y))
        })
        .collect();
    let lo = pairs
        .iter()
        .copied()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    let hi = pairs
        .iter()
        .copied()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    assert!(hi.0 > lo.0, "a test panel must vary");
    let scale = (hi.1 - lo.1) / (hi.0 - lo.0);
    assert!(scale < 0.0, "larger values are drawn higher");
    for (v, y) in pairs {
        let want = lo.1 + (v - lo.0) * scale;
        assert!(
            (y - want).abs() <= 1.0,
            "value {v} drawn at y {y} not {want}"
        );
    }
}

/// Checks the curves SVG against the history: series drawn in the order train loss,
/// validation loss | train accuracy, validation accuracy | gradient norm | learning rate.
fn assert_curves_match(svg: &str, h: &History) {
    let series = svg_series(svg);
    assert_eq!(series.len(), 6, "six series drawn");
    let s = |k: usize| &series[k];
    assert_panel(&[s(0), s(1)], &[&h.train_loss, &h.val_loss]);
    assert_panel(&[s(2), s(3)], &[&h.train_acc, &h.val_acc]);
    assert_panel(&[s(4)], &[&h.grad_norm]);
    assert_panel(&[s(5)], &[&h.lr]);
}

/// Asserts that tile k of weights.png is column k of W1 under the per-tile scale.
fn assert_weight_tiles(png: &RgbImage, w1: ndarray::ArrayView2<f32>, layout: &GridLayout) {
    let (width, height, zoom) = (layout.width, layout.height, layout.zoom);
    for k in 0..w1.ncols() {
        let column = w1.column(k);
        let m = column.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let (x0, y0) = layout.origin(k);
        for r in 0..height {
            for c in 0..width {
                let want = (127.5
                    + 127.5 * f64::from(column[(r * width + c) as usize]) / f64::from(m))
                .round() as u8;
                for d in 0..zoom {
                    let got = png.get_pixel(x0 + c * zoom + d, y0 + r * zoom + d).0;
                    assert_eq!(got, [want; 3], "tile {k} pixel ({r}, {c})");
                }
            }
        }
    }
}

fn numbers(report: &Path) -> Numbers {
    serde_json::from_slice(&std::fs::read(report.join("numbers.json")).unwrap()).unwrap()
}

/// `mlp test --json`: accuracy, correct, count and loss.
fn mlp_test(mlp: &Path, model: &Path, data_args: &[&str]) -> (f64, usize, usize, f64) {
    let mut args = vec!["test", "--json", "--model", s(model)];
    args.extend(data_args);
    let out = run(mlp, &args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        json["accuracy"].as_f64().unwrap(),
        json["correct"].as_u64().unwrap() as usize,
        json["count"].as_u64().unwrap() as usize,
        json["loss"].as_f64().unwrap(),
    )
}

/// The text of every `<text>` element of an SVG, in document order.
fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn the_curves_plot_every_series_of_the_history() {
    // Every series its own shape, so that drawing one in another's place shows.
    let n = 9;
    let series = |f: &dyn Fn(f64) -> f64| (0..n).map(|i| f(i as f64)).collect::<Vec<_>>();
    let history = History {
        train_loss: series(&|e| 0.9 * 0.8f64.powf(e) + 0.1),
        val_loss: series(&|e| 0.5 + 0.1 * (e * 1.7).sin()),
        train_acc: series(&|e| 0.95 - 0.2 * 0.7f64.powf(e)),
        val_acc: series(&|e| 0.8 + 0.01 * ((e as usize * 7) % 5) as f64),
        grad_norm: series(&|e| 1.0 + 0.05 * (e - 4.0).powi(2)),
        lr: series(&|e| 0.2 * 0.9f64.powf(e)),
        epoch_seconds: vec![0.1; n],
    };
    let svg = xtask::report::canvas::svg(&Curves::new(&history, None, 0))
        .unwrap()
        .unwrap();
    assert_curves_match(&svg, &history);
}

/// A per-step schedule's rate is drawn at every step, from the run's settings; a run
/// without a validation set draws (and names) no validation series.
#[test]
fn a_per_step_schedule_is_drawn_step_by_step_and_no_validation_is_drawn_as_none() {
    let n = 9;
    let history = History {
        train_loss: vec![0.5; n],
        train_acc: vec![0.8; n],
        grad_norm: vec![1.0; n],
        lr: vec![0.1; n],
        epoch_seconds: vec![0.1; n],
        ..History::default()
    };
    let config = mlp_train::TrainConfig {
        epochs: n,
        lr: 0.1,
        schedule: mlp_train::ScheduleKind::Cosine,
        warmup_epochs: 1,
        ..Default::default()
    };
    let svg = xtask::report::canvas::svg(&Curves::new(&history, Some(&config), 5))
        .unwrap()
        .unwrap();
    let series = svg_series(&svg);
    // Train loss, train accuracy, gradient norm, learning rate.
    assert_eq!(series.len(), 4, "{series:?}");
    let lr = &series[3];
    assert_eq!(lr.len(), n * 5, "one point per step");
    // Warm-up: step 0 at a fifth of the peak (lower on the page: larger y), step 4 at it;
    // the last step near 0.
    assert!(lr[0].1 > lr[4].1 && lr[n * 5 - 1].1 > lr[4].1, "{lr:?}");
    assert!(!svg_texts(&svg).contains(&"validation"));
}

/// Trains with the real `mlp` on `data`, reports with the real `xtask`, and checks every
/// figure against the files it came from. Returns the report folder.
fn train_and_report(root: &Path, mlp: &Path, data_args: &[&str], train_args: &[&str]) -> PathBuf {
    let run_dir = root.join("run");
    let mut args = vec!["train", "--quiet", "--out", s(&run_dir)];
    args.extend(data_args);
    args.extend(train_args);
    run(mlp, &args);

    let report = root.join("report");
    let mut args = vec![
        "report",
        "--run",
        s(&run_dir),
        "--out",
        s(&report),
        "--units",
        "all",
        "--zoom",
        "3",
    ];
    args.extend(data_args);
    xtask_ok(&args);

    // Curves: the points drawn are history.json's.
    let history: History =
        serde_json::from_slice(&std::fs::read(run_dir.join("history.json")).unwrap()).unwrap();
    assert_curves_match(
        &std::fs::read_to_string(report.join("curves.svg")).unwrap(),
        &history,
    );

    // Weights: tile k is column k of W1, for every unit.
    let model = load_model(&run_dir.join("model.msgpack")).unwrap().model;
    let png = image::open(report.join("weights.png")).unwrap().to_rgb8();
    let side = (model.shape().inputs as f64).sqrt() as u32;
    let grid = xtask::report::weights::WeightGrid::new(
        model.w1.view(),
        (side, side),
        usize::MAX,
        WeightScale::PerTile,
        3,
    );
    assert_eq!(png.dimensions(), grid.layout.size());
    assert_weight_tiles(&png, model.w1.view(), &grid.layout);

    // Confusion: sums to the test set, and its diagonal is `mlp test`'s accuracy.
    let numbers = numbers(&report);
    let model_path = run_dir.join("model.msgpack");
    let (accuracy, correct, count, loss) = mlp_test(mlp, &model_path, data_args);
    let total: usize = numbers.confusion.iter().flatten().sum();
    let diagonal: usize = (0..10).map(|c| numbers.confusion[c][c]).sum();
    assert_eq!((total, diagonal), (count, correct));
    assert_eq!(numbers.test_accuracy, accuracy);
    // The loss agrees to rounding: the two sum the same terms in other orders.
    assert!(
        (numbers.test_loss - loss).abs() <= 1e-6 * loss,
        "{} vs {loss}",
        numbers.test_loss
    );
    // …and the heatmap shows those counts: its whole-number labels, in drawing order, are
    // the matrix row by row.
    let svg = std::fs::read_to_string(report.join("confusion.svg")).unwrap();
    let counts: Vec<usize> = svg_texts(&svg)
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(counts, numbers.confusion.concat());

    // Mistakes: image k of mistakes.png is test image mistakes[k], pixel for pixel.
    let data_dir = Path::new(data_args[1]);
    let test = fmnist_data::load_split(
        data_dir,
        fmnist_data::Split::Test,
        fmnist_data::Verify::Skip,
    )
    .unwrap();
    let (h, w) = test.image_shape();
    let png = image::open(report.join("mistakes.png")).unwrap().to_rgb8();
    let zoom = xtask::report::predictions::MISTAKE_ZOOM;
    for (k, &i) in numbers.mistakes.iter().enumerate() {
        let (x0, y0) = xtask::report::predictions::mistake_image_origin(k, (w as u32, h as u32));
        for (p, &v) in test.image(i).iter().enumerate() {
            let (r, c) = ((p / w) as u32, (p % w) as u32);
            let got = png.get_pixel(x0 + c * zoom + zoom - 1, y0 + r * zoom).0;
            assert_eq!(got, [v; 3], "mistake {k} (test image {i}) pixel ({r}, {c})");
        }
    }
    // The mistakes shown are mistakes according to `mlp predict` (which takes 28×28 models
    // only), surest first.
    let mut last_confidence = f64::INFINITY;
    let checked = if model.shape().inputs == 784 { 3 } else { 0 };
    for &i in numbers.mistakes.iter().take(checked) {
        let mut args = vec!["predict", "--json", "--model", s(&model_path)];
        let index = i.to_string();
        args.extend(["--test-index", &index]);
        args.extend(data_args);
        let out: serde_json::Value = serde_json::from_slice(&run(mlp, &args).stdout).unwrap();
        let top = &out[0]["top3"][0];
        assert_ne!(
            top["class"], out[0]["true_class"],
            "test image {i} is misclassified"
        );
        let confidence = top["probability"].as_f64().unwrap();
        assert!(confidence <= last_confidence + 1e-6, "surest first");
        last_confidence = confidence;
    }

    // The pages: every figure in report.md exists; report.html needs no other file.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for figure in ["curves.png", "weights.png", "confusion.png", "mistakes.png"] {
        assert!(
            md.contains(&format!("]({figure})")),
            "report.md shows {figure}"
        );
        assert!(report.join(figure).is_file());
    }
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(html.matches("<img src=\"data:image/png;base64,").count(), 4);
    assert_eq!(
        html.matches("src=\"").count(),
        4,
        "nothing loaded from elsewhere"
    );
    report
}

#[test]
fn report_of_a_synthetic_run_shows_exactly_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic_data(tmp.path(), 600, 200);
    let data_args = ["--data-dir", s(&data), "--allow-unverified"];
    let train_args = [
        "--epochs",
        "7",
        "--hidden",
        "12",
        "--val-size",
        "100",
        "--batch-size",
        "16",
    ];
    let report = train_and_report(tmp.path(), &mlp_binary(), &data_args, &train_args);
    assert_eq!(numbers(&report).test_count, 200);
}

#[test]
fn report_of_a_real_run_agrees_with_mlp_test() {
    let Some(data) = real_data_dir() else {
        eprintln!(
            "skipped: Fashion-MNIST not found (run `cargo xtask fetch-data` or set FMNIST_DIR)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data_args = ["--data-dir", s(&data)];
    let train_args = ["--epochs", "3", "--hidden", "32"];
    let report = train_and_report(tmp.path(), &mlp_binary(), &data_args, &train_args);
    let numbers = numbers(&report);
    assert_eq!(numbers.test_count, 10_000);
    assert_eq!(numbers.mistakes.len(), 24);
    assert_eq!(numbers.class_names[9], "Ankle boot");
}

#[test]
fn report_of_a_search_ranks_trials_and_maps_two_hyperparameters() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic_data(tmp.path(), 400, 100);
    let search = tmp.path().join("search");
    let mlp = mlp_binary();
    run(
        &mlp,
        &[
            "search",
            "--quiet",
            "--data-dir",
            s(&data),
            "--allow-unverified",
            "--out",
            s(&search),
            "--lr",
            "0.05,0.2",
            "--hidden",
            "4,8",
            "--l2",
            "0,0.001",
            "--epochs",
            "3",
            "--val-size",
            "100",
            "--batch-size",
            "16",
            "--jobs",
            "1",
        ],
    );
    xtask_ok(&[
        "report",
        "--run",
        s(&search),
        "--data-dir",
        s(&data),
        "--allow-unverified",
        "--x",
        "hidden",
        "--y",
        "l2",
    ]);
    let report = search.join("report");
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(search.join("results.json")).unwrap()).unwrap();
    let best_lr = results[0]["lr"].as_f64().unwrap();
    let svg = std::fs::read_to_string(report.join("search.svg")).unwrap();
    // The heatmap shows the four trials at the best learning rate, and only those.
    let texts = svg_texts(&svg);
    let is_accuracy =
        |t: &&str| t.len() == 6 && t.starts_with(['0', '1']) && t[1..].starts_with('.');
    let mut shown: Vec<&str> = texts.into_iter().filter(is_accuracy).collect();
    let mut expected: Vec<String> = results
        .iter()
        .filter(|t| t["lr"].as_f64().unwrap() == best_lr)
        .map(|t| format!("{:.4}", t["best_val_acc"].as_f64().unwrap()))
        .collect();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected);
    // The ranked table lists every trial, best first.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let first = md
        .find(&format!("| 1 | {} |", results[0]["id"].as_str().unwrap()))
        .unwrap();
    let last = md
        .find(&format!("| 8 | {} |", results[7]["id"].as_str().unwrap()))
        .unwrap();
    assert!(first < last);
    assert!(md.contains("](search.png)") && report.join("search.png").is_file());
    // …and the best trial's own report follows.
    assert!(report.join("curves.svg").is_file() && report.join("weights.png").is_file());
}

/// docs/report is the report of the default run, whose model is the one in models/. Pins a
/// stale docs/report (once drawn by an out-of-date build with another grey scale).
#[test]
fn the_report_in_docs_is_that_of_the_shipped_model() {
    let root = common::workspace();
    let model = load_model(&root.join("models/fmnist-mlp-784-128-10.msgpack"))
        .unwrap()
        .model;
    let png = image::open(root.join("docs/report/weights.png"))
        .unwrap()
        .to_rgb8();
    let grid = xtask::report::weights::WeightGrid::new(
        model.w1.view(),
        (28, 28),
        64,
        WeightScale::PerTile,
        2,
    );
    assert_eq!(png.dimensions(), grid.layout.size());
    assert_weight_tiles(&png, model.w1.slice(ndarray::s![.., ..64]), &grid.layout);
    let numbers = numbers(&root.join("docs/report"));
    assert_eq!((numbers.test_correct, numbers.test_count), (8881, 10_000));
}

/// A model file alone, here the shipped model in PyTorch's layout (as a network trained in
/// PyTorch would come): weights, confusion matrix and mistakes, no curves; the test numbers
/// those of `mlp test` (8881 of 10000); an activation that disagrees with the file's is
/// refused in one line.
#[test]
fn report_of_a_pytorch_layout_model_file_shows_the_model_without_curves() {
    let Some(data) = real_data_dir() else {
        eprintln!("skipped: Fashion-MNIST not found");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let saved = load_model(&root.join("models/fmnist-mlp-784-128-10.msgpack")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("net.safetensors");
    let bytes = mlp_train::model_to_safetensors(&saved, mlp_train::Layout::Torch);
    std::fs::write(&file, bytes).unwrap();
    xtask_ok(&["report", "--run", s(&file), "--data-dir", s(&data)]);
    let out = tmp.path().join("net-report");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "confusion.png",
            "confusion.svg",
            "mistakes.png",
            "numbers.json",
            "report.html",
            "report.md",
            "weights.png"
        ]
    );
    let numbers: Numbers =
        serde_json::from_slice(&std::fs::read(out.join("numbers.json")).unwrap()).unwrap();
    assert_eq!((numbers.test_correct, numbers.test_count), (8881, 10_000));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("from the model file alone"), "{report}");

    let o = common::xtask(&[
        "report",
        "--run",
        s(&file),
        "--data-dir",
        s(&data),
        "--activation",
        "tanh",
        "--out",
        s(&tmp.path().join("other")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("net.safetensors: the file's activation is relu, not the tanh asked for")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
}
