//! The truncated bare chain is cached on disk: a cached run is the cold run byte for byte, a
//! corrupt cache file is ignored, and concurrent writers never leave a broken file.

use std::path::Path;
use std::process::{Command, Output};

fn dnrg(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(args)
        .env("DNRG_CACHE_DIR", cache)
        .env_remove("DNRG_NO_CACHE")
        .output()
        .expect("dnrg runs")
}

const RUN: &[&str] = &[
    "run",
    "kondo-symmetric",
    "--set",
    "nrg.keep=120",
    "--set",
    "nrg.T_min=1e-7",
    "--quiet",
];

fn cache_files(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache.join("bare-chain"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn cached_runs_equal_cold_ones_and_bad_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cold = dnrg(dir.path(), RUN);
    assert!(
        cold.status.success(),
        "{}",
        String::from_utf8_lossy(&cold.stderr)
    );
    let files = cache_files(dir.path());
    assert_eq!(
        files.len(),
        1,
        "one cache file per chain and truncation: {files:?}"
    );
    let cached = dnrg(dir.path(), RUN);
    assert_eq!(
        cold.stdout, cached.stdout,
        "cached bare chain changes the records"
    );

    // corrupt it in four ways: garbage, truncated JSON, a valid file of another key, and the
    // right key with other numbers (as an older version of the algorithm would have written)
    let good = std::fs::read_to_string(&files[0]).unwrap();
    let mut stale: serde_json::Value = serde_json::from_str(&good).unwrap();
    let shift = &mut stale["shells"][1][0];
    *shift = serde_json::json!(shift.as_f64().unwrap() * (1.0 + 1e-12));
    for bad in [
        "garbage".to_string(),
        good[..good.len() / 2].to_string(),
        good.replace("keep=120", "keep=121"),
        stale.to_string(),
    ] {
        std::fs::write(&files[0], &bad).unwrap();
        let again = dnrg(dir.path(), RUN);
        assert!(again.status.success());
        assert_eq!(
            cold.stdout, again.stdout,
            "a bad cache file leaked into the records"
        );
    }
    // the last run rewrote the file: it is whole again
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), good);
}

#[test]
fn concurrent_writers_leave_one_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let reference = {
        let off = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
            .args(RUN)
            .env("DNRG_NO_CACHE", "1")
            .env("DNRG_CACHE_DIR", off.path())
            .output()
            .unwrap();
        assert!(
            cache_files(off.path()).is_empty(),
            "DNRG_NO_CACHE writes nothing"
        );
        out.stdout
    };
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_dnrg"))
                .args(RUN)
                .env("DNRG_CACHE_DIR", dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, reference);
    }
    // one file, complete (no temporary leftovers), and a later run reads it back identically
    let files = cache_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(dnrg(dir.path(), RUN).stdout, reference);
}
