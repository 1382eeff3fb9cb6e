//! Honest diagnostics: what a run says about its own trustworthiness.
//!
//! Per shell (in the record's `warnings`, and collected for the `done` record):
//! - a truncation cut without a clear gap (derivatives scale like 1/Δ there);
//! - truncation too aggressive for the temperature: the states discarded at shell N carry more
//!   than [`MAX_DISCARDED_WEIGHT`] of the Boltzmann weight at T_{N+1}, so shell N+1's trace misses
//!   them;
//! - impurity-field derivatives (χ_loc) below T = 1e-40, where round-off takes over;
//! - values no converged run can produce: docc ∉ [0, 1], n_d ∉ [0, 2], S_imp outside
//!   [0, ln 4], Tχ_imp below the even/odd discretization ripple.
//!
//! Whole-run results are given only where their definition applies, otherwise `null` with the
//! reason: Wilson's T_K (T_K·χ_imp(T_K) = 0.07) only when Tχ_imp falls through 0.07 from a
//! local-moment regime and stays below; the Fermi-liquid Wilson ratio only when the last shell
//! lies well below the crossover where Tχ_imp fell through 0.07.

use crate::params::NrgParams;
use crate::record::{Observables, Summary};
use crate::solver::Shell;
use crate::truncation::WANTED_GAP;
use std::f64::consts::LN_2;

/// Largest fraction of the next shell's Boltzmann weight the discarded states may carry. The
/// error it causes is roughly 10–20× larger in S_imp (measured against runs with 4× the states:
/// 1.0e-3 → 0.009 for the default preset, 2e-3 → 0.04 and 3e-2 → 0.2 on a twisted Λ = 2
/// grid). The shipped presets stay below (at most 1.0e-3); the broken runs (Λ = 1.05
/// with 100 states, 10 kept states) reach 0.1–0.9.
pub const MAX_DISCARDED_WEIGHT: f64 = 2e-3;

/// Slack on the bounds of docc ∈ [0, 1] and n_d ∈ [0, 2]: far above round-off (1e-12) and far
/// below what a broken run produces.
const VALUE_SLACK: f64 = 1e-3;

/// Slack on S_imp ∈ [0, ln 4], per unit of Λ: single-shell thermodynamics oscillates between
/// even and odd shells by an amount that grows with Λ (measured at the strong-coupling fixed point:
/// ±0.001, 0.002, 0.078, 0.034, 0.30, 0.71 at Λ = 2, 3, 4, 6, 10, 20), so the slack is 0.05·Λ.
const ENTROPY_SLACK_PER_LAMBDA: f64 = 0.05;

/// Lowest Tχ_imp a converged run shows, per unit of Λ: the even/odd ripple at the
/// strong-coupling fixed point (measured ±1.3e-4, 2.2e-3, 5.0e-3, 8.5e-3, 0.037, 0.063 at the same
/// Λ; the exact finite chain has it too), so the floor is −0.005·Λ.
const TCHI_FLOOR_PER_LAMBDA: f64 = -0.005;

/// Wilson's definition of the Kondo temperature: T_K χ_imp(T_K) = 0.07.
const TK_CROSSING: f64 = 0.07;

/// Tχ_imp of a local moment (1/4, lowered by logarithmic Kondo corrections: 0.21 at ρJ = 0.13)
/// as opposed to a free orbital (1/8) or a mixed-valence state.
const LOCAL_MOMENT: (f64, f64) = (0.18, 0.3);

/// The Fermi-liquid Wilson ratio needs a shell this far below the crossover.
const FERMI_LIQUID_DEPTH: f64 = 100.0;

/// Below this temperature derivatives with respect to an impurity field (χ_loc, hence the
/// Wilson ratio) lose precision: round-off in the field part's component along the conserved
/// total spin grows like 1/T (measured onset 1e-44 at Λ = 4; README, known limits).
pub const IMPURITY_FIELD_FLOOR: f64 = 1e-40;

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A cut without a clear gap.
    Gap,
    /// Discarded states carrying too much of the next shell's weight.
    Truncation,
    /// A value no converged run can produce.
    Value,
    /// A derivative known to be limited by round-off there.
    Precision,
}

/// One kind of warning over the run: its first message and how often it occurred.
#[derive(Debug, Clone)]
struct Tally {
    kind: Kind,
    first: String,
    count: usize,
}

/// The running diagnosis of one run.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// Λ of the run: the discretization ripple the value checks allow for grows with it.
    lambda: f64,
    /// (T, Tχ_imp) of every shell so far.
    tchi: Vec<(f64, f64)>,
    /// (T, χ_loc, χ_c) of every shell that has them, for the Wilson ratio.
    local: Vec<(f64, f64, f64)>,
    min_gap: Option<f64>,
    tallies: Vec<Tally>,
}

impl Diagnostics {
    pub fn new(nrg: &NrgParams) -> Diagnostics {
        Diagnostics {
            lambda: nrg.lambda,
            ..Diagnostics::default()
        }
    }

    /// The warnings of one shell (also remembered for the summary).
    pub(crate) fn shell(&mut self, shell: &Shell, obs: &Observables) -> Vec<String> {
        let n = shell.n;
        let mut out: Vec<(Kind, String)> = Vec::new();
        if let Some(g) = shell.gap {
            self.min_gap = Some(self.min_gap.map_or(g, |m: f64| m.min(g)));
            // the cut rule avoids such gaps when it can; report the shells where it could not
            if g < WANTED_GAP {
                out.push((
                    Kind::Gap,
                    format!(
                        "N = {n}: small gap at the truncation cut, Δ = {g:.3e} ω_N (derivatives scale like 1/Δ)"
                    ),
                ));
            }
        }
        if let Some(w) = shell.discarded_weight.filter(|&w| w > MAX_DISCARDED_WEIGHT) {
            out.push((
                Kind::Truncation,
                format!(
                    "N = {n}: truncation too aggressive for the temperature: the discarded states \
                     carry {w:.1e} of the Boltzmann weight at T_{} (E_cut = {:.2} ω_N); keep more \
                     states or raise nrg.beta_bar",
                    n + 1,
                    shell.e_cut
                ),
            ));
        }
        let mut outside = |name: &str, value: Option<f64>, lo: f64, hi: f64, slack: f64| {
            if let Some(v) = value.filter(|v| !(lo - slack..=hi + slack).contains(v)) {
                out.push((
                    Kind::Value,
                    format!(
                        "N = {n}: {name} = {v:.4} lies outside [{lo}, {hi:.4}]: the run is not \
                         converged (keep more states)"
                    ),
                ));
            }
        };
        outside("docc", obs.docc, 0.0, 1.0, VALUE_SLACK);
        outside("n_d", obs.n_d, 0.0, 2.0, VALUE_SLACK);
        let entropy_slack = ENTROPY_SLACK_PER_LAMBDA * self.lambda;
        outside("S_imp", Some(obs.s_imp), 0.0, 2.0 * LN_2, entropy_slack);
        if obs.tchi_imp < TCHI_FLOOR_PER_LAMBDA * self.lambda {
            out.push((
                Kind::Value,
                format!(
                    "N = {n}: Tchi_imp = {:.4} is negative beyond the even/odd ripple: the run is \
                     not converged (keep more states)",
                    obs.tchi_imp
                ),
            ));
        }
        if let Some(chi) = obs.chi_loc.filter(|_| shell.t < IMPURITY_FIELD_FLOOR) {
            out.push((
                Kind::Precision,
                format!(
                    "N = {n}: below T = {IMPURITY_FIELD_FLOOR:e} impurity-field derivatives \
                     (chi_loc = {chi:.4e}) lose precision to round-off"
                ),
            ));
        }
        for (kind, message) in &out {
            match self.tallies.iter_mut().find(|t| t.kind == *kind) {
                Some(t) => t.count += 1,
                None => self.tallies.push(Tally {
                    kind: *kind,
                    first: message.clone(),
                    count: 1,
                }),
            }
        }
        self.observe(shell.t, obs);
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// Remember the values T_K and the Wilson ratio are read from (without any check: the
    /// z-average feeds its averaged values here, its chains' warnings come from their runs).
    pub(crate) fn observe(&mut self, t: f64, obs: &Observables) {
        self.tchi.push((t, obs.tchi_imp));
        if let (Some(s), Some(c)) = (obs.chi_loc, obs.chi_c) {
            self.local.push((t, s, c));
        }
    }

    /// Whether any shell produced a value a converged run cannot. (A truncation warning alone
    /// does not void T_K or the Wilson ratio: it flags shells whose values are less accurate,
    /// and those are reported as they are.)
    fn unconverged(&self) -> bool {
        self.tallies.iter().any(|t| t.kind == Kind::Value)
    }

    /// The last downward crossing of Tχ_imp through 0.07 (interpolated in ln T), after which it
    /// stays below: (T*, index of the last shell above).
    fn crossover(&self) -> Option<(f64, usize)> {
        let h = &self.tchi;
        let last_above = h.iter().rposition(|&(_, x)| x >= TK_CROSSING)?;
        let ((t1, x1), (t2, x2)) = (h[last_above], *h.get(last_above + 1)?);
        let s = (x1 - TK_CROSSING) / (x1 - x2);
        Some(((t1.ln() + s * (t2.ln() - t1.ln())).exp(), last_above))
    }

    /// Wilson's T_K, or why there is none.
    fn kondo_temperature(&self) -> Result<f64, String> {
        if self.unconverged() {
            return Err("the run is not converged (see warnings)".into());
        }
        let Some((t_star, above)) = self.crossover() else {
            return Err(
                if self.tchi.last().is_some_and(|&(_, x)| x >= TK_CROSSING) {
                    "Tchi_imp does not fall below 0.07 down to the lowest temperature".into()
                } else {
                    "Tchi_imp never exceeds 0.07".into()
                },
            );
        };
        let moment = self.tchi[..=above]
            .iter()
            .any(|&(_, x)| (LOCAL_MOMENT.0..=LOCAL_MOMENT.1).contains(&x));
        if moment {
            Ok(t_star)
        } else {
            Err(format!(
                "Tchi_imp falls through 0.07 at T = {t_star:.3e} without a local-moment regime \
                 before (Tchi_imp never in [{}, {}])",
                LOCAL_MOMENT.0, LOCAL_MOMENT.1
            ))
        }
    }

    /// The Fermi-liquid Wilson ratio R = 8χ_s/(4χ_s + χ_c) from the last shell, or why there is
    /// none. `applies`: the model and field make it meaningful (SIAM at zero field).
    fn wilson_ratio(&self, applies: bool) -> Result<f64, String> {
        if !applies {
            return Err("defined for the Anderson model at zero field".into());
        }
        if self.unconverged() {
            return Err("the run is not converged (see warnings)".into());
        }
        if self.tchi.is_empty() {
            return Err("no shell computed".into());
        }
        if self.local.is_empty() {
            return Err("needs the impurity observables (output.impurity_observables)".into());
        }
        let Some((t_star, _)) = self.crossover() else {
            return Err("no Fermi-liquid regime: Tchi_imp never falls through 0.07".into());
        };
        // the lowest shell whose local susceptibility is still precise
        let Some(&(t, s, c)) = self
            .local
            .iter()
            .rev()
            .find(|&&(t, _, _)| t >= IMPURITY_FIELD_FLOOR)
        else {
            return Err(format!(
                "no shell above T = {IMPURITY_FIELD_FLOOR:e}, where chi_loc is precise"
            ));
        };
        if t > t_star / FERMI_LIQUID_DEPTH {
            return Err(format!(
                "the last usable shell (T = {t:.3e}) is not well below the crossover \
                 T* = {t_star:.3e}: lower nrg.T_min to at most T*/{FERMI_LIQUID_DEPTH}"
            ));
        }
        let r = 8.0 * s / (4.0 * s + c);
        if r.is_finite() {
            Ok(r)
        } else {
            Err("χ_s and χ_c give no finite ratio".into())
        }
    }

    /// The `done` record.
    pub fn summary(&self, cancelled: bool, wilson_ratio_applies: bool) -> Summary {
        let t_k = self.kondo_temperature();
        let r = self.wilson_ratio(wilson_ratio_applies);
        let warnings = self
            .tallies
            .iter()
            .map(|t| match t.count {
                1 => t.first.clone(),
                c => format!("{} (and {} more shells like it)", t.first, c - 1),
            })
            .collect();
        Summary {
            kind: "done",
            status: if cancelled { "cancelled" } else { "complete" },
            shells: self.tchi.len(),
            t_k: t_k.as_ref().ok().copied(),
            t_k_reason: t_k.err(),
            wilson_ratio: r.as_ref().ok().copied(),
            wilson_ratio_reason: r.err(),
            min_gap_cut: self.min_gap,
            warnings,
        }
    }
}
