//! Time to pull and unpack one image into a new store (cold), then to pull it again from
//! the cache (warm); bench/images.py drives it against `alien serve`'s `/v2`.
//!
//!     cargo run --release -p images --example pull -- --reference HOST/REPO:TAG \
//!         [--user USER --password PASSWORD] [--runs 3] [--dir DIR]
//!
//! Each cold run uses a new store under `--dir` (by default a new directory under
//! /var/tmp, on disk), removed afterwards. Prints one JSON line per run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use images::{Auth, ImageStore};

#[derive(Debug, Default)]
struct Args {
    reference: String,
    user: Option<String>,
    password: Option<String>,
    runs: usize,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        runs: 3,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--reference" => args.reference = value(),
            "--user" => args.user = Some(value()),
            "--password" => args.password = Some(value()),
            "--runs" => args.runs = value().parse().expect("--runs is a number"),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.reference.is_empty(), "--reference is required");
    args
}

/// Files and bytes under `dir`, symlinks not followed.
fn usage(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("list").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

fn main() {
    let args = args();
    let auth = match (&args.user, &args.password) {
        (Some(user), Some(password)) => Auth::basic(user, password),
        _ => Auth::None,
    };
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => tempfile_dir(),
    };
    for run in 0..args.runs {
        let root = parent.join(format!("store-{run}"));
        let store = ImageStore::open(&root).expect("open the store");
        let started = Instant::now();
        let image = store.pull(&args.reference, &auth).expect("cold pull");
        let cold = started.elapsed();
        let started = Instant::now();
        store.pull(&args.reference, &auth).expect("warm pull");
        let warm = started.elapsed();
        let (files, bytes) = usage(&image.rootfs);
        println!(
            "{{\"run\":{run},\"cold_s\":{:.3},\"warm_s\":{:.4},\"files\":{files},\"bytes\":{bytes}}}",
            cold.as_secs_f64(),
            warm.as_secs_f64()
        );
        store.remove_unused(&[]).expect("remove the image");
        drop(store);
        std::fs::remove_dir_all(&root).expect("remove the store");
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = PathBuf::from(format!("/var/tmp/images-pull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the work directory");
    dir
}
