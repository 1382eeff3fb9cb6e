//! The performance harness of dnrg: `cargo bench --bench nrg` (add `-- --quick` for a smoke
//! run on fewer shells).
//!
//! Every phase runs in a child process of this binary so that its peak memory (VmHWM) is its
//! own; the parent prints seconds, ratios and peak memory in one table. The runs take seconds
//! to minutes each, so a statistics harness like criterion would only multiply the wait;
//! ratios measured in one process on one machine are what matter here. No test asserts a
//! wall-clock time.
//!
//! Workloads (issue #4):
//! - W-prod: SIAM, (Q, S_z) blocks, Λ = 2, U = 0.1, Γ = 0.01, ε_d = −U/2, 1000 kept states,
//!   T_min = 1e-10 (69 shells).
//! - W-live: the explorer's default preset, as the explorer runs it.
//! - W-spec: W-prod's FDM spectral function at T = T_min (value only, and with first and second
//!   derivatives in ε_d and U) against the plain thermodynamics run of the same chain (`--quick`:
//!   the first 24 shells; `-- --spec` runs only this table).
//! - W-prod in (Q, S) multiplet blocks against (Q, S_z) at the same kept states, and at equal
//!   accuracy against a converged run (issue #11; `-- --su2` runs only these two tables,
//!   `-- --su2-accuracy` only the second).
//!
//! The truncated bare chain (issue #7) is cached on disk; the harness points the cache at a
//! directory of its own, fills it once, and measures the cold case with `DNRG_NO_CACHE` in a
//! fresh process (empty memory cache). Every other phase reads the cached bare chain.

use dnrg::jet::Directions;
use dnrg::model::Variable;
use dnrg::parallel::map_largest_first;
use dnrg::params::{BareChain, FieldKind, Param, RunConfig, SymmetryChoice};
use dnrg::solver::Run;
use std::process::Command;
use std::time::{Duration, Instant};

/// W-prod in (Q, S) blocks.
fn w_prod_qs(keep: usize) -> RunConfig {
    let mut c = w_prod(keep);
    c.nrg.symmetry = SymmetryChoice::Qs;
    c
}

/// Gradient and Hessian in ε_d, U, Γ and the total field h (the four parameters a (Q, S) run
/// of the SIAM offers; h is a scalar variable of the traces in both).
fn grad_hess4_total(mut c: RunConfig) -> RunConfig {
    c.model.field = FieldKind::Total;
    c.derive = vec![Param::EpsD, Param::U, Param::Gamma, Param::H];
    c
}

fn w_prod(keep: usize) -> RunConfig {
    let mut c = RunConfig::default();
    c.model.u = 0.1;
    c.model.gamma = 0.01;
    c.model.eps_d = -0.05;
    c.nrg.lambda = 2.0;
    c.nrg.keep = keep;
    c.nrg.t_min = 1e-10;
    c.output.impurity_observables = false;
    // (Q, S_z), as the workload is defined (`auto` would pick (Q, S): see `w_prod_qs`)
    c.nrg.symmetry = SymmetryChoice::Qsz;
    c
}

/// W-prod cut to `shells` shells: T_min at the last one's T_N, so that a spectrum (which needs
/// the whole chain) and a plain run see the same shells.
fn w_prod_shells(keep: usize, shells: usize) -> RunConfig {
    let mut c = w_prod(keep);
    let full = dnrg::chain::shells_needed(&c.nrg);
    if shells < full {
        let last = shells.max(2) - 1;
        c.nrg.t_min = dnrg::chain::omega(&c.nrg, last) / c.nrg.beta_bar;
    }
    c
}

/// The spectrum of `config` at T = T_min, evaluated on its output grid as `dnrg spectrum` does;
/// prints `spectral forward backward evaluation stored_mib sum_rule in_memory_mib spilled_mib`
/// and returns the shell count.
fn time_spectrum(config: &RunConfig) -> usize {
    let opts = dnrg::spectral::SpectralOptions::at(config.nrg.t_min);
    let s = dnrg::spectral::spectrum(config, &opts).unwrap();
    let t = Instant::now();
    let omega = s.frequencies();
    let points = s.evaluate_with_parts(&omega);
    let evaluation = t.elapsed();
    drop(points);
    // |ΣW − 1|, and |Σ∂W| against Σ|∂W| per part (the terms are as large as ℰ/T makes them)
    let rules = s.sum_rule_residuals();
    let worst = rules
        .weight_parts
        .iter()
        .enumerate()
        .map(|(x, r)| r / s.sum_parts[0].weight_abs[x].max(s.sum_parts[1].weight_abs[x]))
        .fold(rules.weight, f64::max);
    let mib = |b: f64| b / (1u64 << 20) as f64;
    println!(
        "spectral {} {} {} {} {worst:e} {} {}",
        s.times.forward.as_secs_f64(),
        s.times.backward.as_secs_f64(),
        evaluation.as_secs_f64(),
        mib(s.stored_bytes as f64),
        mib(s.stored_in_memory as f64),
        mib(s.spilled_bytes as f64)
    );
    s.header.n_max + 1
}

/// CPU seconds (user + system) of this process so far: on a shared machine the ratio of CPU
/// times is steadier than that of wall times.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name in parentheses; utime and stime are 14 and 15 (1-based)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // clock ticks: 100 per second on Linux
    f.iter().sum::<f64>() / 100.0
}

/// Peak resident memory of this process in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Time a run shell by shell; returns (total, per-shell durations) and prints the stage
/// breakdown as a `stages …` line.
fn time_run(mut run: Run, shells: usize) -> (Duration, Vec<Duration>) {
    let mut per_shell = Vec::new();
    let mut kept = 0;
    let start = Instant::now();
    for _ in 0..shells {
        let t = Instant::now();
        let Some(record) = run.next_shell() else {
            break;
        };
        per_shell.push(t.elapsed());
        kept += record.kept;
    }
    let elapsed = start.elapsed();
    // the kept states summed over shells: equal for runs that keep the same spaces
    println!("kept {kept}");
    let s = run.stage_times();
    println!(
        "stages {} {} {} {} {} {} {} {}",
        s.diagonalize.as_secs_f64(),
        s.pairs.as_secs_f64(),
        s.thermodynamics.as_secs_f64(),
        s.decouple.as_secs_f64(),
        s.operators.as_secs_f64(),
        s.add_site.as_secs_f64(),
        s.complete_basis.as_secs_f64(),
        s.total.as_secs_f64()
    );
    (elapsed, per_shell)
}

/// One phase in this process; prints `seconds shells peak_mib` on stdout.
fn phase(name: &str, keep: usize, shells: usize) {
    let (elapsed, count) = match name {
        "plain" => {
            let (t, s) = time_run(Run::new(&w_prod(keep)).unwrap(), shells);
            (t, s.len())
        }
        "plain_qs" => {
            let (t, s) = time_run(Run::new(&w_prod_qs(keep)).unwrap(), shells);
            (t, s.len())
        }
        "hyperdual_qs" => {
            let dirs = Directions::new(vec![Variable::EpsD, Variable::U], [(0, 1)]);
            let (t, s) = time_run(
                Run::with_directions(&w_prod_qs(keep), dirs).unwrap(),
                shells,
            );
            (t, s.len())
        }
        "grad_hess4_total" => {
            let c = grad_hess4_total(w_prod(keep));
            let (t, s) = time_run(Run::new(&c).unwrap(), shells);
            (t, s.len())
        }
        "grad_hess4_qs" => {
            let c = grad_hess4_total(w_prod_qs(keep));
            let (t, s) = time_run(Run::new(&c).unwrap(), shells);
            (t, s.len())
        }
        "plain_exact" => {
            // the subtraction before issue #7: the bare chain solved exactly
            let mut c = w_prod(keep);
            c.nrg.bare_chain = BareChain::Exact;
            let (t, s) = time_run(Run::new(&c).unwrap(), shells);
            (t, s.len())
        }
        "live_restart" => {
            // the explorer after a change of U: the bare chain of the first run is reused
            let preset = dnrg::preset::load(dnrg::preset::default_preset_name(), &[]).unwrap();
            Run::new(&preset.config).unwrap().for_each(drop);
            let mut c = preset.config.clone();
            c.model.u *= 1.1;
            c.model.eps_d = -c.model.u / 2.0;
            let (t, s) = time_run(Run::new(&c).unwrap(), usize::MAX);
            (t, s.len())
        }
        "live_exact" => {
            let mut c = dnrg::preset::load(dnrg::preset::default_preset_name(), &[])
                .unwrap()
                .config;
            c.nrg.bare_chain = BareChain::Exact;
            let (t, s) = time_run(Run::new(&c).unwrap(), usize::MAX);
            (t, s.len())
        }
        "floor" | "floor_qs" => {
            // the eigendecompositions of exactly the blocks the plain run diagonalizes,
            // scheduled the same way, timed alone
            let config = if name == "floor" {
                w_prod(keep)
            } else {
                w_prod_qs(keep)
            };
            let mut run = Run::new(&config).unwrap();
            let mut total = Duration::ZERO;
            let mut count = 0;
            for _ in 0..shells {
                let blocks = run.pending_blocks();
                if blocks.is_empty() {
                    break;
                }
                let t = Instant::now();
                let out =
                    map_largest_first(&blocks, |b| b.nrows(), |b| dnrg::linalg::eigh(b.as_ref()));
                total += t.elapsed();
                drop(out);
                run.next_shell();
                count += 1;
            }
            (total, count)
        }
        "hyperdual" => {
            // a hyper-dual number in two directions: parts ε_a, ε_b, ε_aε_b
            let dirs = Directions::new(vec![Variable::EpsD, Variable::U], [(0, 1)]);
            let (t, s) = time_run(Run::with_directions(&w_prod(keep), dirs).unwrap(), shells);
            (t, s.len())
        }
        "grad_hess4" => {
            let mut c = w_prod(keep);
            c.model.field = FieldKind::Impurity;
            c.derive = vec![Param::EpsD, Param::U, Param::Gamma, Param::H];
            let (t, s) = time_run(Run::new(&c).unwrap(), shells);
            (t, s.len())
        }
        "observables" => {
            let mut c = w_prod(keep);
            c.output.impurity_observables = true;
            let (t, s) = time_run(Run::new(&c).unwrap(), shells);
            (t, s.len())
        }
        "memory" => {
            // peak memory after 20 shells and after the whole run: equal if nothing grows with N
            let mut c = w_prod(keep);
            c.model.field = FieldKind::Impurity;
            c.derive = vec![Param::EpsD, Param::U, Param::Gamma, Param::H];
            let mut run = Run::new(&c).unwrap();
            let start = Instant::now();
            let mut count = 0;
            while run.next_shell().is_some() {
                count += 1;
                if count == 20 {
                    println!("early {}", peak_rss_mib());
                }
            }
            (start.elapsed(), count)
        }
        "live" => {
            let preset = dnrg::preset::load(dnrg::preset::default_preset_name(), &[]).unwrap();
            let (t, s) = time_run(Run::new(&preset.config).unwrap(), usize::MAX);
            (t, s.len())
        }
        "spec_plain" => {
            // the thermodynamics of the spectral phases' chain
            let c = w_prod_shells(keep, shells);
            let (t, s) = time_run(Run::new(&c).unwrap(), usize::MAX);
            (t, s.len())
        }
        "spec_value" | "spec_value_qs" => {
            let mut c = w_prod_shells(keep, shells);
            if name.ends_with("_qs") {
                c.nrg.symmetry = SymmetryChoice::Qs;
            }
            let t = Instant::now();
            let n = time_spectrum(&c);
            (t.elapsed(), n)
        }
        "spec_d2" | "spec_d2_qs" => {
            // ∂A/∂θ and ∂²A/∂θ∂φ for θ, φ ∈ {ε_d, U}: parts ε_d, U, (ε_d,ε_d), (ε_d,U), (U,U)
            let mut c = w_prod_shells(keep, shells);
            if name.ends_with("_qs") {
                c.nrg.symmetry = SymmetryChoice::Qs;
            }
            c.derive = vec![Param::EpsD, Param::U];
            c.nrg.max_memory = SPEC_MAX_MEMORY;
            let t = Instant::now();
            let n = time_spectrum(&c);
            (t.elapsed(), n)
        }
        "scaling" => {
            // mean time per shell once the kept count has saturated (shells 12..)
            let mut run = Run::new(&w_prod(keep)).unwrap();
            let mut times = Vec::new();
            for n in 0..shells {
                let t = Instant::now();
                if run.next_shell().is_none() {
                    break;
                }
                if n >= 12 {
                    times.push(t.elapsed());
                }
            }
            let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
            (mean, times.len())
        }
        other => panic!("unknown phase {other}"),
    };
    println!("cpu {}", cpu_seconds());
    println!("{} {} {}", elapsed.as_secs_f64(), count, peak_rss_mib());
}

struct Measured {
    seconds: f64,
    shells: usize,
    peak_mib: f64,
    /// Kept states summed over the shells (timed runs only).
    kept: Option<usize>,
    /// diagonalize, pairs, thermodynamics, decouple, operators, add_site, complete basis, total
    stages: Option<Vec<f64>>,
    /// Peak memory part-way through the run (memory phase).
    early_mib: Option<f64>,
    /// Spectral phases: forward, backward, evaluation (seconds), stored MiB, worst sum-rule
    /// residual.
    spectral: Option<Vec<f64>>,
    /// CPU seconds of the whole child process.
    cpu: f64,
}

fn measure(name: &str, keep: usize, shells: usize) -> Measured {
    measure_with(name, keep, shells, &[])
}

fn measure_with(name: &str, keep: usize, shells: usize, env: &[(&str, &str)]) -> Measured {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .envs(env.iter().copied())
        .args([
            "--phase",
            name,
            "--keep",
            &keep.to_string(),
            "--shells",
            &shells.to_string(),
        ])
        .output()
        .expect("child process");
    assert!(
        out.status.success(),
        "phase {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let stages = text
        .lines()
        .find_map(|l| l.strip_prefix("stages "))
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect());
    let spectral = text
        .lines()
        .find_map(|l| l.strip_prefix("spectral "))
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect());
    let early_mib = text
        .lines()
        .find_map(|l| l.strip_prefix("early "))
        .and_then(|x| x.parse().ok());
    let kept = text
        .lines()
        .find_map(|l| l.strip_prefix("kept "))
        .and_then(|x| x.parse().ok());
    Measured {
        seconds: v[0],
        shells: v[1] as usize,
        peak_mib: v[2],
        kept,
        stages,
        early_mib,
        spectral,
        cpu: text
            .lines()
            .find_map(|l| l.strip_prefix("cpu "))
            .and_then(|x| x.parse().ok())
            .unwrap_or(f64::NAN),
    }
}

/// The memory budget of W-spec's derivative run (issue #9: peak under 4 GiB): the stored shells
/// beyond what it leaves go to disk.
const SPEC_MAX_MEMORY: u64 = 3 << 30;

/// The FDM spectral function of W-prod: its cost against the plain run of the same chain, the
/// cost of first and second derivatives in two parameters against the value, peak memory.
///
/// A full bench run uses the whole W-prod chain (68 shells). Every shell's eigenvectors,
/// operators and frames are stored between the passes, 3.8 GiB with five derivative parts
/// (shells far above T store no discarded–discarded parts): the derivative run has
/// `nrg.max_memory` = [`SPEC_MAX_MEMORY`] and spills what does not fit to disk (issue #9 item
/// 6). W-prod is defined in (Q, S_z) blocks; the (Q, S) rows are what `auto` runs. `--quick` runs the first 24 shells (T = T_min at the last one's
/// T_N) at W-prod's keep 1000 and Λ = 2.
fn spectral_table(quick: bool) {
    let shells = if quick { 24 } else { usize::MAX };
    let label = if quick {
        format!("first {shells} shells (T = T_min at the last)")
    } else {
        "the whole chain, T = T_min = 1e-10".to_string()
    };
    println!("W-spec: W-prod's spectral function, {label}, keep 1000");
    let plain = measure("spec_plain", 1000, shells);
    let value = measure("spec_value", 1000, shells);
    let deriv = measure("spec_d2", 1000, shells);
    // the blocks `auto` picks for this spectrum (no field, h not derived)
    let value_qs = measure("spec_value_qs", 1000, shells);
    let deriv_qs = measure("spec_d2_qs", 1000, shells);
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>11} {:>9}  target",
        "phase",
        "seconds",
        "cpu s",
        "forward",
        "backward",
        "evaluate",
        "stored MiB",
        "in memory",
        "spilled MiB",
        "peak MiB"
    );
    let row = |label: &str, m: &Measured, target: String| {
        let sp = m.spectral.clone().unwrap_or_default();
        let get = |i: usize| sp.get(i).copied();
        let cell = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        let mib = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}"));
        println!(
            "{:<40} {:>8.2} {:>8.2} {:>8} {:>8} {:>8} {:>10} {:>9} {:>11} {:>9.0}  {}",
            label,
            m.seconds,
            m.cpu,
            cell(get(0)),
            cell(get(1)),
            cell(get(2)),
            mib(get(3)),
            mib(get(5)),
            mib(get(6)),
            m.peak_mib,
            target
        );
    };
    row("plain run (thermodynamics)", &plain, String::new());
    row(
        "spectrum, value only (Σ trick)",
        &value,
        format!(
            "≤ 2× plain: {:.2}× (cpu {:.2}×)",
            value.seconds / plain.seconds,
            value.cpu / plain.cpu
        ),
    );
    row(
        "spectrum + ∂, ∂² in ε_d, U (5 parts)",
        &deriv,
        format!(
            "≤ 6× value: {:.2}× (cpu {:.2}×)",
            deriv.seconds / value.seconds,
            deriv.cpu / value.cpu
        ),
    );
    row(
        "(Q, S) blocks, as auto picks: value only",
        &value_qs,
        String::new(),
    );
    row(
        "(Q, S) blocks: + ∂, ∂² in ε_d, U",
        &deriv_qs,
        format!(
            "{:.2}× value (cpu {:.2}×); {:.2}× faster than (Q, S_z)",
            deriv_qs.seconds / value_qs.seconds,
            deriv_qs.cpu / value_qs.cpu,
            deriv.seconds / deriv_qs.seconds
        ),
    );
    let worst = deriv.spectral.as_ref().and_then(|s| s.get(4).copied());
    println!(
        "sum rules of the derivative run: max(|ΣW − 1|, |Σ∂W|/Σ|∂W|, |Σ∂²W|/Σ|∂²W|) = {:.1e}; peak memory {:.0} MiB (target < 4096 MiB) with nrg.max_memory = {} MiB, {:.0} MiB spilled to disk",
        worst.unwrap_or(f64::NAN),
        deriv.peak_mib,
        SPEC_MAX_MEMORY >> 20,
        deriv
            .spectral
            .as_ref()
            .and_then(|s| s.get(6).copied())
            .unwrap_or(f64::NAN)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    if let Some(name) = value("--phase") {
        let keep = value("--keep").unwrap().parse().unwrap();
        let shells = value("--shells").unwrap().parse().unwrap();
        phase(&name, keep, shells);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let shells = if quick { 30 } else { usize::MAX };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "dnrg performance harness ({threads} threads{})",
        if quick { ", quick: 30 shells" } else { "" }
    );
    println!();
    println!("W-prod: SIAM, Λ = 2, U = 0.1, Γ = 0.01, ε_d = −U/2, 1000 kept, T_min = 1e-10");
    // a cache directory of the harness's own, for the children (the bare chain of issue #7)
    let cache = std::env::temp_dir().join(format!("dnrg-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // SAFETY: the harness is single-threaded here (it only spawns child processes)
    unsafe { std::env::set_var("DNRG_CACHE_DIR", &cache) };
    if args.iter().any(|a| a == "--su2-accuracy") {
        su2_accuracy(quick);
        let _ = std::fs::remove_dir_all(&cache);
        return;
    }
    if args.iter().any(|a| a == "--su2") {
        su2_comparison(shells);
        su2_accuracy(quick);
        let _ = std::fs::remove_dir_all(&cache);
        return;
    }
    if args.iter().any(|a| a == "--spec") {
        // fills the disk cache (not timed), as below
        measure("plain", 1000, usize::MAX);
        spectral_table(quick);
        let _ = std::fs::remove_dir_all(&cache);
        return;
    }
    let cold = measure_with("plain", 1000, shells, &[("DNRG_NO_CACHE", "1")]);
    let exact = measure("plain_exact", 1000, shells);
    // fills the disk cache (not timed), so that every phase below reads the bare chain
    measure("plain", 1000, usize::MAX);
    let floor = measure("floor", 1000, shells);
    let plain = measure("plain", 1000, shells);
    let hyper = measure("hyperdual", 1000, shells);
    let grad = measure("grad_hess4", 1000, shells);
    let obs = measure("observables", 1000, shells);
    let k = 4.0;
    let fd_runs = 2.0 * k * k + 1.0;
    println!(
        "{:<44} {:>9} {:>7} {:>9} {:>8}  target",
        "phase", "seconds", "shells", "× plain", "peak MiB"
    );
    let row = |label: &str, m: &Measured, target: &str| {
        println!(
            "{:<44} {:>9.3} {:>7} {:>9.2} {:>8.0}  {}",
            label,
            m.seconds,
            m.shells,
            m.seconds / plain.seconds,
            m.peak_mib,
            target
        );
    };
    row("eigensolver floor (same blocks, eig only)", &floor, "");
    row("plain run, exact bare chain (before #7)", &exact, "");
    row(
        "plain run, truncated bare chain, cold",
        &cold,
        &format!("≤ 2× exact: {:.2}×", cold.seconds / exact.seconds),
    );
    row(
        "plain run (truncated bare chain, cached)",
        &plain,
        &format!(
            "≤ 1.3× floor: {:.2}×; ≤ 1.15× exact: {:.2}×",
            plain.seconds / floor.seconds,
            plain.seconds / exact.seconds
        ),
    );
    row("hyper-dual run (ε_a, ε_b, ε_aε_b)", &hyper, "≤ 2.5× plain");
    row("gradient + Hessian in 4 parameters", &grad, "≤ 8× plain");
    row("impurity observables (n_d, docc, χ_loc, χ_c)", &obs, "");
    println!(
        "{:<44} {:>9.3} {:>7} {:>9.2} {:>8}  AD is {:.1}× cheaper",
        format!("finite differences, {fd_runs} plain runs (2k²+1)"),
        fd_runs * plain.seconds,
        plain.shells,
        fd_runs,
        "-",
        fd_runs * plain.seconds / grad.seconds
    );
    let peak = [&floor, &plain, &hyper, &grad, &obs]
        .iter()
        .map(|m| m.peak_mib)
        .fold(0.0, f64::max);
    println!("peak memory {peak:.0} MiB (target < 2048 MiB)");
    if !quick {
        let m = measure("memory", 1000, usize::MAX);
        let early = m.early_mib.unwrap_or(f64::NAN);
        println!(
            "memory does not grow with N: peak {early:.0} MiB after 20 shells, {:.0} MiB after all {} (gradient + Hessian run)",
            m.peak_mib, m.shells
        );
    }
    println!();
    println!(
        "where the time goes (seconds; the eigendecompositions alone take {:.3}):",
        floor.seconds
    );
    println!(
        "{:<12} {:>11} {:>8} {:>8} {:>9} {:>10} {:>9} {:>9} {:>8}",
        "phase",
        "diag+rot¹",
        "pairs",
        "thermo",
        "decouple",
        "operators",
        "add site",
        "compl. b.",
        "other"
    );
    for (label, m) in [
        ("plain", &plain),
        ("hyper-dual", &hyper),
        ("grad+hess 4", &grad),
        ("observables", &obs),
    ] {
        if let Some(s) = &m.stages {
            let other = s[7] - s[..7].iter().sum::<f64>();
            println!(
                "{:<12} {:>11.3} {:>8.3} {:>8.3} {:>9.3} {:>10.3} {:>9.3} {:>9.3} {:>8.3}",
                label, s[0], s[1], s[2], s[3], s[4], s[5], s[6], other
            );
        }
    }
    println!("¹ eigendecomposition plus rotation of the first-order parts");
    println!();
    spectral_table(quick);
    println!();
    let live = measure_with("live", 0, usize::MAX, &[("DNRG_NO_CACHE", "1")]);
    println!(
        "W-live (default preset, as the explorer runs it, bare chain cold): {} shells in {:.3} s (target < 3 s), {:.1} ms/shell, peak {:.0} MiB",
        live.shells,
        live.seconds,
        1e3 * live.seconds / live.shells as f64,
        live.peak_mib
    );
    let restart = measure_with("live_restart", 0, usize::MAX, &[("DNRG_NO_CACHE", "1")]);
    let live_exact = measure("live_exact", 0, usize::MAX);
    println!(
        "W-live restart after a change of U: {:.3} s; with the exact bare chain (before #7) {:.3} s: {:.2}× (target ≤ 1)",
        restart.seconds,
        live_exact.seconds,
        restart.seconds / live_exact.seconds
    );
    println!();
    println!("scaling (W-prod plain, mean time per shell after shell 12):");
    let scaling_shells = if quick { 20 } else { 30 };
    let mut points = Vec::new();
    for keep in [250, 500, 1000, 2000] {
        let m = measure("scaling", keep, scaling_shells);
        println!("  keep {keep:>5}: {:>9.4} s/shell", m.seconds);
        points.push(((keep as f64).ln(), m.seconds.ln()));
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (sxx, sxy) = points
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0 * p.0, a.1 + p.0 * p.1));
    let slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    println!("  fitted exponent: time/shell ∝ keep^{slope:.2} (dense eigensolver: 3)");
    println!();
    su2_comparison(shells);
    su2_accuracy(quick);
    let _ = std::fs::remove_dir_all(&cache);
}

/// W-prod in (Q, S) multiplet blocks against (Q, S_z) blocks, same kept states (issue #11).
fn su2_comparison(shells: usize) {
    println!("SU(2): W-prod in (Q, S) multiplets against (Q, S_z) blocks, same kept states");
    // fill the bare-chain caches of both (not timed)
    measure("plain", 1000, usize::MAX);
    measure("plain_qs", 1000, usize::MAX);
    let pairs = [
        (
            "eigensolver floor",
            measure("floor", 1000, shells),
            measure("floor_qs", 1000, shells),
            "",
        ),
        (
            "plain run",
            measure("plain", 1000, shells),
            measure("plain_qs", 1000, shells),
            "≥ 4×",
        ),
        (
            "hyper-dual run (ε_a, ε_b, ε_aε_b)",
            measure("hyperdual", 1000, shells),
            measure("hyperdual_qs", 1000, shells),
            "",
        ),
        (
            "gradient + Hessian in ε_d, U, Γ, h_tot",
            measure("grad_hess4_total", 1000, shells),
            measure("grad_hess4_qs", 1000, shells),
            "≥ 4×",
        ),
        (
            "spectrum, value only (Σ trick)",
            measure("spec_value", 1000, shells),
            measure("spec_value_qs", 1000, shells),
            "",
        ),
        (
            "spectrum + ∂, ∂² in ε_d, U",
            measure("spec_d2", 1000, shells),
            measure("spec_d2_qs", 1000, shells),
            "",
        ),
    ];
    println!(
        "{:<40} {:>9} {:>9} {:>8} {:>10} {:>10}  target",
        "phase", "QSZ s", "QS s", "speed-up", "QSZ MiB", "QS MiB"
    );
    for (label, qsz, qs, target) in &pairs {
        let same = match (qsz.kept, qs.kept) {
            (Some(a), Some(b)) if a != b => " (kept states differ!)",
            _ => "",
        };
        println!(
            "{:<40} {:>9.3} {:>9.3} {:>7.2}× {:>10.0} {:>10.0}  {target}{same}",
            label,
            qsz.seconds,
            qs.seconds,
            qsz.seconds / qs.seconds,
            qsz.peak_mib,
            qs.peak_mib
        );
    }
}

/// S_imp and Tχ_imp of every shell of a plain run, and its wall time with a warm bare-chain
/// cache (a first, untimed run fills it: every keep has its own truncated bare chain).
/// (`warm = false`: one run, time with whatever the cache holds).
fn thermo_series(config: &RunConfig, warm: bool) -> (Duration, Vec<(f64, f64)>) {
    if warm {
        Run::new(config).unwrap().for_each(drop);
    }
    let start = Instant::now();
    let series = Run::new(config)
        .unwrap()
        .map(|r| (r.obs.s_imp, r.obs.tchi_imp))
        .collect();
    (start.elapsed(), series)
}

/// (Q, S) against (Q, S_z) at equal accuracy (issue #11 item 5). Both keep the same states at
/// the same `keep`, so at equal `keep` their answers agree to round-off and the speed-up above
/// is the equal-accuracy speed-up. What the user gains is the other reading: the time of a
/// (Q, S_z) run at keep 1000 buys (Q, S) a larger keep, and how much closer that is to a
/// converged answer (here (Q, S) at keep 8000; `--quick`: 4000 and the first 40 shells).
/// Errors are the largest |ΔS_imp| and |ΔTχ_imp| over all shells.
fn su2_accuracy(quick: bool) {
    let (reference_keep, shells) = if quick {
        (4000, 40)
    } else {
        (8000, usize::MAX)
    };
    let config = |symmetry: SymmetryChoice, keep: usize| {
        let mut c = w_prod_shells(keep, shells);
        c.nrg.symmetry = symmetry;
        c
    };
    println!();
    println!(
        "SU(2) at equal accuracy: W-prod plain runs against (Q, S) at keep {reference_keep} (converged reference)"
    );
    let (t_ref, reference) = thermo_series(&config(SymmetryChoice::Qs, reference_keep), false);
    println!(
        "reference: {} shells in {:.1} s",
        reference.len(),
        t_ref.as_secs_f64()
    );
    println!(
        "{:<8} {:>6} {:>9} {:>12} {:>12}",
        "blocks", "keep", "seconds", "max |ΔS|", "max |ΔTχ|"
    );
    let mut qsz_seconds = f64::NAN;
    for (symmetry, keep) in [
        (SymmetryChoice::Qsz, 1000),
        (SymmetryChoice::Qs, 1000),
        (SymmetryChoice::Qs, 1500),
        (SymmetryChoice::Qs, 2000),
        (SymmetryChoice::Qs, 2500),
        (SymmetryChoice::Qs, 3000),
    ] {
        let (t, series) = thermo_series(&config(symmetry, keep), true);
        let (ds, dt) = series
            .iter()
            .zip(&reference)
            .fold((0.0f64, 0.0f64), |(a, b), (x, r)| {
                (a.max((x.0 - r.0).abs()), b.max((x.1 - r.1).abs()))
            });
        let seconds = t.as_secs_f64();
        if symmetry == SymmetryChoice::Qsz {
            qsz_seconds = seconds;
        }
        println!(
            "{:<8} {:>6} {:>9.3} {:>12.2e} {:>12.2e}  ({:.2}× the (Q, S_z) time)",
            symmetry.name(),
            keep,
            seconds,
            ds,
            dt,
            seconds / qsz_seconds
        );
    }
}
