//! `mlp test`: a saved model's accuracy on the test set.

use anyhow::bail;
use fmnist_data::{CLASS_NAMES, Split};
use mlp_train::evaluate;
use serde::Serialize;

use crate::cli::TestArgs;
use crate::data::{self, images};

#[derive(Serialize)]
struct TestReport<'a> {
    model: &'a std::path::Path,
    accuracy: f64,
    loss: f64,
    correct: usize,
    count: usize,
    per_class_accuracy: Vec<f64>,
    class_names: Vec<String>,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let saved = crate::export::load_any(&args.model, args.activation)?;
    let test_set = data::load(&args.data, Split::Test)?;
    if test_set.is_empty() {
        bail!("the test file has no examples: there is nothing to measure");
    }
    let shape = saved.model.shape();
    if shape.inputs != test_set.features() || shape.classes != test_set.classes() {
        bail!(
            "{}: the model takes {} inputs and predicts {} classes, but the test images have {} pixels and {} classes",
            args.model.display(),
            shape.inputs,
            shape.classes,
            test_set.features(),
            test_set.classes()
        );
    }

    let result = evaluate(&saved.model, &images(&test_set));
    let class_names = if saved.class_names.len() == shape.classes {
        saved.class_names.clone()
    } else {
        CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    };
    let report = TestReport {
        model: &args.model,
        accuracy: result.accuracy(),
        loss: result.loss,
        correct: result.confusion.diag().sum(),
        count: result.count(),
        per_class_accuracy: result.per_class_accuracy(),
        class_names,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "model {} ({} {})",
            args.model.display(),
            shape,
            saved.model.activation
        );
        for (name, acc) in report.class_names.iter().zip(&report.per_class_accuracy) {
            println!("  {name:<12} {acc:.4}");
        }
        println!("test loss {:.4}", report.loss);
        println!(
            "test accuracy {:.4} ({}/{})",
            report.accuracy, report.correct, report.count
        );
    }
    Ok(())
}
