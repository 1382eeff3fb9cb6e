//! The bare Wilson chain, subtracted from the full run for impurity contributions:
//! F_imp = F(impurity + chain) − F(bare chain) at every shell and T_N.
//!
//! Two ways (`nrg.bare_chain`):
//! - `truncated` (default): the bare chain iterated by the same NRG, truncated by the same rules
//!   and kept count. At the strong-coupling fixed point the impurity run's spectrum coincides with
//!   the bare chain's (shifted by one site), so the truncation errors of the two cancel; with the
//!   exact chain they do not, and S_imp, Tχ_imp carry a constant bias there.
//! - `exact`: the bare chain's single-particle levels to relative accuracy
//!   ([`crate::free_chain`]), no truncation.
//!
//! The bare chain does not depend on any impurity parameter, so the truncated one is computed
//! once per (chain, truncation, β̄, total field) and kept: in memory for the life of the process
//! (the explorer restarts runs at every parameter change) and in the user's cache directory
//! (`$DNRG_CACHE_DIR`, else the platform's cache dir; `DNRG_NO_CACHE` disables it). Files are
//! written atomically (temporary file + rename, so concurrent writers cannot corrupt one) and
//! carry their full key and a format version; anything unreadable or mismatched is ignored and
//! recomputed.
//!
//! While no cached copy exists, the bare chain is iterated in lockstep with the impurity run. Its
//! rescaled spectrum reaches a fixed point of period two (even and odd shells) once the chain's
//! hoppings are self-similar; from then on every later shell is known without iterating: the
//! spectrum, hence τ ln Z, repeats and the accumulated shift grows by ω_N times the repeated
//! ground energy.

use crate::chain::WilsonChain;
use crate::free_chain::{self, GrowingChain};
use crate::jet::Directions;
use crate::params::{BareChain, NrgParams};
use crate::readout::BareShell;
use crate::shell;
use crate::solver::{Iteration, Shell};
use crate::su2;
use crate::symmetry::Symmetry;
use crate::thermo::{Ts, TsParts};
use nalgebra::SMatrix;
use num_dual::Derivative;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

/// Two rescaled spectra closer than this (largest difference of any level) are the same: the
/// fixed point is reached. Its effect on F_bare is ~1e-12 relative, far below truncation errors.
const FIXED_POINT_TOL: f64 = 1e-12;

/// Bump when anything that changes the bare chain's numbers changes.
const CACHE_FORMAT: u32 = 2;

/// Bump when anything that changes the (Q, S) bare chain's numbers changes (its files only). The
/// check of [`VERIFIED_SHELLS`] cannot see such a change: the first shells have spins ≤ 1.
const QS_CACHE_FORMAT: u32 = 1;

/// Shells recomputed to check a cache file before it is trusted (milliseconds, even at large
/// kept counts: shell 3 has at most 4⁵ states).
const VERIFIED_SHELLS: usize = 4;

/// The bare chain's free energy, shell by shell.
pub(crate) struct Bare {
    mode: Mode,
}

enum Mode {
    Exact {
        chain: Arc<WilsonChain>,
        levels: GrowingChain,
        h_total: f64,
        tau: f64,
    },
    Cached(Arc<[BareShell]>),
    Live(Box<BareRun>),
}

impl Bare {
    pub fn new(
        nrg: &NrgParams,
        chain: Arc<WilsonChain>,
        n_max: usize,
        h_total: f64,
        symmetry: Symmetry,
    ) -> Bare {
        let mode = match nrg.bare_chain {
            BareChain::Exact => Mode::Exact {
                chain,
                levels: GrowingChain::new(),
                h_total,
                tau: 1.0 / nrg.beta_bar,
            },
            BareChain::Truncated => {
                let key = cache_key(nrg, h_total, symmetry);
                if let Some(shells) = lookup_memory(&key, n_max) {
                    Mode::Cached(shells)
                } else {
                    let mut run = Box::new(BareRun::new(nrg, chain, n_max, h_total, symmetry, key));
                    match read_file(&run.key).filter(|s| s.len() > n_max) {
                        // a file written by another version of the algorithm would pass every
                        // check of its form: recompute the first shells and compare bit for bit
                        Some(shells) if run.agrees_with(&shells, VERIFIED_SHELLS) => {
                            let shells: Arc<[BareShell]> = shells.into();
                            remember(&run.key, shells.clone());
                            Mode::Cached(shells)
                        }
                        _ => Mode::Live(run),
                    }
                }
            }
        };
        Bare { mode }
    }

    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        if let Mode::Live(run) = &mut self.mode {
            run.iteration.set_cancel_flag(flag);
        }
    }

    /// F_bare at shell `n` (shells are asked for in order); `None` if cancelled.
    pub fn at(&mut self, n: usize) -> Option<BareShell> {
        match &mut self.mode {
            Mode::Cached(shells) => Some(shells[n]),
            Mode::Live(run) => run.at(n),
            Mode::Exact {
                chain,
                levels,
                h_total,
                tau,
            } => {
                while levels.levels().len() <= n {
                    levels.grow(&chain.onsite, &chain.hopping);
                }
                let omega = chain.omega[n];
                let rescaled: Vec<f64> = levels.levels().iter().map(|e| e / omega).collect();
                Some(BareShell {
                    shift: 0.0,
                    g: free_chain::free_energy(&rescaled, *tau, *h_total / omega),
                })
            }
        }
    }

    /// The run reached its last shell: keep what was computed for later runs.
    pub fn complete(&mut self) {
        if let Mode::Live(run) = &self.mode {
            let shells: Arc<[BareShell]> = run.shells.clone().into();
            store(&run.key, shells.clone());
            self.mode = Mode::Cached(shells);
        }
    }
}

/// The truncated bare chain, iterated until its spectrum repeats.
struct BareRun {
    key: String,
    iteration: Iteration,
    chain: Arc<WilsonChain>,
    shells: Vec<BareShell>,
    /// Rescaled spectra and ground energies of the last four shells, newest last.
    recent: Vec<(Spectrum, f64, Ts)>,
    /// Once at the fixed point: (ground energy, τ ln Z part) of even and odd shells.
    periodic: Option<[(f64, Ts); 2]>,
}

/// All levels of a shell, block by block: (Q, 2S_z, ascending energies).
type Spectrum = Vec<(i32, i32, Vec<f64>)>;

impl BareRun {
    fn new(
        nrg: &NrgParams,
        chain: Arc<WilsonChain>,
        n_max: usize,
        h_total: f64,
        symmetry: Symmetry,
        key: String,
    ) -> BareRun {
        let initial = match symmetry {
            Symmetry::QSz => shell::bare_site_zero(h_total, chain.onsite[0], chain.omega[0]),
            Symmetry::QS => su2::bare_site_zero(chain.onsite[0], chain.omega[0]),
        };
        let iteration = Iteration::new(
            nrg,
            chain.clone(),
            n_max,
            Directions::default(),
            initial,
            h_total,
            true,
        );
        BareRun {
            key,
            iteration,
            chain,
            shells: Vec::new(),
            recent: Vec::new(),
            periodic: None,
        }
    }

    /// Whether the first `count` shells computed here equal `cached` bit for bit (they are kept:
    /// the run goes on from there if the cache is rejected).
    fn agrees_with(&mut self, cached: &[BareShell], count: usize) -> bool {
        (0..count.min(cached.len())).all(|n| self.at(n) == Some(cached[n]))
    }

    fn at(&mut self, n: usize) -> Option<BareShell> {
        while self.shells.len() <= n {
            let next = self.shells.len();
            let shell = match self.periodic {
                Some(cycle) => {
                    let (e0, g) = cycle[next % 2];
                    let previous = self.shells[next - 1].shift;
                    BareShell {
                        shift: previous + self.chain.omega[next] * e0,
                        g,
                    }
                }
                None => {
                    let shell = self.iteration.step()?;
                    self.observe(&shell);
                    BareShell {
                        shift: shell.free_energy.shift.value,
                        g: shell.free_energy.g.re,
                    }
                }
            };
            self.shells.push(shell);
        }
        Some(self.shells[n])
    }

    /// Remember the shell's spectrum; switch to the periodic continuation once even and odd
    /// shells both repeat.
    fn observe(&mut self, shell: &Shell) {
        let spectrum: Spectrum = shell
            .eig
            .iter()
            .map(|eb| (eb.qn.q, eb.qn.sz2, eb.energies.clone()))
            .collect();
        self.recent
            .push((spectrum, shell.ground_energy, shell.free_energy.g.re));
        if self.recent.len() > 4 {
            self.recent.remove(0);
        }
        if self.recent.len() == 4
            && same(&self.recent[0], &self.recent[2])
            && same(&self.recent[1], &self.recent[3])
        {
            // shell n is the newest: even/odd slots by the parity of the shells they continue
            let n = shell.n;
            let newest = (self.recent[3].1, self.recent[3].2);
            let before = (self.recent[2].1, self.recent[2].2);
            self.periodic = Some(if n % 2 == 0 {
                [newest, before]
            } else {
                [before, newest]
            });
        }
    }
}

/// Whether two shells' spectra, ground energies and free energies agree to [`FIXED_POINT_TOL`]
/// (the free energy also carries the complete basis' states of earlier shells, which repeat only
/// once those shells do).
fn same(a: &(Spectrum, f64, Ts), b: &(Spectrum, f64, Ts)) -> bool {
    (a.1 - b.1).abs() <= FIXED_POINT_TOL
        && (a.2.re - b.2.re).abs() <= FIXED_POINT_TOL
        && a.0.len() == b.0.len()
        && a.0.iter().zip(&b.0).all(|(x, y)| {
            x.0 == y.0
                && x.1 == y.1
                && x.2.len() == y.2.len()
                && x.2
                    .iter()
                    .zip(&y.2)
                    .all(|(e, f)| (e - f).abs() <= FIXED_POINT_TOL)
        })
}

/// Everything the truncated bare chain's numbers depend on. (Q, S) blocks truncate the same
/// spectrum but round differently, so they get keys of their own; (Q, S_z) keys are those of
/// the versions before (Q, S) existed, so their cache files stay valid.
fn cache_key(nrg: &NrgParams, h_total: f64, symmetry: Symmetry) -> String {
    let key = format!(
        "dnrg {} format {CACHE_FORMAT}: Lambda={:?} discretization={} z={:?} keep={} e_cut={:?} \
         gap_window={:?} beta_bar={:?} h_total={:?} thermo_states={}",
        env!("CARGO_PKG_VERSION"),
        nrg.lambda,
        nrg.discretization.name(),
        nrg.z,
        nrg.keep,
        nrg.e_cut,
        nrg.gap_window,
        nrg.beta_bar,
        h_total,
        nrg.thermo_states.name()
    );
    match symmetry {
        Symmetry::QSz => key,
        Symmetry::QS => format!("{key} symmetry=QS qs_format={QS_CACHE_FORMAT}"),
    }
}

fn memory() -> &'static Mutex<HashMap<String, Arc<[BareShell]>>> {
    static MEMORY: OnceLock<Mutex<HashMap<String, Arc<[BareShell]>>>> = OnceLock::new();
    MEMORY.get_or_init(Default::default)
}

/// A bare chain kept in memory with at least shells 0..=n_max.
fn lookup_memory(key: &str, n_max: usize) -> Option<Arc<[BareShell]>> {
    memory()
        .lock()
        .ok()
        .and_then(|m| m.get(key).cloned())
        .filter(|s| s.len() > n_max)
}

/// Keep `shells` in memory unless a longer copy is already there.
fn remember(key: &str, shells: Arc<[BareShell]>) {
    if let Ok(mut m) = memory().lock() {
        let longer = m.get(key).is_some_and(|s| s.len() >= shells.len());
        if !longer {
            m.insert(key.to_string(), shells);
        }
    }
}

/// Keep `shells` in memory and on disk.
fn store(key: &str, shells: Arc<[BareShell]>) {
    remember(key, shells.clone());
    // the cache is an optimization: a failure to write it is not an error
    let _ = write_file(key, &shells);
}

/// The on-disk form: the full key (file names are only its hash) and per shell
/// [shift, g, g_τ, g_η, g_ττ, g_ηη, g_τη].
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    key: String,
    shells: Vec<[f64; 7]>,
}

fn cache_path(key: &str) -> Option<PathBuf> {
    if std::env::var_os("DNRG_NO_CACHE").is_some() {
        return None;
    }
    let dir = match std::env::var_os("DNRG_CACHE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => directories::ProjectDirs::from("", "", "dnrg")?
            .cache_dir()
            .to_path_buf(),
    };
    Some(
        dir.join("bare-chain")
            .join(format!("{:016x}.json", fnv1a(key))),
    )
}

/// FNV-1a: a stable 64-bit hash for file names (std's hasher may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn read_file(key: &str) -> Option<Vec<BareShell>> {
    let path = cache_path(key)?;
    // a cache file is a few kB; anything much larger is not ours
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    if file.format != CACHE_FORMAT || file.key != key {
        return None;
    }
    file.shells
        .iter()
        .map(|p| p.iter().all(|x| x.is_finite()).then(|| from_parts(p)))
        .collect()
}

fn write_file(key: &str, shells: &[BareShell]) -> std::io::Result<()> {
    let Some(path) = cache_path(key) else {
        return Ok(());
    };
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let file = CacheFile {
        format: CACHE_FORMAT,
        key: key.to_string(),
        shells: shells.iter().map(to_parts).collect(),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, &file)?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

fn to_parts(s: &BareShell) -> [f64; 7] {
    let g = &s.g;
    [
        s.shift,
        g.re,
        g.first_t(),
        g.first_h(),
        g.second_t(),
        g.second_h(),
        g.mixed_th(),
    ]
}

fn from_parts(p: &[f64; 7]) -> BareShell {
    let v1 = SMatrix::<f64, 1, 2>::new(p[2], p[3]);
    let v2 = SMatrix::<f64, 2, 2>::new(p[4], p[6], p[6], p[5]);
    BareShell {
        shift: p[0],
        g: Ts::new(p[1], Derivative::some(v1), Derivative::some(v2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermo::thermo_variables;
    use num_dual::DualNum;

    #[test]
    fn cache_entries_round_trip_exactly() {
        let (t, h) = thermo_variables(0.7);
        let g = (t * 1.3 + h * h * 0.2 - h * t * 0.1).ln();
        let s = BareShell { shift: -0.123, g };
        assert_eq!(from_parts(&to_parts(&s)), s);
    }
}
