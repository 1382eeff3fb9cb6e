//! A hundred parameter changes in a row: every change cancels the running job and starts a
//! new one. The final screen must be exactly the screen of a fresh run of the final
//! parameters (nothing of the cancelled runs leaks into it), and the process must not grow:
//! the same threads and about the same memory after the burst as after the first run
//! (`DNRG_TUI_STATS=1` makes headless mode report them on stderr).

use std::collections::HashMap;
use std::fs;
use std::process::{Command, Output};
use tempfile::TempDir;

const PRESET_TOML: &str = r#"description = "Anderson model, small (rapid-change test)"
derive = ["eps_d", "U"]

[model]
kind = "siam"
U = 0.1
eps_d = -0.05
Gamma = 0.005
h = 0.0
field = "total"

[nrg]
Lambda = 2.5
discretization = "wilson"
z = 1.0
keep = 150
e_cut = 0.0
beta_bar = 0.75
T_min = 1e-7
gap_window = 0.2

[output]
levels = 16
impurity_observables = true
"#;

fn headless(dir: &TempDir, extra: &[&str], keys: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["tui", "--headless", "rapid.toml", "--size", "100x30"])
        .args(extra)
        .args(["--keys", keys])
        .current_dir(dir.path())
        .env("DNRG_CONFIG_DIR", "config")
        .env("DNRG_TUI_STATS", "1")
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn stats(stderr: &str) -> HashMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .unwrap_or_else(|| panic!("no stats line in {stderr}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn many_changes_end_like_a_fresh_run_without_leaking_threads_or_memory() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("config")).unwrap();
    fs::write(dir.path().join("rapid.toml"), PRESET_TOML).unwrap();

    // First a complete run (the solver's thread pool exists from then on), then 100 changes:
    // 49 typed values of U and 50 steps of Gamma, some in bursts, some after a few shells of the
    // job they cancel, the last one U = 0.137; Gamma ends where it started.
    let mut keys = String::from("<wait>4");
    for i in 1..50 {
        keys.push_str(&format!("<Enter>0.{}<Enter>", 100 + i));
        if i % 5 == 0 {
            keys.push_str("<shells:3>");
        }
    }
    keys.push_str("<Down><Down>");
    for i in 0..50 {
        keys.push(if i % 2 == 0 { '+' } else { '-' });
        if i % 7 == 0 {
            keys.push_str("<wait:15ms>");
        }
    }
    keys.push_str("<Up><Up><Enter>0.137<Enter>");
    keys.push_str("<wait>1");
    let out = headless(&dir, &[], &keys);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let burst = String::from_utf8(out.stdout).unwrap();

    let s = stats(&stderr);
    assert_eq!(s["jobs"], 101, "1 initial job + 100 changes: {stderr}");
    assert_eq!(
        s["threads_peak"], s["threads_first_wait"],
        "threads grew during the burst: {stderr}"
    );
    assert_eq!(s["threads_end"], s["threads_first_wait"], "{stderr}");
    let (first, end) = (s["rss_kb_first_wait"], s["rss_kb_end"]);
    assert!(
        end < first + first / 2 + 16 * 1024,
        "memory grew from {first} kB to {end} kB: {stderr}"
    );

    // a fresh run of the final parameters, same panel and selection
    let out = headless(&dir, &["--set", "model.U=0.137"], "4<wait>1");
    assert!(out.status.success());
    let fresh = String::from_utf8(out.stdout).unwrap();
    assert!(fresh.contains("done"), "{fresh}");
    assert_eq!(burst, fresh, "burst:\n{burst}\nfresh:\n{fresh}");
}

/// A parameter change while the Spectrum panel's job computes cancels it like a run: the new
/// run starts at once, its spectrum follows it, and the final screen is exactly the screen of a
/// fresh session with the final parameters (nothing of the cancelled spectrum shows).
#[test]
fn a_change_during_the_spectrum_cancels_it_and_the_new_spectrum_arrives() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("config")).unwrap();
    fs::write(dir.path().join("rapid.toml"), PRESET_TOML).unwrap();

    // the spectrum job of this preset has 2 × 38 shells; the change comes after 20 of them
    // (`<spectrum:20>` fails the session if the job ends before)
    let start = std::time::Instant::now();
    let out = headless(&dir, &[], "<wait>a<spectrum:20>4<Enter>0.12<Enter><wait>3");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let changed = String::from_utf8(out.stdout).unwrap();
    // 1 run, its spectrum (cancelled), the new run, its spectrum
    assert_eq!(stats(&stderr)["jobs"], 4, "{stderr}");
    assert!(changed.contains("πΓA(0)="), "{changed}");
    // Measured on 2 shared cores (release, load 5-7, 10 sessions): 1.34-2.28 s for the whole
    // session (two runs of ~0.2 s, one spectrum of ~1 s and the part of the cancelled one).
    // Bound: 3× the worst case.
    assert!(elapsed.as_secs_f64() < 6.9, "{elapsed:?}");

    let out = headless(&dir, &["--set", "model.U=0.12"], "<wait>a<wait>3");
    assert!(out.status.success());
    let fresh = String::from_utf8(out.stdout).unwrap();
    assert_eq!(changed, fresh, "changed:\n{changed}\nfresh:\n{fresh}");
}
