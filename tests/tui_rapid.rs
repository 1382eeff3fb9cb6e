//! A hundred parameter changes in a row: every change cancels the running job and starts a
//! new one. The final screen must be exactly the screen of a fresh run of the final
//! parameters (nothing of the cancelled runs leaks into it), and the process must not grow:
//! the same threads and about the same memory after the burst as after the first run
//! (`DNRG_TUI_STATS=1` makes headless mode report them on stderr).
//!
//! And changes in the middle of a heavy shell (keep 8000: one eigendecomposition takes
//! seconds and cannot be interrupted): the new run's first shell must come at once, not when
//! the old block is done, with a bounded number of threads; unless both runs would exceed
//! nrg.max_memory, in which case the new one waits for the old one to end.
//!
//! The tests run one at a time (they count threads and time a restart).

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

static SERIAL: Mutex<()> = Mutex::new(());

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
    headless_preset(dir.path(), "rapid.toml", extra, keys)
}

fn command(dir: &Path, preset: &str, extra: &[&str], keys: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnrg"));
    command
        .args(["tui", "--headless", preset, "--size", "100x30"])
        .args(extra)
        .args(["--keys", keys])
        .current_dir(dir)
        .env("DNRG_CONFIG_DIR", "config")
        .env("DNRG_TUI_STATS", "1")
        .env_remove("DNRG_BLOCK_THREADS")
        .env_remove("NO_COLOR");
    command
}

fn headless_preset(dir: &Path, preset: &str, extra: &[&str], keys: &str) -> Output {
    command(dir, preset, extra, keys).output().unwrap()
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    // session (two runs of ~0.2 s, one spectrum of ~1 s and the part of the cancelled one);
    // 16.8 s at load 10. Not asserted: that is speed; the promptness of a cancel is asserted by
    // the worker's unit test and by the restart tests above.
    println!("session with a cancelled spectrum: {elapsed:?}");

    let out = headless(&dir, &["--set", "model.U=0.12"], "<wait>a<wait>3");
    assert!(out.status.success());
    let fresh = String::from_utf8(out.stdout).unwrap();
    assert_eq!(changed, fresh, "changed:\n{changed}\nfresh:\n{fresh}");
}

/// The small preset made heavy: a plain run (no derivative parts, exact bare chain: the
/// eigendecompositions are the work) at keep 8000, with the given memory budget. Shell 6 is the
/// first with ~32000 states; its largest block has 2780 states and takes 3–6 s to diagonalize on
/// the 2-core development machine. Peak ~1.3 GB.
fn heavy_toml(max_memory: &str) -> String {
    let heavy = [
        (
            "small (rapid-change test)",
            "heavy blocks (cancellation test)",
        ),
        ("derive = [\"eps_d\", \"U\"]", "derive = []"),
        ("keep = 150", "keep = 8000"),
        ("T_min = 1e-7", "T_min = 1e-3"),
        (
            "impurity_observables = true",
            "impurity_observables = false",
        ),
    ];
    let mut toml = heavy.iter().fold(PRESET_TOML.to_string(), |t, (from, to)| {
        assert!(t.contains(from), "{from}");
        t.replace(from, to)
    });
    toml = toml.replace(
        "gap_window = 0.2\n",
        // (Q, S_z): its blocks are the heavy ones measured above ((Q, S) would be ~4× lighter)
        &format!(
            "gap_window = 0.2\nbare_chain = \"exact\"\nmax_memory = \"{max_memory}\"\nsymmetry = \"QSZ\"\n"
        ),
    );
    toml
}

/// The keys of a burst: wait for shell 6 to be under way (its largest blocks are being
/// diagonalized), then `changes` values of U, some typed without a pause, some 40 ms apart,
/// then wait for the new run's first shell and two seconds more (the old run lingers on).
fn burst_keys(changes: usize) -> String {
    let mut keys = String::from("4<shells:6><wait:500ms>");
    for i in 1..=changes {
        keys.push_str(&format!("<Enter>0.1{i:02}<Enter>"));
        if i % 3 == 0 {
            keys.push_str("<wait:40ms>");
        }
    }
    keys.push_str("<shells:1><wait:2s>");
    keys
}

/// A headless session on the heavy preset with the given memory budget; its stats and screen,
/// and the most threads /proc/<pid>/task showed while it ran (sampled every 5 ms).
fn heavy_session(max_memory: &str, keys: &str) -> (HashMap<String, u64>, String, usize) {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("config")).unwrap();
    let preset = heavy_toml(max_memory);
    fs::write(dir.path().join("heavy.toml"), preset).unwrap();
    let child = command(dir.path(), "heavy.toml", &[], keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tasks = format!("/proc/{}/task", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(entries) = fs::read_dir(&tasks) {
            peak = peak.max(entries.count());
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let screen = String::from_utf8(out.stdout).unwrap();
    (stats(&stderr), screen, sampler.join().unwrap())
}

/// Whether the parameters panel shows U = `value`.
fn shows_u(screen: &str, value: &str) -> bool {
    screen.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.windows(2).any(|w| w == ["U", value])
    })
}

/// The burst's changes restart at once: the first shell of every new run comes within
/// RESTART_BOUND of its change, while the cancelled run is still inside its block (it lingers
/// over a second: it was still running 2.2 s after its cancel in every run). Measured 13–106 ms
/// over 21 runs on the 2-core development machine at a load average of 7–8 (other builds
/// running); before the runs could overlap it was 13–14 s (the rest of the old shell's
/// blocks). The bound is 3× the measured worst case, far below the old block's duration.
const RESTART_BOUND: Duration = Duration::from_millis(320);

#[test]
fn a_burst_during_a_heavy_block_restarts_at_once_with_bounded_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (s, screen, proc_peak) = heavy_session("16 GiB", &burst_keys(12));
    let took = started.elapsed();
    let text = format!("{s:?} in {took:?}\n{screen}");
    assert_eq!(s["jobs"], 13, "1 heavy job + 12 changes: {text}");
    // the premise: the burst hit a block that ran on for over a second after its cancel
    let linger = Duration::from_micros(s["linger_us_max"]);
    assert!(linger > Duration::from_secs(1), "{text}");
    // and the new runs did not wait for it: they ran beside it
    assert_eq!(s["jobs_at_once_peak"], 2, "{text}");
    let restart = Duration::from_micros(s["restart_us_max"]);
    assert!(restart < RESTART_BOUND, "restart took {restart:?}: {text}");
    assert!(
        s.contains_key("restart_us_last"),
        "the last run showed no shell: {text}"
    );
    assert!(shows_u(&screen, "0.112"), "{text}");
    // threads: main, two solver threads and the block helpers (one per core but one), however
    // many changes; none come and go (the headless stats and the outside view agree)
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let helpers = cores - 1;
    let peak = s["threads_peak"];
    assert!(peak <= 3 + helpers, "{peak} threads: {text}");
    assert_eq!(peak, s["threads_end"], "{text}");
    assert!(
        proc_peak as u64 <= peak,
        "/proc saw {proc_peak} threads: {text}"
    );
}

/// When the old run and the new one would not fit in nrg.max_memory together (keep 8000 is
/// estimated at ~2.0 GiB, so two need ~4 GiB against a 3 GiB budget), the new run waits for
/// the old one to end instead of starting beside it.
#[test]
fn a_new_run_waits_for_the_old_one_when_both_exceed_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, screen, _) = heavy_session("3 GiB", &burst_keys(1));
    let text = format!("{s:?}\n{screen}");
    assert_eq!(s["jobs"], 2, "{text}");
    assert_eq!(
        s["jobs_at_once_peak"], 1,
        "never two heavy runs at once: {text}"
    );
    let linger = Duration::from_micros(s["linger_us_max"]);
    assert!(linger > Duration::from_secs(1), "{text}");
    // the first shell came only after the old run had ended, give or take the time the UI
    // thread took to note the change's time (it competes with the old run for the cores:
    // measured up to 11 ms)
    let restart = Duration::from_micros(s["restart_us_last"]);
    assert!(
        restart + Duration::from_millis(100) >= linger,
        "{restart:?} < {linger:?}: {text}"
    );
    assert!(shows_u(&screen, "0.101"), "{text}");
}
