//! What a run will cost, before it starts: peak memory and time from the kept states, Λ (through
//! the number of shells) and the number of derivative parts, and the check against the budget
//! `nrg.max_memory`.
//!
//! Every matrix of a shell is block-diagonal; the product shell has 4·kept states (a site adds
//! four), and the storage of a shell is Σ n_b² over its blocks times (1 + derivative parts)
//! matrices of several kinds (Hamiltonian, eigenvectors, f† blocks). Block sizes scale with the
//! kept count, so the peak is `BASE + keep² · (M0 + M1 · parts)`, and the time per shell, a sum
//! of n_b³ eigendecompositions and GEMMs, `keep^T_EXP · (T0 + T1 · parts)`. The constants were
//! fitted to `dnrg run kondo-symmetric --quiet --set nrg.T_min=1e-3` (16 shells) on the 2-core
//! development machine (peak RSS from /usr/bin/time; wall time, with other builds running, so
//! times are good to a factor of ~2):
//!
//! | keep | parts | peak RSS | estimate | s/shell | estimate |
//! |------|-------|----------|----------|---------|----------|
//! |  400 |  0    |   14 MB  |   17 MB  | 0.009   | 0.003    |
//! | 1600 |  0    |   84 MB  |   96 MB  | 0.09    | 0.09     |
//! | 3200 |  0    |  325 MB  |  350 MB  | 0.52    | 0.52     |
//! |  400 |  5    |   53 MB  |   35 MB  | 0.022   | 0.019    |
//! | 1600 |  5    |  378 MB  |  379 MB  | 0.50    | 0.60     |
//! | 3200 |  5    | 1452 MB  | 1476 MB  | 1.94    | 3.4      |
//! | 1600 |  7    |  473 MB  |  491 MB  | 0.28    | 0.81     |
//! | 3200 |  7    | 1771 MB  | 1927 MB  | 5.0     | 4.6      |
//! | 1600 | 14    |  842 MB  |  885 MB  | 1.08    | 1.5      |
//! | 3200 | 14    | 3170 MB  | 3504 MB  | 11.8    | 8.6      |
//!
//! Memory is the estimate that matters (refusal); it is within 10 % above 1000 kept states and
//! errs on the high side. Parts: 0 plain, 5 the impurity observables, 7 with `--derive
//! eps_d,U`, 14 with four derived parameters. (Measured with the exact bare chain; a truncated
//! one computed alongside, as on a cache miss, adds one plain run's share M0, T0.)
//!
//! The explorer also counts a superseded run that still finishes its block: a new run starts
//! beside it only if both estimates together fit in the budget (`tui::worker`).

use crate::files::fmt_bytes;
use crate::model;
use crate::params::{BareChain, RunConfig};
use crate::symmetry::Symmetry;
use std::fmt;
use std::time::Duration;

/// Fixed part of the peak memory: the binary, the thread pool, the chain (bytes).
const BASE: f64 = 12e6;
/// Bytes per kept state squared, without derivative parts.
const M0: f64 = 33.0;
/// Bytes per kept state squared and derivative part.
const M1: f64 = 22.0;
/// Time per shell: `keep^T_EXP · (T0 + T1 · parts)` seconds.
const T_EXP: f64 = 2.5;
const T0: f64 = 9.0e-10;
const T1: f64 = 1.0e-9;

/// (Q, S) multiplet blocks against (Q, S_z) blocks at the same kept states: W-prod (1000 kept,
/// Λ = 2) peaks at 0.11 (plain) to 0.26 (gradient + Hessian in four parameters) of the memory
/// above `BASE`, and takes 0.14–0.25 of the time. The factors err on the high side.
const QS_MEMORY_FACTOR: f64 = 0.4;
const QS_TIME_FACTOR: f64 = 0.3;

/// Fraction of physical memory a run may use unless `nrg.max_memory` says otherwise.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.5;

/// Physical memory in bytes (Linux: `MemTotal` of /proc/meminfo); `None` when unknown.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The default `nrg.max_memory`: half the physical memory, or 8 GiB where it is unknown.
pub fn default_max_memory() -> u64 {
    physical_memory().map_or(8 << 30, |m| (m as f64 * DEFAULT_MEMORY_FRACTION) as u64)
}

/// Number of derivative parts (first-order directions plus second-order pairs) a run of
/// `config` carries: the solver's own direction plan ([`crate::readout::plan_directions`]).
pub fn derivative_parts(config: &RunConfig) -> usize {
    let model = model::build(&config.model);
    crate::readout::plan_directions(config, model.as_ref())
        .dirs
        .parts()
}

/// The expected cost of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Peak resident memory in bytes.
    pub memory: u64,
    /// Wall time of the whole run on a machine like the development one (2 cores).
    pub time: Duration,
    pub shells: usize,
    pub parts: usize,
}

impl Estimate {
    pub fn of(config: &RunConfig) -> Estimate {
        let keep = config.nrg.keep as f64;
        let parts = derivative_parts(config);
        let p = parts as f64;
        let shells = crate::chain::shells_needed(&config.nrg);
        // a truncated bare chain computed alongside (when not cached) is a plain run more
        let bare = match config.nrg.bare_chain {
            BareChain::Truncated => 1.0,
            BareChain::Exact => 0.0,
        };
        let (mem_factor, time_factor) = match config.symmetry() {
            Symmetry::QSz => (1.0, 1.0),
            Symmetry::QS => (QS_MEMORY_FACTOR, QS_TIME_FACTOR),
        };
        // z-averaged thermodynamics runs its Nz chains in lockstep: all alive at once
        let chains = config.nrg.z_average.max(1) as f64;
        let memory = BASE + mem_factor * chains * keep * keep * (M0 * (1.0 + bare) + M1 * p);
        let per_shell = time_factor * chains * keep.powf(T_EXP) * (T0 * (1.0 + bare) + T1 * p);
        let time = per_shell * shells as f64;
        Estimate {
            memory: memory.min(u64::MAX as f64) as u64,
            time: Duration::try_from_secs_f64(time).unwrap_or(Duration::MAX),
            shells,
            parts,
        }
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "~{} peak memory, ~{} for {} shells with {} derivative parts",
            fmt_bytes(self.memory),
            fmt_duration(self.time),
            self.shells,
            self.parts
        )
    }
}

/// `<0.1 s`, `0.4 s`, `12 s`, `3.5 min`, `2.1 h`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 0.1 {
        "<0.1 s".into()
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A run whose estimated peak memory exceeds `nrg.max_memory`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "nrg.keep = {keep}: needs an estimated {estimate}, more than nrg.max_memory = {budget}; \
     lower nrg.keep (or derive fewer parameters), or raise nrg.max_memory"
)]
pub struct OverBudget {
    pub keep: usize,
    pub estimate: Estimate,
    pub budget: String,
}

/// Bytes per kept state squared, shell and (1 + derivative parts) that the FDM spectral function
/// keeps between its forward and backward passes (eigenvectors, d_σ and d_σ n_σ̄ on all blocks
/// with their parts, the frames): measured 2026-12-02 at keep 200 and 400, U = 0.2, Λ = 3, with
/// 0, 5 and 14 parts: 18–20 without a field (↓ is the mirror image of ↑ and is not stored) and
/// 29–33 with one. The larger values err on the safe side.
const SPECTRAL_PER_SHELL: f64 = 20.0;
const SPECTRAL_PER_SHELL_FIELD: f64 = 33.0;

/// Shells' worth of stored data the spectral run needs beyond the forward run's estimate and
/// what it keeps in memory when it spills: the shell being written or read back, the forward
/// pass's operators in flight, the all-row second-order parts the derivative run keeps, the
/// backward sweep's density matrices and pole sinks. Measured on W-prod with ∂, ∂² in ε_d, U
/// (5 parts, a shell ≈ 120 MB by the estimate) under nrg.max_memory = 3 GiB: peak 3399 MiB
/// against 2662 MiB of stored shells in memory, i.e. 4.9 shells beyond the run's estimate.
const SPILL_RESERVE_SHELLS: f64 = 5.0;

/// At most this many bytes of stored shells stay in memory, whatever `nrg.max_memory` allows:
/// the backward sweep reads each spilled shell once, in order, so the disk costs seconds per
/// GB against minutes of computing, and W-prod's spectrum with ∂, ∂² in two parameters
/// (3.8 GB stored) peaks near 3 GiB instead of about 4.7 (issue 9 asks under 4 GiB).
const SPECTRAL_IN_MEMORY_CAP: f64 = 2.0 * (1u64 << 30) as f64;

/// The parts of a spectrum's memory: the forward run's peak, the stored data of one shell and
/// of all shells (bytes).
struct SpectralMemory {
    run: Estimate,
    shell: f64,
    stored: f64,
    /// Bytes of stored data all chains together, and each chain, may keep in memory, given
    /// `nrg.max_memory`.
    free: f64,
    budget: f64,
}

impl SpectralMemory {
    fn of(config: &RunConfig) -> SpectralMemory {
        // spectra resolve `auto` their own way: estimate the blocks they will run in
        let config = &config.for_spectra();
        let mut run = config.clone();
        run.output.impurity_observables = false;
        // (its chains are counted as before: not multiplied like the thermodynamics' lockstep)
        run.nrg.z_average = 1;
        let run = Estimate::of(&run);
        let keep = config.nrg.keep as f64;
        let per_shell = if config.model.h == 0.0 {
            SPECTRAL_PER_SHELL
        } else {
            SPECTRAL_PER_SHELL_FIELD
        };
        // (Q, S) multiplets store about as much less as they run in (measured: 200 MB against
        // 531 MB stored, kondo-symmetric at Λ = 2, keep 400, 32 shells, ε_d and U derived)
        let stored_factor = match config.symmetry() {
            Symmetry::QSz => 1.0,
            Symmetry::QS => QS_MEMORY_FACTOR,
        };
        let shell = stored_factor * per_shell * (1.0 + run.parts as f64) * keep * keep;
        let free =
            (config.nrg.max_memory as f64 - run.memory as f64 - SPILL_RESERVE_SHELLS * shell)
                .clamp(0.0, SPECTRAL_IN_MEMORY_CAP);
        SpectralMemory {
            run,
            shell,
            stored: shell * run.shells as f64,
            free,
            budget: free / config.nrg.z_average.max(1) as f64,
        }
    }
}

/// Bytes of per-shell data one chain of `dnrg spectrum` keeps in memory; the rest goes to a
/// temporary directory ([`crate::spill`]): what `nrg.max_memory` leaves beside the forward run
/// and a reserve of five shells, shared by the chains of a z-average.
pub fn spectral_store_budget(config: &RunConfig) -> usize {
    SpectralMemory::of(config).budget.min(usize::MAX as f64) as usize
}

impl Estimate {
    /// The cost of `dnrg spectrum` for `config`: the forward run with the derived parameters'
    /// parts (their full Hessian, nothing for the thermodynamic observables), every shell's
    /// stored eigenvectors, impurity operators and frames, and a backward pass of about the
    /// forward's cost (three times it with derivatives, measured on W-prod). What does not fit
    /// `nrg.max_memory` is spilled to disk: then the peak is the run, the budget's share of the
    /// stored data and the reserve ([`spectral_store_budget`]), and only a run that does not
    /// fit even so is refused.
    pub fn of_spectrum(config: &RunConfig) -> Estimate {
        let m = SpectralMemory::of(config);
        let mut e = m.run;
        let in_memory = if m.stored <= m.budget {
            m.stored
        } else {
            m.free + SPILL_RESERVE_SHELLS * m.shell
        };
        e.memory = e
            .memory
            .saturating_add(in_memory.min(u64::MAX as f64) as u64);
        e.time = e.time.mul_f64(if e.parts > 0 { 3.0 } else { 2.0 });
        e
    }
}

/// The estimate of `config`, or why it may not run.
pub fn check(config: &RunConfig) -> Result<Estimate, OverBudget> {
    within_budget(config, Estimate::of(config))
}

/// The estimate of `dnrg spectrum` for `config`, or why it may not run.
pub fn check_spectrum(config: &RunConfig) -> Result<Estimate, OverBudget> {
    within_budget(config, Estimate::of_spectrum(config))
}

fn within_budget(config: &RunConfig, estimate: Estimate) -> Result<Estimate, OverBudget> {
    if estimate.memory > config.nrg.max_memory {
        return Err(OverBudget {
            keep: config.nrg.keep,
            estimate,
            budget: fmt_bytes(config.nrg.max_memory),
        });
    }
    Ok(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{FieldKind, Param, SymmetryChoice};

    #[test]
    fn parts_match_the_solver_plan_for_every_derive_list() {
        let mut config = RunConfig::default();
        // (Q, S): χ_loc comes from the vector sector, not from (h_imp) and (h,h) parts
        assert_eq!(derivative_parts(&config), 3, "ε_d, U; (ε_d,ε_d)");
        config.nrg.symmetry = SymmetryChoice::Qsz;
        assert_eq!(
            derivative_parts(&config),
            5,
            "ε_d, U, h_imp; (ε_d,ε_d), (h,h)"
        );
        config.derive = vec![Param::EpsD, Param::U];
        assert_eq!(derivative_parts(&config), 7, "+ (ε_d,U), (U,U)");
        config.derive = vec![Param::EpsD, Param::U, Param::Gamma, Param::H];
        assert_eq!(
            derivative_parts(&config),
            4 + 7,
            "total field: no matrix part, no (h,θ) pairs"
        );
        config.model.field = FieldKind::Impurity;
        assert_eq!(derivative_parts(&config), 4 + 10, "full Hessian of 4");
        config.derive.clear();
        config.output.impurity_observables = false;
        assert_eq!(derivative_parts(&config), 0);
    }

    #[test]
    fn the_largest_run_is_refused_on_any_ordinary_machine() {
        let mut config = RunConfig::default();
        config.nrg.symmetry = SymmetryChoice::Qsz;
        config.nrg.keep = 20_000;
        config.nrg.max_memory = 12 << 30;
        let err = check(&config).unwrap_err();
        // 20000² · (33 + 22·5) bytes ≈ 57 GB: far beyond half of 24 GiB
        assert!(err.estimate.memory > 50_000_000_000, "{err}");
        assert!(err.to_string().contains("nrg.max_memory = 12 GiB"), "{err}");
        config.nrg.keep = 400;
        assert!(check(&config).is_ok());
    }

    #[test]
    fn a_spectrum_also_counts_what_it_stores_per_shell() {
        let mut config = RunConfig::default();
        // (Q, S_z): the byte counts below are its blocks'
        config.nrg.symmetry = SymmetryChoice::Qsz;
        config.nrg.keep = 1000;
        config.nrg.max_memory = 1 << 40;
        let mut plain = config.clone();
        plain.output.impurity_observables = false;
        let run = check(&plain).unwrap();
        let spectrum = check_spectrum(&config).unwrap();
        // 20 bytes · 1000² per shell over the run's shells, on top of the run
        let stored = 20e6 * run.shells as f64;
        assert_eq!(spectrum.memory, run.memory + stored as u64);
        // a smaller budget spills the rest to disk: the estimate is then the budget itself
        // (the run, what the budget leaves for stored shells, five shells' reserve) …
        config.nrg.max_memory = spectrum.memory - 1;
        let spilling = check_spectrum(&config).unwrap();
        assert_eq!(spilling.memory, config.nrg.max_memory);
        let per_chain = spectral_store_budget(&config) as f64;
        let expected = (config.nrg.max_memory - run.memory) as f64 - 5.0 * 20e6;
        assert!(
            (per_chain - expected).abs() <= 1.0,
            "{per_chain} {expected}"
        );
        // … and only a budget below the run and the reserve is refused
        config.nrg.max_memory = run.memory + 100_000_000 - 1;
        assert!(check(&plain).is_ok() && check_spectrum(&config).is_err());
        assert_eq!(spectral_store_budget(&config), 0);
        // derived parameters: the run's parts (ε_d, U and their three pairs) and six times the
        // storage; a field stores ↓ as well
        config.nrg.max_memory = 1 << 40;
        config.derive = vec![Param::EpsD, Param::U];
        let mut dual_run = plain.clone();
        dual_run.derive = config.derive.clone();
        let dual = check_spectrum(&config).unwrap();
        assert_eq!(dual.parts, 5);
        // (6 · 20 MB per shell is more than the 2 GiB kept in memory at most: the rest spills,
        // and the estimate is the run, the cap and five shells' reserve)
        let shell = 20e6 * 6.0;
        assert!(shell * run.shells as f64 > SPECTRAL_IN_MEMORY_CAP);
        assert_eq!(
            dual.memory,
            check(&dual_run).unwrap().memory + (SPECTRAL_IN_MEMORY_CAP + 5.0 * shell) as u64
        );
        config.model.h = 0.01;
        assert!(check_spectrum(&config).unwrap().memory > dual.memory);
    }
}
