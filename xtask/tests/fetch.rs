//! `fetch-data` against a local HTTP server started by each test (never the internet).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};
use xtask::fetch::{FetchPlan, Outcome, Wanted, fetch};

/// A route's answer: HTTP status and body.
type Routes = HashMap<String, (u16, Vec<u8>)>;

/// Serves `routes` on 127.0.0.1 (one request per connection, at most 64 connections, then the
/// thread ends); returns the base URL and a log of requested paths.
fn serve(routes: Routes) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_owned();
            log.lock().unwrap().push(path.clone());
            let (status, body) = routes
                .get(&path)
                .cloned()
                .unwrap_or((404, b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, requests)
}

/// A URL on which nothing listens: connections are refused, as without network.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/", listener.local_addr().unwrap())
}

fn idx(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    bytes.extend((0..n).map(|i| (i as u8).wrapping_mul(fill)));
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Two small synthetic files (images and labels) with their gzip forms and catalogue entries.
fn fixture() -> (Vec<Wanted>, Vec<Vec<u8>>) {
    let images = idx(&[3, 2, 2], 7);
    let labels = idx(&[3], 1);
    let wanted = vec![
        Wanted {
            name: "imgs.gz".into(),
            rank: 3,
            sha256: sha(&images),
        },
        Wanted {
            name: "lbls.gz".into(),
            rank: 1,
            sha256: sha(&labels),
        },
    ];
    (wanted, vec![gzip(&images), gzip(&labels)])
}

fn routes(prefix: &str, wanted: &[Wanted], bodies: &[Vec<u8>]) -> Routes {
    wanted
        .iter()
        .zip(bodies)
        .map(|(w, b)| (format!("/{prefix}{}", w.name), (200, b.clone())))
        .collect()
}

fn plan(
    dir: &Path,
    files: Vec<Wanted>,
    mirrors: Vec<String>,
    local_dirs: Vec<PathBuf>,
) -> FetchPlan {
    FetchPlan {
        dir: dir.to_owned(),
        files,
        mirrors,
        local_dirs,
        progress: false,
    }
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn downloads_and_verifies_falling_back_to_the_next_mirror() {
    let (wanted, bodies) = fixture();
    let (base, requests) = serve(routes("good/", &wanted, &bodies));
    let dir = tempfile::tempdir().unwrap();
    let mirrors = vec![format!("{base}missing/"), format!("{base}good/")];
    let mut log = Vec::new();
    let outcomes = fetch(&plan(dir.path(), wanted.clone(), mirrors, vec![]), |l| {
        log.push(l.to_owned())
    })
    .unwrap();

    assert_eq!(
        outcomes[0].1,
        Outcome::Downloaded(format!("{base}good/imgs.gz"))
    );
    assert_eq!(
        std::fs::read(dir.path().join("imgs.gz")).unwrap(),
        bodies[0]
    );
    assert_eq!(
        std::fs::read(dir.path().join("lbls.gz")).unwrap(),
        bodies[1]
    );
    assert_eq!(dir_listing(dir.path()), vec!["imgs.gz", "lbls.gz"]);
    assert!(log[0].contains("HTTP status 404"), "{log:?}");
    assert_eq!(requests.lock().unwrap().len(), 4);
}

#[test]
fn an_html_error_page_served_as_gz_is_rejected() {
    let (wanted, bodies) = fixture();
    let mut r = routes("good/", &wanted, &bodies);
    for w in &wanted {
        r.insert(
            format!("/html/{}", w.name),
            (200, b"<!DOCTYPE html><html>Access denied</html>".to_vec()),
        );
    }
    let (base, _) = serve(r);
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    let mirrors = vec![format!("{base}html/"), format!("{base}good/")];
    fetch(&plan(dir.path(), wanted, mirrors, vec![]), |l| {
        log.push(l.to_owned())
    })
    .unwrap();
    assert!(
        log[0].contains("looks like text or an HTML page"),
        "{log:?}"
    );
    assert_eq!(dir_listing(dir.path()), vec!["imgs.gz", "lbls.gz"]);
}

#[test]
fn wrong_content_is_refused_naming_both_digests_and_leaves_nothing() {
    let (wanted, _) = fixture();
    let impostor = idx(&[3, 2, 2], 9); // well-formed IDX, other data (think MNIST)
    let mut r = Routes::new();
    r.insert("/imgs.gz".into(), (200, gzip(&impostor)));
    let (base, _) = serve(r);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(
        &plan(dir.path(), wanted.clone(), vec![base], vec![]),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&wanted[0].sha256) && err.contains(&sha(&impostor)),
        "{err}"
    );
    assert!(err.starts_with("imgs.gz: could not be fetched"), "{err}");
    assert!(
        dir_listing(dir.path()).is_empty(),
        "{:?}",
        dir_listing(dir.path())
    );
}

#[test]
fn a_truncated_download_is_refused() {
    let (wanted, bodies) = fixture();
    let mut r = Routes::new();
    let cut = bodies[0][..bodies[0].len() / 2].to_vec();
    r.insert("/imgs.gz".into(), (200, cut));
    let (base, _) = serve(r);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(
        &plan(dir.path(), wanted[..1].to_vec(), vec![base], vec![]),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("imgs.gz"), "{err}");
    assert!(dir_listing(dir.path()).is_empty());
}

#[test]
fn without_network_a_local_copy_is_used_raw_or_gzipped() {
    let (wanted, bodies) = fixture();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("imgs.gz"), &bodies[0]).unwrap();
    std::fs::write(local.path().join("lbls"), idx(&[3], 1)).unwrap(); // raw form
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    let empty = tempfile::tempdir().unwrap();
    let locals = vec![empty.path().to_owned(), local.path().to_owned()];
    let outcomes = fetch(&plan(dir.path(), wanted, vec![dead_url()], locals), |l| {
        log.push(l.to_owned())
    })
    .unwrap();
    assert_eq!(outcomes[0].1, Outcome::Copied(local.path().join("imgs.gz")));
    assert_eq!(outcomes[1].1, Outcome::Copied(local.path().join("lbls")));
    assert_eq!(
        log.iter().filter(|l| l.starts_with("no network")).count(),
        1,
        "{log:?}"
    );
}

#[test]
fn valid_files_are_kept_and_a_corrupt_one_is_replaced() {
    let (wanted, bodies) = fixture();
    let (base, requests) = serve(routes("", &wanted, &bodies));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imgs.gz"), &bodies[0]).unwrap();
    std::fs::write(dir.path().join("lbls.gz"), b"garbage").unwrap();
    let outcomes = fetch(&plan(dir.path(), wanted, vec![base], vec![]), |_| {}).unwrap();
    assert_eq!(outcomes[0].1, Outcome::AlreadyPresent);
    assert!(matches!(outcomes[1].1, Outcome::Downloaded(_)));
    assert_eq!(*requests.lock().unwrap(), vec!["/lbls.gz"]);
    assert_eq!(
        std::fs::read(dir.path().join("lbls.gz")).unwrap(),
        bodies[1]
    );
}

#[test]
fn nothing_reachable_and_no_local_copy_is_one_clear_error() {
    let (wanted, _) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&plan(dir.path(), wanted, vec![dead_url()], vec![]), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("imgs.gz: could not be fetched"), "{err}");
    assert!(err.contains("--from DIR"), "{err}");
    assert!(!err.contains('\n'));
}

/// The real catalogue digests against the real files, served over HTTP as a mirror would.
#[test]
fn real_fashion_mnist_served_locally_matches_the_catalogue() {
    let system = Path::new(xtask::fetch::SYSTEM_COPY);
    let wanted = Wanted::fashion_mnist();
    if !wanted.iter().all(|w| system.join(&w.name).is_file()) {
        eprintln!(
            "skipped: no system copy of Fashion-MNIST in {}",
            system.display()
        );
        return;
    }
    let r = wanted
        .iter()
        .map(|w| {
            (
                format!("/{}", w.name),
                (200, std::fs::read(system.join(&w.name)).unwrap()),
            )
        })
        .collect();
    let (base, _) = serve(r);
    let dir = tempfile::tempdir().unwrap();
    let outcomes = fetch(&plan(dir.path(), wanted, vec![base], vec![]), |_| {}).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Downloaded(_))),
        "{outcomes:?}"
    );
}
