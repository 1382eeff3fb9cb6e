//! Spilling the spectral function's per-shell data to disk (issue #9, item 6): a spilled run
//! gives the in-memory run's numbers bit for bit, and its temporary directory is gone after a
//! complete run and after Ctrl-C.

mod common;

use common::sandbox::Sandbox;
use dnrg::params::{FieldKind, Param, RunConfig};
use dnrg::spectral::{Probe, SpectralOptions, Spectrum, spectrum_probed};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const T: f64 = 1e-2;

fn compute(config: &RunConfig, budget: Option<usize>) -> Spectrum {
    let probe = Probe {
        store_budget: budget,
        ..Probe::default()
    };
    spectrum_probed(
        config,
        &SpectralOptions::at(T),
        &probe,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
    .unwrap()
}

/// Everything a spectrum reports, with every f64 in its shortest round-trip form (`{:?}`),
/// which tells every bit pattern apart (−0 from 0 too): equal strings are equal bits.
fn fingerprint(s: &Spectrum) -> String {
    let omega = s.frequencies();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?} {:?}\n{:?}\n{:?}",
        s.evaluate_with_parts(&omega),
        s.bins,
        s.moments,
        s.shell_weights,
        s.shell_weight_parts,
        s.trace_residual,
        s.trace_residual_parts,
        s.sum_rule_residuals(),
        s.sums
    )
}

#[test]
fn a_spilled_run_equals_the_in_memory_run_bit_for_bit() {
    // asymmetric SIAM with the self-energy trick, ∂ and ∂² in ε_d and U; and with an impurity
    // field, where both spins' operators are stored
    let mut field = common::siam(0.4, -0.15, 0.1, 3.0, 60, 6e-3);
    field.model.field = FieldKind::Impurity;
    field.model.h = 0.01;
    field.derive = vec![Param::EpsD, Param::H];
    let mut plain = common::siam(0.4, -0.15, 0.1, 3.0, 60, 6e-3);
    plain.derive = vec![Param::EpsD, Param::U];
    for config in [plain, field] {
        let memory = compute(&config, None);
        assert_eq!(
            memory.spilled_bytes, 0,
            "the default budget holds a small run"
        );
        assert_eq!(memory.stored_in_memory, memory.stored_bytes);
        let reference = fingerprint(&memory);
        // every shell to disk as soon as it is done; then about half of them
        for budget in [0, memory.stored_bytes / 2] {
            let spilled = compute(&config, Some(budget));
            assert!(spilled.spilled_bytes > 0);
            assert!(spilled.stored_in_memory <= budget);
            assert_eq!(spilled.stored_bytes, memory.stored_bytes);
            let fp = fingerprint(&spilled);
            // not a tautology: derivatives are there, and the strings are long
            assert!(fp.contains("a_raw") && fp.len() > 100_000, "{}", fp.len());
            assert!(fp == reference, "budget {budget}: the spilled run differs");
        }
        // the directory of each spilled run is gone
        assert_eq!(dnrg::spill::live_dirs(), Vec::<std::path::PathBuf>::new());
    }
}

/// The spill directories (`dnrg-spill-*`) under `dir`.
fn spill_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(dnrg::spill::DIR_PREFIX))
        .collect()
}

/// A `dnrg spectrum` that spills: 500 kept states with ∂, ∂² in ε_d and U store 126 MB over 19
/// shells (measured), and nrg.max_memory = 100 MiB leaves ~23 MB for them beside the run and the
/// reserve (109 MB spilled); its temporary directory goes under the sandbox's own TMPDIR.
fn spilling(sb: &Sandbox, tmp: &Path) -> std::process::Command {
    let mut cmd = sb.command(&[
        "spectrum",
        "resonant-level",
        "--set",
        "model.U=0.4",
        "--set",
        "nrg.keep=500",
        "--set",
        "nrg.Lambda=3",
        "--set",
        "nrg.T_min=1e-4",
        "--set",
        "nrg.max_memory=100MiB",
        "--derive",
        "eps_d,U",
    ]);
    cmd.env("TMPDIR", tmp);
    cmd
}

#[test]
fn the_spill_directory_is_removed_after_a_complete_run() {
    let sb = Sandbox::new();
    let tmp = sb.root().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = spilling(&sb, &tmp).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("spilled to disk"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["spilled_bytes"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(spill_dirs(&tmp), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn the_spill_directory_is_removed_after_ctrl_c() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let sb = Sandbox::new();
    let tmp = sb.root().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = spilling(&sb, &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait until the run spills, then interrupt it
    let started = Instant::now();
    while spill_dirs(&tmp).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it spilled"
        );
        assert!(started.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(spill_dirs(&tmp), Vec::<String>::new());
}
