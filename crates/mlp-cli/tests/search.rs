//! `mlp search` on small synthetic data: resuming, sharding and merging, divergence, and
//! independence from the number of workers.

mod common;

use std::path::Path;

use common::*;

fn search(data: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "search",
        "--data-dir",
        data,
        "--allow-unverified",
        "--lr",
        "0.05,0.2,1e30",
        "--hidden",
        "8,16",
        "--l2",
        "0,0.001",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--val-size",
        "40",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = mlp(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// results.json without the wall-clock seconds, which differ between any two runs.
fn table(dir: &Path) -> Vec<serde_json::Value> {
    search_results(dir)
}

#[test]
fn a_grid_is_ranked_with_diverged_trials_recorded_and_the_best_model_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let out = tmp.path().join("search");
    let o = search(data.to_str().unwrap(), &out, &[]);
    let rows = table(&out);
    assert_eq!(rows.len(), 12);
    let diverged: Vec<_> = rows.iter().filter(|r| r["status"] == "diverged").collect();
    assert_eq!(diverged.len(), 4, "every lr=1e30 trial diverges: {rows:?}");
    assert!(
        rows[..8].iter().all(|r| r["status"] == "ok"),
        "diverged trials rank last"
    );
    let accs: Vec<f64> = rows[..8]
        .iter()
        .map(|r| r["best_val_acc"].as_f64().unwrap())
        .collect();
    assert!(
        accs.windows(2).all(|w| w[0] >= w[1]),
        "ranked by validation accuracy: {accs:?}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(stdout(&o).contains("best: "), "{}", stdout(&o));

    let test = mlp(&[
        "test",
        "--model",
        out.join("best/model.msgpack").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--json",
    ]);
    assert!(test.status.success(), "{}", stderr(&test));
}

#[test]
fn a_rerun_skips_finished_trials_and_finishes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let out = tmp.path().join("search");
    search(data.to_str().unwrap(), &out, &[]);
    let before = table(&out);
    let best_before = std::fs::read(out.join("best/model.msgpack")).unwrap();

    // As if killed midway: two trials never finished (no result.json).
    let mut trials: Vec<_> = std::fs::read_dir(out.join("trials"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    trials.sort();
    for t in &trials[..2] {
        std::fs::remove_file(t.join("result.json")).unwrap();
    }
    let untouched: Vec<Vec<u8>> = trials[2..]
        .iter()
        .map(|t| std::fs::read(t.join("result.json")).unwrap())
        .collect();

    let o = search(data.to_str().unwrap(), &out, &[]);
    assert!(
        stdout(&o).contains("10 already finished, 2 to run"),
        "{}",
        stdout(&o)
    );
    for (t, bytes) in trials[2..].iter().zip(&untouched) {
        assert_eq!(
            &std::fs::read(t.join("result.json")).unwrap(),
            bytes,
            "{} was redone",
            t.display()
        );
    }
    assert_eq!(table(&out), before);
    assert_eq!(
        std::fs::read(out.join("best/model.msgpack")).unwrap(),
        best_before
    );
}

#[test]
fn shards_merged_equal_the_whole_search_and_jobs_do_not_change_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let d = data.to_str().unwrap();
    let whole = tmp.path().join("whole");
    search(d, &whole, &["--jobs", "1"]);

    let (a, b, merged) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("merged"),
    );
    search(d, &a, &["--shard", "1/2", "--jobs", "2"]);
    search(d, &b, &["--shard", "2/2", "--jobs", "2"]);
    assert_eq!(table(&a).len() + table(&b).len(), 12);
    let o = mlp(&[
        "search",
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    assert_eq!(table(&merged), table(&whole));
    assert_eq!(
        std::fs::read(merged.join("best/model.msgpack")).unwrap(),
        std::fs::read(whole.join("best/model.msgpack")).unwrap()
    );
}

#[test]
fn bad_grids_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let d = data.to_str().unwrap();
    let out = tmp.path().join("s");
    for (args, expect) in [
        (vec!["--lr", ""], "invalid value"),
        (vec!["--lr", "0.1,fast"], "invalid value"),
        (vec!["--hidden", "0"], "--hidden must be between 1"),
        (vec!["--shard", "3/2"], "expected 1 ≤ K ≤ N"),
    ] {
        let mut all = vec![
            "search",
            "--data-dir",
            d,
            "--allow-unverified",
            "--val-size",
            "20",
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend(args);
        let o = mlp(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}");
        assert!(
            stderr(&o).lines().next().unwrap_or("").contains(expect),
            "{all:?}: {}",
            stderr(&o)
        );
    }
    assert!(!out.exists());
}

/// A real kill: SIGKILL at some moment, then the same command again.
#[cfg(unix)]
#[test]
fn a_search_killed_midway_reruns_without_redoing_finished_trials() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 2000, 60);
    let out = tmp.path().join("search");
    let args = [
        "search",
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--lr",
        "0.05,0.1,0.2",
        "--hidden",
        "8,16",
        "--l2",
        "0",
        "--epochs",
        "40",
        "--batch-size",
        "8",
        "--val-size",
        "100",
        "--jobs",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the first trial has finished, while the others are still to come.
    let first = std::time::Instant::now();
    while first.elapsed() < std::time::Duration::from_secs(60) {
        let done = std::fs::read_dir(out.join("trials")).map_or(0, |d| {
            d.filter(|e| e.as_ref().unwrap().path().join("result.json").exists())
                .count()
        });
        if done > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait_with_output();

    let finished: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(out.join("trials"))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let p = e.unwrap().path().join("result.json");
                    std::fs::read(&p).ok().map(|b| (p, b))
                })
                .collect()
        })
        .unwrap_or_default();
    let o = mlp(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(table(&out).len(), 6);
    for (path, bytes) in &finished {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} was redone",
            path.display()
        );
    }
    eprintln!(
        "{} of 6 trials had finished when the search was killed",
        finished.len()
    );
}

#[test]
fn a_folder_of_another_search_is_refused_and_repeated_values_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let d = data.to_str().unwrap();
    let out = tmp.path().join("s");
    let base = [
        "search",
        "--data-dir",
        d,
        "--allow-unverified",
        "--hidden",
        "8",
        "--l2",
        "0",
        "--epochs",
        "2",
        "--val-size",
        "40",
    ];
    let mut args = base.to_vec();
    args.extend(["--lr", "0.1,0.1,0.2", "--out", out.to_str().unwrap()]);
    let o = mlp(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(table(&out).len(), 2, "0.1 listed twice is one trial");
    args.extend(["--seed", "7"]);
    let o = mlp(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds trials of another search"),
        "{}",
        stderr(&o)
    );
    // Regression: a trial stopped before it finished had only its checkpoint, which holds
    // no validation size; a rerun with another --val-size continued it on another split.
    // search.json now records the split (and the seed) for every trial of the folder.
    // (Here every trial is made to look unfinished, so that no result.json tells.)
    for trial in std::fs::read_dir(out.join("trials")).unwrap().flatten() {
        std::fs::remove_file(trial.path().join("result.json")).unwrap();
    }
    let mut other_split = base.to_vec();
    let last = other_split.len() - 1;
    other_split[last] = "30";
    other_split.extend(["--lr", "0.1,0.2", "--out", out.to_str().unwrap()]);
    let o = mlp(&other_split);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds trials of another search"),
        "{}",
        stderr(&o)
    );
}

/// Regression: the workers took trials in grid order, so a search often ended with one big
/// trial training alone on one core while the other worker idled (9 trials × 10 epochs:
/// `--jobs 2` took 1.01–1.06 × the time of `--jobs 1`, 0.89–0.93 × after). The largest
/// trials are handed out first now.
#[test]
fn the_largest_trials_are_handed_out_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let out = tmp.path().join("search");
    let o = search(data.to_str().unwrap(), &out, &["--jobs", "1"]);
    let hidden: Vec<usize> = stdout(&o)
        .lines()
        .filter(|line| line.starts_with('['))
        .map(|line| if line.contains("_h16_") { 16 } else { 8 })
        .collect();
    assert_eq!(hidden.len(), 12, "{}", stdout(&o));
    assert!(hidden.windows(2).all(|w| w[0] >= w[1]), "{hidden:?}");
}

/// The optimiser and regularisers take lists like the seed's settings: every combination is
/// a trial of its own, named by its settings, trained with them and recorded.
#[test]
fn lists_of_the_new_hyperparameters_make_a_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 60);
    let out = tmp.path().join("search");
    let o = mlp(&[
        "search",
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--lr",
        "0.05",
        "--hidden",
        "8",
        "--l2",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--val-size",
        "40",
        "--optimizer",
        "sgd,nesterov",
        "--hidden-dropout",
        "0,0.2",
        // Plain SGD ignores momentum: two values make no more SGD trials.
        "--momentum",
        "0.9,0.8",
        "--flip",
        "true",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = table(&out);
    let mut recipes: Vec<&str> = rows.iter().map(|r| r["recipe"].as_str().unwrap()).collect();
    recipes.sort_unstable();
    assert_eq!(
        recipes,
        [
            "flip",
            "hdrop0.2_flip",
            "nesterov_flip",
            "nesterov_hdrop0.2_flip",
            "nesterov_mu0.8_flip",
            "nesterov_mu0.8_hdrop0.2_flip"
        ]
    );
    assert!(stdout(&o).contains("recipe"), "{}", stdout(&o));
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("trials").join(id).join("config.json")).unwrap(),
        )
        .unwrap();
        let train = &config;
        assert_eq!(train["flip"], true, "{id}");
        let nesterov = row["recipe"].as_str().unwrap().contains("nesterov");
        assert_eq!(
            train["optimizer"],
            if nesterov { "nesterov" } else { "sgd" }
        );
        let mu = if id.contains("mu0.8") { 0.8 } else { 0.9 };
        assert_eq!(train["momentum"].as_f64().unwrap() as f32, mu, "{id}");
        let dropout = train["hidden_dropout"].as_f64().unwrap();
        assert_eq!(dropout > 0.0, id.contains("hdrop0.2"), "{id}");
    }
    // Different settings, different models.
    let models: std::collections::HashSet<Vec<u8>> = rows
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            std::fs::read(out.join("trials").join(id).join("model.msgpack")).unwrap()
        })
        .collect();
    assert_eq!(models.len(), 6);
}
