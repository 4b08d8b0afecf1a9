//! `cargo xtask fetch-data`: get the four Fashion-MNIST files into a folder, verified.
//!
//! For each file: keep it if it is already there and its content checks out; otherwise try
//! each mirror in turn; if no mirror can even be reached (no network), copy a local copy
//! instead. Every file is written to a temporary name, verified (SHA-256 of the decompressed
//! IDX content, the only identity that survives re-compression by distributors), and only
//! then renamed into place, so a failure never leaves a half-written or wrong file.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fmnist_data::{FILES, read_idx_file};
use indicatif::{ProgressBar, ProgressStyle};

/// Zalando's official location, then the copy Keras downloads from.
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
];

/// Where Debian's and Ubuntu's `dataset-fashion-mnist` package installs the files.
pub const SYSTEM_COPY: &str = "/usr/share/datasets/fashion-mnist";

/// A file to fetch and the content it must have.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// File name, as served and as stored (gzip-compressed).
    pub name: String,
    /// IDX rank: 3 for images, 1 for labels.
    pub rank: usize,
    /// SHA-256 of the decompressed content, lowercase hex.
    pub sha256: String,
}

impl Wanted {
    /// The four Fashion-MNIST files from the catalogue.
    pub fn fashion_mnist() -> Vec<Wanted> {
        FILES
            .iter()
            .map(|f| Wanted {
                name: f.name.to_owned(),
                rank: f.rank(),
                sha256: f.sha256.to_owned(),
            })
            .collect()
    }
}

/// What to fetch, from where, to where.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    /// Destination folder.
    pub dir: PathBuf,
    /// The files.
    pub files: Vec<Wanted>,
    /// Base URLs, tried in order; a file's URL is the base followed by its name.
    pub mirrors: Vec<String>,
    /// Folders with local copies, tried in order when no mirror is reachable.
    pub local_dirs: Vec<PathBuf>,
    /// Draw progress bars (only when stderr is a terminal).
    pub progress: bool,
}

/// How a file came to be in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was already there and valid.
    AlreadyPresent,
    /// Downloaded from this URL.
    Downloaded(String),
    /// Copied from this local file.
    Copied(PathBuf),
}

/// Why a download attempt failed.
enum DownloadError {
    /// The server could not be reached at all: DNS, connection refused, timeout.
    Unreachable(String),
    /// The server answered, but not with the right file.
    Failed(String),
}

/// Fetches every file of the plan; returns what happened to each, or the first failure.
pub fn fetch(
    plan: &FetchPlan,
    mut log: impl FnMut(&str),
) -> anyhow::Result<Vec<(String, Outcome)>> {
    fs::create_dir_all(&plan.dir)
        .with_context(|| format!("{}: cannot create folder", plan.dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut online = true;
    let mut outcomes = Vec::new();
    for wanted in &plan.files {
        let dest = plan.dir.join(&wanted.name);
        if dest.is_file() {
            match verify(&dest, wanted) {
                Ok(()) => {
                    outcomes.push((wanted.name.clone(), Outcome::AlreadyPresent));
                    continue;
                }
                Err(problem) => log(&format!("{}: replacing: {problem}", dest.display())),
            }
        }
        let mut failures = Vec::new();
        let mut outcome = None;
        if online {
            let mut reached_any = false;
            for base in &plan.mirrors {
                let url = format!("{base}{}", wanted.name);
                match download(&agent, &url, &dest, wanted, plan.progress) {
                    Ok(()) => {
                        outcome = Some(Outcome::Downloaded(url));
                        break;
                    }
                    Err(DownloadError::Unreachable(why)) => failures.push(format!("{url}: {why}")),
                    Err(DownloadError::Failed(why)) => {
                        reached_any = true;
                        log(&format!("{url}: {why}; trying the next source"));
                        failures.push(format!("{url}: {why}"));
                    }
                }
            }
            if outcome.is_none() && !reached_any {
                online = false;
                let first = failures
                    .first()
                    .map(String::as_str)
                    .unwrap_or("no mirrors configured");
                log(&format!("no network ({first}); using a local copy"));
            }
        }
        if outcome.is_none() {
            outcome = copy_local(&plan.local_dirs, &dest, wanted, &mut failures)?;
        }
        match outcome {
            Some(o) => outcomes.push((wanted.name.clone(), o)),
            None => bail!(
                "{}: could not be fetched ({}); pass --from DIR with a copy of the files, or set FMNIST_DIR",
                wanted.name,
                failures.join("; ")
            ),
        }
    }
    Ok(outcomes)
}

/// Checks that `path` holds the wanted content.
fn verify(path: &Path, wanted: &Wanted) -> anyhow::Result<()> {
    let file = read_idx_file(path, wanted.rank)?;
    if file.sha256 != wanted.sha256 {
        bail!(
            "{}: wrong content: sha256 of the decompressed data is {}, expected {} (is it MNIST, or another data set?)",
            path.display(),
            file.sha256,
            wanted.sha256
        );
    }
    Ok(())
}

/// Writes through `write` into a temporary file beside `dest`, verifies it, and renames it
/// into place; on any failure the temporary file is removed and `dest` is untouched.
fn install(
    dest: &Path,
    wanted: &Wanted,
    write: impl FnOnce(&mut File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = dest.with_file_name(format!(".{}.part-{}", wanted.name, std::process::id()));
    let result = (|| {
        let mut file =
            File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        verify(&tmp, wanted).map_err(|e| {
            anyhow!(
                "{}",
                e.to_string()
                    .replace(&tmp.display().to_string(), &wanted.name)
            )
        })?;
        fs::rename(&tmp, dest).with_context(|| format!("{}: cannot write", dest.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    wanted: &Wanted,
    progress: bool,
) -> Result<(), DownloadError> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => DownloadError::Failed(format!("HTTP status {code}")),
        other => DownloadError::Unreachable(other.to_string()),
    })?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = response.into_body().into_reader();
    let bar = progress_bar(progress, length, &wanted.name);
    let result = install(dest, wanted, |file| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!("download interrupted: {e}")),
            };
            file.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
        Ok(())
    });
    bar.finish_and_clear();
    result.map_err(|e| DownloadError::Failed(format!("{e:#}")))
}

fn copy_local(
    dirs: &[PathBuf],
    dest: &Path,
    wanted: &Wanted,
    failures: &mut Vec<String>,
) -> anyhow::Result<Option<Outcome>> {
    let raw_name = wanted.name.trim_end_matches(".gz");
    for dir in dirs {
        for candidate in [dir.join(&wanted.name), dir.join(raw_name)] {
            if !candidate.is_file() {
                continue;
            }
            let result = install(dest, wanted, |file| {
                let mut src = File::open(&candidate)
                    .with_context(|| format!("{}: cannot open", candidate.display()))?;
                io::copy(&mut src, file)
                    .with_context(|| format!("{}: cannot copy", candidate.display()))?;
                Ok(())
            });
            match result {
                Ok(()) => return Ok(Some(Outcome::Copied(candidate))),
                Err(e) => failures.push(format!("{}: {e:#}", candidate.display())),
            }
        }
    }
    if dirs.is_empty() {
        failures.push("no local copy configured".to_owned());
    } else {
        let looked = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        failures.push(format!("no valid local copy in {looked}"));
    }
    Ok(None)
}

fn progress_bar(enabled: bool, length: Option<u64>, name: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length.unwrap_or(0));
    let template = "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(name.to_owned());
    bar
}
