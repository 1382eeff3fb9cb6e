//! The impurity spectral function A_σ(ω, T) = −Im G_dσ(ω)/π by the full-density-matrix NRG
//! (Weichselbaum & von Delft, PRL 99, 076402 (2007); the complete basis of Anders & Schiller),
//! with its exact first and second derivatives in the derived parameters. The formulas and
//! their notation are those of `shared/design/spectral-derivatives.md`.
//!
//! The two passes over the chain are [`crate::fdm`]'s; the poles and their derivative moments
//! [`crate::poles`]'; the frames that make pole derivatives well defined at degeneracies
//! [`crate::frames`]'; kernels and bins [`crate::broadening`]'s. This module is the interface:
//! options, the run(s) (one per z), the [`Spectrum`] and its evaluation.
//!
//! The poles are binned on a logarithmic grid per sign of Ω and broadened once at the end
//! ([`Binned`]); so are their derivative moments ([`MomentBins`]): ∂A/∂θ and ∂²A/∂θ∂φ of every
//! derived parameter come out of one run. The sum rule Σ W = Tr ρ{d, d†} = 1 holds exactly for
//! the complete basis and for every parameter value, so Σ ∂W = Σ ∂²W = 0: their residuals
//! measure the bookkeeping, not the truncation, and are reported on every run
//! ([`Spectrum::sum_rule_residuals`]). ⟨n_dσ⟩ = Tr ρ d†d comes from the same poles.
//!
//! The self-energy trick (Bulla, Hewson & Pruschke 1998; design note §1.6), on by default when
//! U ≠ 0: X_F = d_σ n_σ̄ is carried along with d (from the local Fock space at shell 0, then
//! exactly like d), its poles W_F = (X_F)_rs (ρX + Xρ)_rs use the same density matrices and
//! Σ W_F = ⟨n_σ̄⟩ is checked. [`Spectrum::evaluate`] makes G and F complex by Kramers–Kronig,
//! forms Σ = U F/G and A = −Im G_new/π with G_new = 1/(ω − ε_dσ − Δ_σ(ω) − Σ). Derivatives:
//! Kramers–Kronig is linear, the rest is pointwise complex hyper-dual algebra with the explicit
//! dependences (U in Σ, ε_d and h in ε_dσ, Γ in Δ = Γ·Δ₁).
//!
//! z-averaging (`nrg.z_average = Nz`): Nz chains with z_i = i/Nz, i = 1…Nz (so z = 1, the
//! plain chain, is one of them), run in parallel on rayon's pool and binned on one grid; the
//! bins of A and of F (and their moments) are averaged in z order (independent of the
//! scheduling) before Σ is formed, as is standard.
//!
//! Derivatives are taken in the matrix directions ε_d, U, Γ and the impurity field h (at any h,
//! h = 0 included, spin-resolved), and J, K for the Kondo model.
//!
//! `nrg.symmetry = "QS"` runs in (Q, S) multiplet blocks (no field; no derivative in h): the
//! operators are rank-½ tensors ([`ReducedOps`]), the FDM weights multiplets (derivation in
//! [`crate::fdm`]'s notes); `auto` resolves to (Q, S_z) here ([`RunConfig::for_spectra`]). Not yet: the field on the total
//! spin as a derived parameter, spilling per-shell data to disk.
//!
//! The Kondo model's spectrum is the T-matrix ([`SpectralOperator::TMatrix`]): the operator
//! O_σ = [f_0σ, H_imp]/√A_Λ of [`t_matrix_operator`] replaces d_σ at shell 0, with its explicit
//! dependence on J and K as its own derivative parts; no self-energy trick; the sum rule's
//! right-hand side ⟨{O_σ, O_σ†}⟩ is the local expectation value on shell 0
//! ([`Spectrum::expected_weight`]).

use crate::broadening::{BinSink, DirectSink, PoleSink};
pub use crate::broadening::{Binned, Kernel, MomentBins};
pub use crate::fdm::DdSkip;
use crate::fdm::{self, StoredShell};
use crate::jet::{Directions, ScalarJet};
use crate::model::Variable;
use crate::params::{FieldKind, InvalidParam, ModelKind, Param, RunConfig};
use crate::poles::PoleSums;
use crate::record::Header;
use crate::solver::Run;
use crate::symmetry::{Qn, SPINS, Symmetry};
use nalgebra::Complex;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How the poles are binned and broadened, and where A(ω) is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralOptions {
    /// Temperature T of the density matrix (physical units); any T > 0, not only a T_N.
    pub t: f64,
    /// Width b (α) of the log-Gaussian kernel. 0.6 is the usual choice for Λ ≈ 2–3 without
    /// z-averaging: narrower kernels resolve the discrete shells as wiggles.
    pub b: f64,
    /// Logarithmic bins per decade of |Ω|. The binning error of A is O(Δ²): 2.5e-5 of max A at
    /// 200 (design note §5).
    pub bins_per_decade: usize,
    /// Crossover scale ω₀ = crossover·T below which poles get the linear Gaussian instead of the
    /// log-Gaussian (0: log-Gaussian everywhere).
    pub crossover: f64,
    /// Width γ = linear_width·T of the linear Gaussian kernel.
    pub linear_width: f64,
    /// The lowest bin sits at bin_floor·min(T, ω_{N_max}); poles below it go to the first bin
    /// (they only matter for |ω| ≲ T, where the linear kernel is ~T wide anyway).
    pub bin_floor: f64,
    /// The highest bin (physical units); the band is [−1, 1], and no NRG pole lies beyond a few.
    pub bin_ceiling: f64,
    /// Output frequencies per decade (each sign).
    pub points_per_decade: usize,
    /// Lowest output |ω| as a multiple of min(T, ω_{N_max}).
    pub grid_floor: f64,
    /// Highest output |ω| (physical units).
    pub grid_ceiling: f64,
    /// The self-energy trick (Bulla, Hewson & Pruschke 1998): A from G = 1/(ω − ε_dσ − Δ − Σ)
    /// with Σ = U F/G. Applied only when U ≠ 0 (at U = 0, Σ = 0 and A is the raw FDM A).
    pub self_energy_trick: bool,
    /// Second derivatives (every pair of derived parameters) next to the first. Off, a run
    /// with m derived parameters carries m derivative parts instead of m + m(m+1)/2: the
    /// explorer's panel, which draws only ∂A/∂θ, pays about half.
    pub second_order: bool,
}

impl SpectralOptions {
    /// Sound defaults at temperature `t`.
    pub fn at(t: f64) -> SpectralOptions {
        SpectralOptions {
            t,
            b: 0.6,
            bins_per_decade: 200,
            crossover: 1.0,
            linear_width: 1.0,
            bin_floor: 1e-2,
            bin_ceiling: 10.0,
            points_per_decade: 20,
            grid_floor: 0.1,
            grid_ceiling: 2.0,
            self_energy_trick: true,
            second_order: true,
        }
    }

    /// Refuse values that make the kernel or the grids meaningless (same error type and dotted
    /// keys as the run's parameters, under `spectrum.`).
    pub fn validate(&self) -> Result<(), InvalidParam> {
        let bad = |key: &str, value: String, reason: &str| InvalidParam {
            key: format!("spectrum.{key}"),
            value,
            reason: reason.to_string(),
        };
        let positive: [(&str, f64); 7] = [
            ("T", self.t),
            ("b", self.b),
            ("linear_width", self.linear_width),
            ("bin_floor", self.bin_floor),
            ("bin_ceiling", self.bin_ceiling),
            ("grid_floor", self.grid_floor),
            ("grid_ceiling", self.grid_ceiling),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(
                    key,
                    format!("{v:?}"),
                    "must be a positive finite number",
                ));
            }
        }
        if !(self.crossover.is_finite() && self.crossover >= 0.0) {
            return Err(bad(
                "crossover",
                format!("{:?}", self.crossover),
                "must be a finite number ≥ 0",
            ));
        }
        // 1e5 per decade is far beyond any useful resolution and bounds the memory of the bins
        for (key, v) in [
            ("bins_per_decade", self.bins_per_decade),
            ("points_per_decade", self.points_per_decade),
        ] {
            if v == 0 || v > 100_000 {
                return Err(bad(key, v.to_string(), "must be between 1 and 100000"));
            }
        }
        if self.bin_floor >= 1.0 || self.grid_floor >= 1.0 {
            return Err(bad(
                "bin_floor",
                format!("{} / {}", self.bin_floor, self.grid_floor),
                "bin_floor and grid_floor must be below 1 (fractions of min(T, ω_N_max))",
            ));
        }
        Ok(())
    }
}

/// Sums over all poles of one spin (before any binning or broadening).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpinSums {
    /// Σ W: exactly 1 for the complete basis.
    pub weight: f64,
    /// ⟨d†_σ d_σ⟩ = Σ_{∉KK} X_rs (Xρ)_rs from the density matrix.
    pub occupation: f64,
    /// Σ W f(Ω/T): the occupation as the spectrum gives it, ∫ A f dω. Equals `occupation` when
    /// ρ is diagonal; FDM's off-diagonal R_N makes it differ slightly.
    pub occupation_spectral: f64,
    /// Σ W_F of F_σ = ⟨⟨d_σ n_σ̄; d†_σ⟩⟩: exactly ⟨n_σ̄⟩ = `occupation` of the other spin
    /// (0 when the self-energy trick is off).
    pub weight_f: f64,
}

/// The derivative parts of [`SpinSums`] (in the layout of [`Spectrum::parts`]): Σ ∂W (exactly
/// 0), Σ ∂W_F (exactly ∂⟨n_σ̄⟩) and ∂⟨n_dσ⟩.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpinSumParts {
    pub weight: Vec<f64>,
    /// Σ|∂W| over the poles: the scale of the round-off of Σ∂W.
    pub weight_abs: Vec<f64>,
    pub weight_f: Vec<f64>,
    pub occupation: Vec<f64>,
}

/// Wall time of the two passes (binning is part of the backward one; broadening happens when
/// A is evaluated).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpectralTimes {
    pub forward: Duration,
    pub backward: Duration,
}

/// Every pole broadened exactly (no bins) at fixed frequencies: the reference for validating
/// derivatives (design note §5: the binned derivative is not the derivative of binned A).
#[derive(Debug, Clone, PartialEq)]
pub struct Unbinned {
    /// The frequencies asked for.
    pub omega: Vec<f64>,
    /// The same, sorted: where the poles were broadened, and with the self-energy trick the
    /// Kramers–Kronig grid.
    pub grid: Vec<f64>,
    /// Per spin: A (and F with the trick) on `grid`.
    g: [DirectSink; 2],
    f: Option<[DirectSink; 2]>,
}

/// Knobs for validation: kept counts imposed per shell (finite differences must compare runs
/// that truncate identically) and frequencies at which every pole is broadened without bins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// Total kept states per shell (see [`Spectrum::kept`]); one chain only (no z-averaging).
    pub frozen_kept: Option<Vec<usize>>,
    /// Frequencies for [`Spectrum::evaluate_unbinned`]. With the self-energy trick they are
    /// also its Kramers–Kronig grid, so they must cover the spectrum (e.g. a logarithmic grid
    /// over the bins' range, both signs, and 0); a coarse grid makes the unbinned run cheap.
    pub unbinned: Option<Vec<f64>>,
    /// Bytes of per-shell data a chain keeps in memory before spilling the rest to disk
    /// (`None`: what `nrg.max_memory` leaves, [`crate::estimate::spectral_store_budget`]).
    pub store_budget: Option<usize>,
    /// Which shells leave out their discarded–discarded sector (default: those far above T).
    pub dd_skip: DdSkip,
}

/// The FDM spectral function of one run.
pub struct Spectrum {
    /// The run's header (resolved parameters, the chain).
    pub header: Header,
    pub options: SpectralOptions,
    pub kernel: Kernel,
    /// Binned pole weights per spin (↑, ↓).
    pub bins: [Binned; 2],
    /// Binned pole weights of F_σ = ⟨⟨d_σ n_σ̄; d†_σ⟩⟩ when the self-energy trick is applied.
    pub bins_f: Option<[Binned; 2]>,
    /// Binned derivative moments per spin, when parameters are derived (and of F).
    pub moments: Option<[MomentBins; 2]>,
    pub moments_f: Option<[MomentBins; 2]>,
    /// What the self-energy trick needs of the model.
    pub siam: SiamLevels,
    pub sums: [SpinSums; 2],
    pub sum_parts: [SpinSumParts; 2],
    /// w_N of every shell (Σ = 1); of the z = 1 chain when z-averaged.
    pub shell_weights: Vec<f64>,
    /// Their derivative parts (per shell, per part): Σ_N ∂w_N = 0.
    pub shell_weight_parts: Vec<Vec<f64>>,
    /// max_N |Tr R_{N−1} − Σ_{M≥N} w_M|: the backward sweep's own check; and for every part.
    pub trace_residual: f64,
    pub trace_residual_parts: Vec<f64>,
    /// Bytes of per-shell data stored between the passes (eigenvectors, energies, operators,
    /// frames), of the largest chain when z-averaged (chains run in parallel: as many at once as
    /// threads).
    pub stored_bytes: usize,
    /// Which correlator: ⟨⟨d_σ; d_σ†⟩⟩ (SIAM) or the T-matrix ⟨⟨O_σ; O_σ†⟩⟩ (Kondo model).
    pub operator: SpectralOperator,
    /// The sum rule's right-hand side ⟨{X_σ, X_σ†}⟩ per spin: exactly 1 for X = d_σ; for the
    /// T-matrix the local expectation value Tr ρ{O_σ, O_σ†} on shell 0, from the full density
    /// matrix and not from the poles (averaged over z like the weights).
    pub expected_weight: [f64; 2],
    /// Of those, the most held in memory at once (of the largest chain), and the bytes written
    /// to the spill directory (summed over the chains; 0 when all fit the budget).
    pub stored_in_memory: usize,
    pub spilled_bytes: u64,
    /// Wall time of the passes, summed over the chains of a z-average.
    pub times: SpectralTimes,
    omega_last: f64,
    /// The twists z of the averaged chains (one value without z-averaging).
    pub z_values: Vec<f64>,
    /// Total kept states per shell of the z = 1 chain (to freeze another run's counts).
    pub kept: Vec<usize>,
    /// The derived parameters, in the order of the first-order parts.
    pub derive: Vec<Param>,
    dirs: Directions,
    /// With [`Probe::unbinned`].
    pub unbinned: Option<Unbinned>,
}

/// The largest residuals of the sum rules over both spins: ΣW − 1 (ΣW − ⟨{O_σ, O_σ†}⟩ for the
/// T-matrix), and Σ ∂W, Σ ∂²W (exactly 0) per part, in the layout of [`Spectrum::parts`] (empty
/// for the T-matrix); with the self-energy trick also ΣW_F − ⟨n_σ̄⟩ and their parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SumRules {
    pub weight: f64,
    pub weight_parts: Vec<f64>,
    pub weight_f: Option<f64>,
    pub weight_f_parts: Option<Vec<f64>>,
}

impl Spectrum {
    /// The output frequencies: −grid_ceiling … −ω_lo, 0, ω_lo … grid_ceiling, log-spaced, with
    /// ω_lo = grid_floor·min(T, ω_{N_max}).
    pub fn frequencies(&self) -> Vec<f64> {
        let o = &self.options;
        let lo = o.grid_floor * o.t.min(self.omega_last());
        let hi = o.grid_ceiling.max(lo);
        let steps = ((hi / lo).log10() * o.points_per_decade as f64).ceil() as usize;
        let pos: Vec<f64> = (0..=steps)
            .map(|i| lo * (hi / lo).powf(i as f64 / steps.max(1) as f64))
            .collect();
        let mut all: Vec<f64> = pos.iter().rev().map(|w| -w).collect();
        all.push(0.0);
        all.extend(pos);
        all
    }

    /// ω_{N_max} (the smallest over the chains of a z-average).
    pub fn omega_last(&self) -> f64 {
        self.omega_last
    }

    /// A_σ(ω), broadened (the raw FDM spectral function).
    pub fn a(&self, sigma: usize, omega: f64) -> f64 {
        self.bins[sigma].broaden(&self.kernel, omega)
    }

    /// The derivative parts: first-order directions (one per derived parameter, in the order of
    /// [`Spectrum::derive`]) then every pair (i ≤ j) of them.
    pub fn parts(&self) -> &Directions {
        &self.dirs
    }

    /// Index of the part ∂²/∂θ_i∂θ_j (either order).
    pub fn pair_part(&self, i: usize, j: usize) -> Option<usize> {
        self.dirs.pair_part(i, j)
    }

    /// All derivative parts of the raw A_σ at ω (layout of [`Spectrum::parts`]; empty when no
    /// parameter is derived).
    pub fn a_parts(&self, sigma: usize, omega: f64) -> Vec<f64> {
        let mut out = vec![0.0; self.dirs.parts()];
        if let Some(m) = self.moments.as_ref() {
            m[sigma].broaden(&self.kernel, omega, &mut out);
        }
        out
    }

    /// ∂A_σ(ω)/∂θ of the raw A for the derived parameter `theta` (index into
    /// [`Spectrum::derive`]); `None` if not derived.
    pub fn da(&self, sigma: usize, theta: usize, omega: f64) -> Option<f64> {
        (theta < self.dirs.first()).then(|| self.a_parts(sigma, omega)[theta])
    }

    /// ∂²A_σ(ω)/∂θ_i∂θ_j of the raw A; `None` if not derived.
    pub fn d2a(&self, sigma: usize, i: usize, j: usize, omega: f64) -> Option<f64> {
        let p = self.pair_part(i, j)?;
        Some(self.a_parts(sigma, omega)[p])
    }

    /// The spin-averaged ∂A/∂θ at each of `omega` of the A that [`Spectrum::evaluate`] reports
    /// (improved by the self-energy trick when it is on): the curve a plot shows next to A.
    /// `None` if `theta` is not derived.
    pub fn derivative_curve(&self, theta: usize, omega: &[f64]) -> Option<Vec<f64>> {
        if theta >= self.dirs.first() {
            return None;
        }
        Some(
            self.evaluate_with_parts(omega)
                .iter()
                .map(|(_, d)| 0.5 * (d.a[theta][0] + d.a[theta][1]))
                .collect(),
        )
    }

    /// Bin and broaden any set of poles (Ω, W) exactly as this spectrum's were: the reference
    /// of a comparison must go through the same grid and kernel.
    pub fn broaden_poles(&self, poles: &[(f64, f64)], omega: &[f64]) -> Vec<f64> {
        let mut bins = self.empty_bins();
        for &(big, w) in poles {
            bins.add(big, w);
        }
        omega
            .iter()
            .map(|&w| bins.broaden(&self.kernel, w))
            .collect()
    }

    /// [`Spectrum::broaden_poles`] with one derivative: poles (Ω, W, ∂W, W·∂Ω) binned with their
    /// moments and broadened exactly as this spectrum's, returning (A, ∂A) at each ω: the
    /// reference of a derivative comparison (e.g. the exact poles of a U = 0 chain).
    pub fn broaden_poles_with_derivative(
        &self,
        poles: &[(f64, f64, f64, f64)],
        omega: &[f64],
    ) -> Vec<(f64, f64)> {
        use crate::broadening::{BinSink, PoleSink};
        let mut sink = BinSink::new(&self.empty_bins(), 1, 0);
        for &(big, w, dw, d) in poles {
            sink.add(big, w, &[dw, d]);
        }
        let m = sink.moments.as_ref().expect("one part");
        omega
            .iter()
            .map(|&w| {
                let mut out = [0.0];
                m.broaden(&self.kernel, w, &mut out);
                (sink.weights.broaden(&self.kernel, w), out[0])
            })
            .collect()
    }

    fn empty_bins(&self) -> Binned {
        bins_for(&self.options, self.omega_last())
    }

    /// ⟨n_d⟩ = Σ_σ ⟨d†_σ d_σ⟩.
    pub fn n_d(&self) -> f64 {
        self.sums.iter().map(|s| s.occupation).sum()
    }

    /// ∂⟨n_d⟩ for every part (from the density matrix, like ⟨n_d⟩).
    pub fn n_d_parts(&self) -> Vec<f64> {
        (0..self.dirs.parts())
            .map(|x| self.sum_parts.iter().map(|s| s.occupation[x]).sum())
            .collect()
    }

    /// The sum rules' residuals (see [`SumRules`]).
    pub fn sum_rule_residuals(&self) -> SumRules {
        let worst = |f: &dyn Fn(usize) -> f64| (0..2).map(f).fold(0.0f64, |a, b| a.max(b.abs()));
        let parts = self.dirs.parts();
        let trick = self.self_energy_trick();
        SumRules {
            weight: worst(&|s| self.sums[s].weight - self.expected_weight[s]),
            // the T-matrix's Σ∂W = ∂⟨{O, O†}⟩ has no independent value here
            weight_parts: if self.operator == SpectralOperator::ImpurityLevel {
                (0..parts)
                    .map(|x| worst(&|s| self.sum_parts[s].weight[x]))
                    .collect()
            } else {
                Vec::new()
            },
            weight_f: trick
                .then(|| worst(&|s| self.sums[s].weight_f - self.sums[1 - s].occupation)),
            weight_f_parts: trick.then(|| {
                (0..parts)
                    .map(|x| {
                        worst(&|s| {
                            self.sum_parts[s].weight_f[x] - self.sum_parts[1 - s].occupation[x]
                        })
                    })
                    .collect()
            }),
        }
    }
}

/// Points per decade of the logarithmic grid on which the Kramers–Kronig integral is done.
/// Measured 2026-12-01 (symmetric SIAM, U = 0.4, Γ = 0.1, T = 5e-5): 50, 100, 200 and 400 per
/// decade give πΓA(0) = 0.99951, 0.99951, 0.99950, 0.99950 and Σ equal to 3e-5 of max|Σ|.
pub const KK_POINTS_PER_DECADE: usize = 100;

/// What the self-energy trick needs of the SIAM: H_imp = ε_d n_d + U n↑n↓ − (h_imp + h_tot) S_z
/// with a flat band of half-width D = 1 and Γ = πρV², so that
/// Δ_σ(ω) = (Γ/π) ln|(1 + ω')/(1 − ω')| − iΓθ(1 − |ω'|), ω' = ω + s_σ h_tot (a total field also
/// shifts the band: ε_kσ = ε_k − s_σ h_tot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiamLevels {
    pub eps_d: f64,
    pub u: f64,
    pub gamma: f64,
    /// The field on the impurity (h_imp + h_tot).
    pub h_impurity: f64,
    /// The field on the band (h_tot).
    pub h_band: f64,
}

impl SiamLevels {
    pub fn of(config: &RunConfig) -> SiamLevels {
        let m = &config.model;
        let total = m.field == crate::params::FieldKind::Total;
        SiamLevels {
            eps_d: m.eps_d,
            u: m.u,
            gamma: m.gamma,
            h_impurity: m.h,
            h_band: if total { m.h } else { 0.0 },
        }
    }

    /// s_σ = ±½ for ↑, ↓.
    pub fn spin(sigma: usize) -> f64 {
        if sigma == 0 { 0.5 } else { -0.5 }
    }

    /// ε_dσ = ε_d − s_σ h.
    pub fn level(&self, sigma: usize) -> f64 {
        self.eps_d - Self::spin(sigma) * self.h_impurity
    }

    /// Δ_σ(ω) of the flat band.
    pub fn hybridization(&self, sigma: usize, omega: f64) -> Complex<f64> {
        let w = omega + Self::spin(sigma) * self.h_band;
        let re = if (w.abs() - 1.0).abs() < 1e-300 {
            0.0 // ln|1 − |ω|| diverges at the band edge; a measure-zero point
        } else {
            self.gamma / PI * ((1.0 + w) / (1.0 - w)).abs().ln()
        };
        let im = if w.abs() < 1.0 { -self.gamma } else { 0.0 };
        Complex::new(re, im)
    }
}

/// A_σ(ω) raw and improved, and Σ_σ(ω), at one frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectralPoint {
    pub omega: f64,
    /// The FDM spectral function as broadened.
    pub a_raw: [f64; 2],
    /// −Im G_new/π with the self-energy trick, else `a_raw`.
    pub a: [f64; 2],
    /// Σ = U F/G (0 without the trick). It contains the Hartree term U⟨n_σ̄⟩.
    pub sigma: [Complex<f64>; 2],
}

/// P∫ a(x)/(ω − x) dx for `a` piecewise linear on the sorted `grid` (zero outside it), with ω
/// one of the grid's points (index `k`). On a segment [x₀, x₁] with a = a₀ + s(x − x₀) the
/// integral is c·ln|(ω − x₀)/(ω − x₁)| − (a₁ − a₀), c = a₀ + s(ω − x₀); at the segments that
/// end at ω, c = a(ω) on both sides and their ln|0| cancel (the principal value).
pub fn hilbert(grid: &[f64], a: &[f64], k: usize) -> f64 {
    let w = grid[k];
    let mut sum = -(a[a.len() - 1] - a[0]);
    for i in 0..grid.len() - 1 {
        let (x0, x1) = (grid[i], grid[i + 1]);
        let c = if i + 1 == k || i == k {
            a[k]
        } else {
            a[i] + (a[i + 1] - a[i]) / (x1 - x0) * (w - x0)
        };
        let l0 = if i == k { 0.0 } else { (w - x0).abs().ln() };
        let l1 = if i + 1 == k { 0.0 } else { (w - x1).abs().ln() };
        sum += c * (l0 - l1);
    }
    sum
}

/// The derivative parts of A_σ, of the raw A_σ and of Σ_σ at one frequency, in the layout of
/// [`Spectrum::parts`] (empty when no parameter is derived).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointParts {
    pub a: Vec<[f64; 2]>,
    pub a_raw: Vec<[f64; 2]>,
    pub sigma: Vec<[Complex<f64>; 2]>,
}

/// One broadened spectrum (raw A or F of one spin) on a grid: values and parts (`parts[x][i]`).
struct OnGrid {
    value: Vec<f64>,
    parts: Vec<Vec<f64>>,
}

impl OnGrid {
    fn binned(
        bins: &Binned,
        moments: Option<&MomentBins>,
        kernel: &Kernel,
        grid: &[f64],
    ) -> OnGrid {
        use rayon::prelude::*;
        let value = grid.par_iter().map(|&w| bins.broaden(kernel, w)).collect();
        let parts = match moments {
            None => Vec::new(),
            Some(m) => {
                let rows: Vec<Vec<f64>> = grid
                    .par_iter()
                    .map(|&w| {
                        let mut out = vec![0.0; m.parts];
                        m.broaden(kernel, w, &mut out);
                        out
                    })
                    .collect();
                (0..m.parts)
                    .map(|x| rows.iter().map(|r| r[x]).collect())
                    .collect()
            }
        };
        OnGrid { value, parts }
    }

    fn direct(sink: &DirectSink) -> OnGrid {
        let p = sink.parts;
        OnGrid {
            value: sink.value.clone(),
            parts: (0..p)
                .map(|x| {
                    (0..sink.omega.len())
                        .map(|i| sink.derivatives[i * p + x])
                        .collect()
                })
                .collect(),
        }
    }
}

/// The Kramers–Kronig grid: [`KK_POINTS_PER_DECADE`] log-spaced points from the lowest bin to
/// 10× the highest, both signs, plus 0 and the requested ω; sorted.
fn kk_grid(bins: &Binned, omega: &[f64]) -> Vec<f64> {
    let lo = bins.center(0);
    let hi = 10.0 * bins.center(bins.len() - 1);
    let steps = ((hi / lo).log10() * KK_POINTS_PER_DECADE as f64).ceil() as usize;
    let mut grid: Vec<f64> = (0..=steps)
        .map(|i| lo * (hi / lo).powf(i as f64 / steps as f64))
        .flat_map(|x| [x, -x])
        .chain(std::iter::once(0.0))
        .chain(omega.iter().copied())
        .collect();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    grid
}

/// `omega` sorted and without duplicates: the grid of an evaluation without Kramers–Kronig.
fn plain_grid(omega: &[f64]) -> Vec<f64> {
    let mut grid = omega.to_vec();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    grid
}

impl Spectrum {
    /// Whether A is formed with the self-energy trick.
    pub fn self_energy_trick(&self) -> bool {
        self.bins_f.is_some()
    }

    /// A_σ raw and improved and Σ_σ at each of `omega`. With the trick: G and F are the
    /// broadened spectra made complex by Kramers–Kronig ([`hilbert`] on a logarithmic grid of
    /// [`KK_POINTS_PER_DECADE`] from the lowest bin to 10× the highest, both signs, plus 0 and
    /// the requested ω), Σ = U F/G and G_new = 1/(ω − ε_dσ − Δ_σ(ω) − Σ).
    pub fn evaluate(&self, omega: &[f64]) -> Vec<SpectralPoint> {
        if self.bins_f.is_none() {
            // the raw A at each ω, nothing else to compute
            use rayon::prelude::*;
            return omega
                .par_iter()
                .map(|&w| {
                    let a = [self.a(0, w), self.a(1, w)];
                    SpectralPoint {
                        omega: w,
                        a_raw: a,
                        a,
                        sigma: [Complex::new(0.0, 0.0); 2],
                    }
                })
                .collect();
        }
        self.evaluate_with_parts(omega)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// [`Spectrum::evaluate`] with the derivative parts of every quantity (the values are the
    /// same, bit for bit).
    pub fn evaluate_with_parts(&self, omega: &[f64]) -> Vec<(SpectralPoint, PointParts)> {
        let trick = self.self_energy_trick();
        let grid = if trick {
            kk_grid(&self.bins[0], omega)
        } else {
            plain_grid(omega)
        };
        fn moments(m: &Option<[MomentBins; 2]>, s: usize) -> Option<&MomentBins> {
            m.as_ref().map(|m| &m[s])
        }
        let g = SPINS.map(|s| {
            OnGrid::binned(
                &self.bins[s],
                moments(&self.moments, s),
                &self.kernel,
                &grid,
            )
        });
        let f = self.bins_f.as_ref().map(|bf| {
            SPINS.map(|s| OnGrid::binned(&bf[s], moments(&self.moments_f, s), &self.kernel, &grid))
        });
        self.assemble(&grid, &g, f.as_ref(), omega)
    }

    /// [`Spectrum::evaluate_with_parts`] from the unbinned poles at [`Unbinned::omega`] (with
    /// [`Probe::unbinned`]; `None` otherwise).
    pub fn evaluate_unbinned(&self) -> Option<Vec<(SpectralPoint, PointParts)>> {
        let u = self.unbinned.as_ref()?;
        let g = [OnGrid::direct(&u.g[0]), OnGrid::direct(&u.g[1])];
        let f =
            u.f.as_ref()
                .map(|f| [OnGrid::direct(&f[0]), OnGrid::direct(&f[1])]);
        Some(self.assemble(&u.grid, &g, f.as_ref(), &u.omega))
    }

    /// The points at `omega` (each on `grid`) from the raw spectra on the grid: the self-energy
    /// trick by complex hyper-dual algebra when F is given.
    fn assemble(
        &self,
        grid: &[f64],
        g: &[OnGrid; 2],
        f: Option<&[OnGrid; 2]>,
        omega: &[f64],
    ) -> Vec<(SpectralPoint, PointParts)> {
        use rayon::prelude::*;
        let dirs = &self.dirs;
        let parts = dirs.parts();
        let u = self.siam.u;
        let zero = Complex::new(0.0, 0.0);
        let complex = |a: &[f64], k: usize| Complex::new(hilbert(grid, a, k), -PI * a[k]);
        omega
            .par_iter()
            .map(|&w| {
                let k = grid
                    .binary_search_by(|x| x.total_cmp(&w))
                    .expect("ω is on the grid");
                let mut p = SpectralPoint {
                    omega: w,
                    a_raw: [0.0; 2],
                    a: [0.0; 2],
                    sigma: [zero; 2],
                };
                let mut d = PointParts {
                    a: vec![[0.0; 2]; parts],
                    a_raw: vec![[0.0; 2]; parts],
                    sigma: vec![[zero; 2]; parts],
                };
                for sigma in SPINS {
                    let ag = &g[sigma];
                    p.a_raw[sigma] = ag.value[k];
                    for x in 0..parts {
                        d.a_raw[x][sigma] = ag.parts[x][k];
                    }
                    let Some(f) = f else {
                        p.a[sigma] = p.a_raw[sigma];
                        for x in 0..parts {
                            d.a[x][sigma] = d.a_raw[x][sigma];
                        }
                        continue;
                    };
                    let af = &f[sigma];
                    let gv = complex(&ag.value, k);
                    let fv = complex(&af.value, k);
                    let s = fv / gv * u;
                    let g_new = (Complex::new(w - self.siam.level(sigma), 0.0)
                        - self.siam.hybridization(sigma, w)
                        - s)
                        .inv();
                    p.a[sigma] = -g_new.im / PI;
                    p.sigma[sigma] = s;
                    if parts == 0 {
                        continue;
                    }
                    // the same in complex hyper-dual algebra: G, F linear in the spectra, Σ =
                    // U·F·G⁻¹, G_new = (ω − ε_dσ − Δ_σ − Σ)⁻¹ with the explicit dependences
                    let gj = ScalarJet {
                        v: gv,
                        p: ag.parts.iter().map(|a| complex(a, k)).collect(),
                    };
                    let fj = ScalarJet {
                        v: fv,
                        p: af.parts.iter().map(|a| complex(a, k)).collect(),
                    };
                    let explicit = self.explicit(sigma, w);
                    let sj = fj.mul(&gj.inv(dirs), dirs).mul(&explicit.u, dirs);
                    let den = ScalarJet::constant(Complex::new(w, 0.0), dirs)
                        .sub(&explicit.level)
                        .sub(&explicit.hybridization)
                        .sub(&sj);
                    let gn = den.inv(dirs);
                    for x in 0..parts {
                        d.a[x][sigma] = -gn.p[x].im / PI;
                        d.sigma[x][sigma] = sj.p[x];
                    }
                }
                (p, d)
            })
            .collect()
    }

    /// U, ε_dσ and Δ_σ(ω) as jets in the derived parameters: U, ε_d and h enter linearly
    /// (ε_dσ = ε_d − s_σ h on the impurity), Δ is linear in Γ (Δ^Γ = Δ/Γ).
    fn explicit(&self, sigma: usize, omega: f64) -> Explicit {
        let dirs = &self.dirs;
        let c = |x: f64| Complex::new(x, 0.0);
        let mut u = ScalarJet::constant(c(self.siam.u), dirs);
        let mut level = ScalarJet::constant(c(self.siam.level(sigma)), dirs);
        let hyb = self.siam.hybridization(sigma, omega);
        let mut hybridization = ScalarJet::constant(hyb, dirs);
        for (i, v) in dirs.vars().iter().enumerate() {
            match v {
                Variable::U => u.p[i] = c(1.0),
                Variable::EpsD => level.p[i] = c(1.0),
                Variable::HImp => level.p[i] = c(-SiamLevels::spin(sigma)),
                Variable::Gamma if self.siam.gamma > 0.0 => {
                    hybridization.p[i] = hyb / self.siam.gamma;
                }
                _ => {}
            }
        }
        Explicit {
            u,
            level,
            hybridization,
        }
    }
}

/// The explicit parameter dependences of the self-energy trick at one ω and spin.
struct Explicit {
    u: ScalarJet<Complex<f64>>,
    level: ScalarJet<Complex<f64>>,
    hybridization: ScalarJet<Complex<f64>>,
}

fn bins_for(o: &SpectralOptions, omega_last: f64) -> Binned {
    let lo = o.bin_floor * o.t.min(omega_last);
    Binned::new(lo, o.bin_ceiling.max(lo), o.bins_per_decade)
}

/// The derivative parts of a spectrum of `config`: one direction per derived parameter (in the
/// order of `derive`, duplicates dropped) and, with `second_order`, every pair i ≤ j. The field
/// on the total spin is not a matrix direction and is refused (its derivative is not
/// implemented for spectra).
pub fn spectral_directions(
    config: &RunConfig,
    second_order: bool,
) -> Result<(Vec<Param>, Directions), InvalidParam> {
    let mut params: Vec<Param> = Vec::new();
    for &p in &config.derive {
        if !params.contains(&p) {
            params.push(p);
        }
    }
    let vars = params
        .iter()
        .map(|&p| spectral_variable(config, p))
        .collect::<Result<Vec<Variable>, InvalidParam>>()?;
    let m = if second_order { vars.len() } else { 0 };
    let pairs = (0..m).flat_map(|i| (i..m).map(move |j| (i, j)));
    Ok((params, Directions::new(vars, pairs)))
}

/// The matrix direction of the spectra of `config` that derived parameter `p` is, or why it is
/// none (the field on the total spin, a parameter of the other model).
fn spectral_variable(config: &RunConfig, p: Param) -> Result<Variable, InvalidParam> {
    match p {
        Param::H if config.model.field == FieldKind::Impurity => Ok(Variable::HImp),
        Param::J if config.model.kind == ModelKind::Kondo => Ok(Variable::J),
        Param::K if config.model.kind == ModelKind::Kondo => Ok(Variable::K),
        Param::H => Err(InvalidParam {
            key: "derive".into(),
            value: "h".into(),
            reason: "spectral derivatives in h are implemented for the field on the impurity \
                         (set model.field = \"impurity\"); the field on the total spin is not yet"
                .into(),
        }),
        Param::EpsD | Param::U | Param::Gamma if config.model.kind == ModelKind::Siam => {
            Ok(match p {
                Param::EpsD => Variable::EpsD,
                Param::U => Variable::U,
                _ => Variable::Gamma,
            })
        }
        other => Err(InvalidParam {
            key: "derive".into(),
            value: other.name().into(),
            reason: format!("not a parameter of the {} model", config.model.kind.name()),
        }),
    }
}

/// Whether the spectra of `config` can be differentiated in `p` (the explorer's panel keeps
/// only those of the run's derived parameters).
pub fn differentiable_in(config: &RunConfig, p: Param) -> bool {
    spectral_variable(config, p).is_ok()
}

/// Compute the FDM spectral function of the impurity level of a SIAM run at temperature
/// `opts.t`, with the derivatives in the run's `derive` list.
pub fn spectrum(config: &RunConfig, opts: &SpectralOptions) -> Result<Spectrum, InvalidParam> {
    let never = Arc::new(AtomicBool::new(false));
    Ok(spectrum_cancellable(config, opts, never)?.expect("not cancelled"))
}

/// [`spectrum`] that gives up (`Ok(None)`) as soon as `cancel` is set: the forward run stops at
/// its next block, the backward sweep before its next shell.
pub fn spectrum_cancellable(
    config: &RunConfig,
    opts: &SpectralOptions,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Spectrum>, InvalidParam> {
    spectrum_with_progress(config, opts, cancel, &|_, _| {})
}

/// [`spectrum_cancellable`] that reports its progress (see [`Progress`]).
pub fn spectrum_with_progress(
    config: &RunConfig,
    opts: &SpectralOptions,
    cancel: Arc<AtomicBool>,
    report: &(dyn Fn(usize, usize) + Sync),
) -> Result<Option<Spectrum>, InvalidParam> {
    spectrum_inner(config, opts, &Probe::default(), cancel, report)
}

/// [`spectrum_cancellable`] with the validation knobs of [`Probe`].
pub fn spectrum_probed(
    config: &RunConfig,
    opts: &SpectralOptions,
    probe: &Probe,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Spectrum>, InvalidParam> {
    spectrum_inner(config, opts, probe, cancel, &|_, _| {})
}

fn spectrum_inner(
    config: &RunConfig,
    opts: &SpectralOptions,
    probe: &Probe,
    cancel: Arc<AtomicBool>,
    report: &(dyn Fn(usize, usize) + Sync),
) -> Result<Option<Spectrum>, InvalidParam> {
    opts.validate()?;
    let operator = SpectralOperator::of(config.model.kind);
    let (derive, dirs) = spectral_directions(config, opts.second_order)?;
    let config = &config.for_spectra();
    if config.symmetry() == Symmetry::QS && dirs.vars().contains(&Variable::HImp) {
        return Err(InvalidParam {
            key: "nrg.symmetry".into(),
            value: config.symmetry().name().into(),
            reason: "spin-resolved ∂A_σ/∂h needs (Q, S_z) blocks: in (Q, S) blocks the field \
                     is no scalar direction (use \"QSZ\" or \"auto\")"
                .into(),
        });
    }
    let siam = SiamLevels::of(config);
    let trick =
        opts.self_energy_trick && siam.u != 0.0 && operator == SpectralOperator::ImpurityLevel;
    // z-averaging: one chain per z_i = i/Nz (i = 1…Nz, so z = 1 is among them), all binned on
    // one grid, whose lowest bin is set by the smallest ω_{N_max} of the chains
    let nz = config.nrg.z_average;
    if probe.frozen_kept.is_some() && nz > 1 {
        return Err(InvalidParam {
            key: "nrg.z_average".into(),
            value: nz.to_string(),
            reason: "frozen kept counts describe one chain".into(),
        });
    }
    let configs: Vec<RunConfig> = (1..=nz)
        .map(|i| {
            let mut c = config.clone();
            c.nrg.z_average = 1;
            if nz > 1 {
                c.nrg.z = i as f64 / nz as f64;
            }
            c
        })
        .collect();
    for c in &configs {
        c.validate()?;
    }
    let omega_last = configs
        .iter()
        .map(|c| crate::chain::omega(&c.nrg, crate::chain::last_shell(&c.nrg)))
        .fold(f64::INFINITY, f64::min);
    let grid = bins_for(opts, omega_last);
    let progress = Progress::new(&configs, report);
    let kernel = Kernel {
        b: opts.b,
        omega0: opts.crossover * opts.t,
        gamma: opts.linear_width * opts.t,
    };
    let store_budget = probe
        .store_budget
        .unwrap_or_else(|| crate::estimate::spectral_store_budget(config));
    let setup = ChainSetup {
        operator,
        t: opts.t,
        store_budget,
        trick,
        grid: &grid,
        kernel,
        dirs: &dirs,
        probe,
        cancel: &cancel,
        progress: &progress,
    };
    use rayon::prelude::*;
    // each chain is independent; the results are combined in the order of z afterwards, so
    // they do not depend on the scheduling
    let chains: Vec<Option<OneChain>> = configs
        .par_iter()
        .map(|c| one_chain(c, &setup))
        .collect::<Result<_, _>>()?;
    let Some(chains) = chains.into_iter().collect::<Option<Vec<OneChain>>>() else {
        return Ok(None);
    };
    let scale = 1.0 / nz as f64;
    let parts = dirs.parts();
    let pairs = dirs.pairs().len();
    let average = |pick: &dyn Fn(&OneChain) -> &[BinSink; 2]| -> [BinSink; 2] {
        let mut out = [
            BinSink::new(&grid, parts, pairs),
            BinSink::new(&grid, parts, pairs),
        ];
        for ch in &chains {
            for (o, b) in out.iter_mut().zip(pick(ch)) {
                o.merge(b, scale);
            }
        }
        out
    };
    let [g0, g1] = average(&|c| &c.sinks);
    let f = trick.then(|| average(&|c| c.sinks_f.as_ref().expect("trick")));
    let mut sums = [PoleSums::new(parts), PoleSums::new(parts)];
    for ch in &chains {
        for (s, c) in sums.iter_mut().zip(&ch.sums) {
            s.merge(c, scale);
        }
    }
    let unbinned = probe.unbinned.as_ref().map(|omega| {
        let average = |pick: &dyn Fn(&OneChain) -> &[DirectSink; 2]| -> [DirectSink; 2] {
            let first = pick(&chains[0]);
            let mut out = [first[0].empty_like(), first[1].empty_like()];
            for ch in &chains {
                for (o, b) in out.iter_mut().zip(pick(ch)) {
                    o.merge(b, scale);
                }
            }
            out
        };
        let g = average(&|c| &c.direct.as_ref().expect("probe").0);
        let f = trick
            .then(|| average(&|c| c.direct.as_ref().expect("probe").1.as_ref().expect("trick")));
        Unbinned {
            omega: omega.clone(),
            grid: g[0].omega.clone(),
            g,
            f,
        }
    });
    let last = chains.last().expect("at least one chain");
    let split = |b: BinSink| (b.weights, b.moments);
    let ((b0, m0), (b1, m1)) = (split(g0), split(g1));
    let (bins_f, moments_f) = match f {
        Some([f0, f1]) => {
            let ((b0, m0), (b1, m1)) = (split(f0), split(f1));
            (Some([b0, b1]), m0.zip(m1).map(|(a, b)| [a, b]))
        }
        None => (None, None),
    };
    Ok(Some(Spectrum {
        header: last.header.clone(),
        options: opts.clone(),
        kernel,
        bins: [b0, b1],
        bins_f,
        moments: m0.zip(m1).map(|(a, b)| [a, b]),
        moments_f,
        siam,
        sums: sums.clone().map(|s| SpinSums {
            weight: s.weight,
            occupation: s.occupation,
            occupation_spectral: s.occupation_spectral,
            weight_f: s.weight_f,
        }),
        sum_parts: sums.map(|s| SpinSumParts {
            weight: s.weight_parts,
            weight_abs: s.weight_abs_parts,
            weight_f: s.weight_f_parts,
            occupation: s.occupation_parts,
        }),
        shell_weights: last.weights.clone(),
        shell_weight_parts: last.weight_parts.clone(),
        trace_residual: chains.iter().map(|c| c.trace_residual).fold(0.0, f64::max),
        trace_residual_parts: (0..parts)
            .map(|x| {
                chains
                    .iter()
                    .map(|c| c.trace_residual_parts[x])
                    .fold(0.0, f64::max)
            })
            .collect(),
        stored_bytes: chains.iter().map(|c| c.stored_bytes).max().unwrap_or(0),
        operator,
        expected_weight: SPINS.map(|sp| chains.iter().map(|c| c.expected[sp]).sum::<f64>() * scale),
        stored_in_memory: chains.iter().map(|c| c.stored_in_memory).max().unwrap_or(0),
        spilled_bytes: chains.iter().map(|c| c.spilled_bytes).sum(),
        times: SpectralTimes {
            forward: chains.iter().map(|c| c.times.forward).sum(),
            backward: chains.iter().map(|c| c.times.backward).sum(),
        },
        omega_last,
        z_values: configs.iter().map(|c| c.nrg.z).collect(),
        kept: last.kept.clone(),
        derive,
        dirs,
        unbinned,
    }))
}

/// A failure to write or read the spill file (a full disk), reported against the budget that
/// made the run spill.
fn spill_error(e: std::io::Error) -> InvalidParam {
    InvalidParam {
        key: "TMPDIR".into(),
        value: std::env::temp_dir().display().to_string(),
        reason: format!(
            "spilling the per-shell data beyond nrg.max_memory to a temporary directory there \
             failed: {e} (point TMPDIR at a disk with room, or raise nrg.max_memory)"
        ),
    }
}

/// What every chain of a spectrum shares.
struct ChainSetup<'a> {
    operator: SpectralOperator,
    t: f64,
    /// Per chain: bytes of stored shells kept in memory (the rest is spilled).
    store_budget: usize,
    trick: bool,
    grid: &'a Binned,
    kernel: Kernel,
    dirs: &'a Directions,
    probe: &'a Probe,
    cancel: &'a Arc<AtomicBool>,
    progress: &'a Progress<'a>,
}

/// The forward and backward passes of one chain (one z).
struct OneChain {
    header: Header,
    sinks: [BinSink; 2],
    sinks_f: Option<[BinSink; 2]>,
    direct: Option<([DirectSink; 2], Option<[DirectSink; 2]>)>,
    sums: [PoleSums; 2],
    weights: Vec<f64>,
    weight_parts: Vec<Vec<f64>>,
    trace_residual: f64,
    trace_residual_parts: Vec<f64>,
    stored_bytes: usize,
    /// ⟨{X_σ, X_σ†}⟩ per spin (the sum rule's right-hand side).
    expected: [f64; 2],
    stored_in_memory: usize,
    spilled_bytes: u64,
    times: SpectralTimes,
    kept: Vec<usize>,
}

/// Two sinks fed with the same poles (bins and, for validation, the unbinned sum).
impl<A: PoleSink, B: PoleSink> PoleSink for (A, B) {
    type Slot = (A::Slot, B::Slot);
    fn empty_like(&self) -> Self {
        (self.0.empty_like(), self.1.empty_like())
    }
    fn locate(&self, big: f64) -> Self::Slot {
        (self.0.locate(big), self.1.locate(big))
    }
    fn add_at(&mut self, slot: Self::Slot, big: f64, w: f64, moments: &[f64]) {
        self.0.add_at(slot.0, big, w, moments);
        self.1.add_at(slot.1, big, w, moments);
    }
    fn merge(&mut self, other: &Self, c: f64) {
        self.0.merge(&other.0, c);
        self.1.merge(&other.1, c);
    }
    fn negate_parts(&mut self, odd: &[bool]) {
        self.0.negate_parts(odd);
        self.1.negate_parts(odd);
    }
}

fn one_chain(config: &RunConfig, s: &ChainSetup<'_>) -> Result<Option<OneChain>, InvalidParam> {
    let started = Instant::now();
    let dirs = s.dirs;
    let new_run = || -> Result<Run, InvalidParam> {
        let mut run =
            Run::with_directions(config, dirs.clone())?.with_cancel_flag(s.cancel.clone());
        if dirs.parts() > 0 {
            run.keep_frames();
        }
        // the thermodynamics of the forward run is not read (⟨n_d⟩ and the weights come from
        // the density matrices): its complete-basis terms, 3.5% of W-spec's derivative run,
        // are skipped
        run.skip_complete_basis();
        if let Some(k) = &s.probe.frozen_kept {
            run.freeze_kept_counts(k.clone());
        }
        Ok(run)
    };
    let mut run = new_run()?;
    let header = run.header().clone();
    let space = run.model().space();
    let mirror = fdm::mirror_parts(&run, dirs);
    let mirror = mirror.as_deref();
    let ops = shell_zero_ops(s.operator, config, &run, &space, s.trick, dirs);
    let forward = |run: &mut Run, skip| {
        let setup = (s.t, s.store_budget, skip);
        fdm::forward(run, &space, &ops, dirs, setup, &|| s.progress.shell()).map_err(spill_error)
    };
    let Some(mut shells) = forward(&mut run, s.probe.dd_skip)? else {
        return Ok(None);
    };
    if !shells.skips_hold {
        // the bound that let shells far above T leave out their DD sector failed (not seen in
        // any model so far): the chain again, whole
        drop(shells);
        s.progress.add(header.n_max + 1);
        let Some(again) = forward(&mut new_run()?, fdm::DdSkip::Never)? else {
            return Ok(None);
        };
        shells = again;
    }
    let forward_time = started.elapsed();
    let clock = Instant::now();
    let on_shell = || s.progress.shell();
    let watch = fdm::Watch {
        cancel: s.cancel,
        on_shell: &on_shell,
    };
    let bins = BinSink::new(s.grid, dirs.parts(), dirs.pairs().len());
    let stored_bytes = shells.total_bytes();
    let kept = shells
        .shells()
        .iter()
        .map(StoredShell::kept_total)
        .collect();
    // the sum rules' expected weights, from shell 0 of either backward sweep
    let expected =
        |u, rho, anticommutator| expected_weights(s.operator, &ops, u, rho, &space, anticommutator);
    let (sinks, sinks_f, direct, rest) = match &s.probe.unbinned {
        None => {
            let b = fdm::backward(&mut shells, s.t, dirs, &bins, s.trick, mirror, watch);
            let Some(b) = b.map_err(spill_error)? else {
                return Ok(None);
            };
            let expected = expected(&b.shell0_u, &b.shell0_rho, b.shell0_anticommutator);
            let rest = (
                b.sums,
                b.weights,
                b.weight_parts,
                b.trace_residual,
                b.trace_residual_parts,
                expected,
            );
            (b.sinks, b.sinks_f, None, rest)
        }
        Some(omega) => {
            let grid = plain_grid(omega);
            let direct = DirectSink::new(s.kernel, grid, dirs.parts(), dirs.pairs().len());
            let template = (bins, direct);
            let b = fdm::backward(&mut shells, s.t, dirs, &template, s.trick, mirror, watch);
            let Some(b) = b.map_err(spill_error)? else {
                return Ok(None);
            };
            let expected = expected(&b.shell0_u, &b.shell0_rho, b.shell0_anticommutator);
            let [(g0, d0), (g1, d1)] = b.sinks;
            let (sf, df) = match b.sinks_f {
                Some([(f0, e0), (f1, e1)]) => (Some([f0, f1]), Some([e0, e1])),
                None => (None, None),
            };
            (
                [g0, g1],
                sf,
                Some(([d0, d1], df)),
                (
                    b.sums,
                    b.weights,
                    b.weight_parts,
                    b.trace_residual,
                    b.trace_residual_parts,
                    expected,
                ),
            )
        }
    };
    let (stored_in_memory, spilled_bytes) = (shells.peak_in_memory(), shells.spilled_bytes());
    drop(shells);
    let (sums, weights, weight_parts, trace_residual, trace_residual_parts, expected) = rest;
    Ok(Some(OneChain {
        header,
        sinks,
        sinks_f,
        direct,
        sums,
        weights,
        weight_parts,
        trace_residual,
        trace_residual_parts,
        stored_bytes,
        expected,
        stored_in_memory,
        spilled_bytes,
        times: SpectralTimes {
            forward: forward_time,
            backward: clock.elapsed(),
        },
        kept,
    }))
}
// ---- the operator: d_σ of the SIAM, or the Kondo model's O_σ = [f_0σ, H_imp] ---------------

/// The correlator whose spectral function is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectralOperator {
    /// A_σ = −Im⟨⟨d_σ; d_σ†⟩⟩/π of the impurity level (SIAM).
    ImpurityLevel,
    /// A_T,σ = −Im T_σ/π with T_σ = ⟨⟨O_σ; O_σ†⟩⟩, O_σ = [f_0σ, H_imp]/√A_Λ (Kondo model): the
    /// conduction electrons' T-matrix G_00 = G⁰_00 + G⁰_00 T G⁰_00 without its static part.
    TMatrix,
}

impl SpectralOperator {
    pub fn of(kind: ModelKind) -> SpectralOperator {
        match kind {
            ModelKind::Siam => SpectralOperator::ImpurityLevel,
            ModelKind::Kondo => SpectralOperator::TMatrix,
        }
    }

    /// The name in the header's `"operator"`: `"d"` or `"T-matrix"`.
    pub fn name(self) -> &'static str {
        match self {
            SpectralOperator::ImpurityLevel => "d",
            SpectralOperator::TMatrix => "T-matrix",
        }
    }
}

/// A local operator of shell 0 (impurity ⊗ site 0, the model's [`crate::model::LocalSpace`])
/// that lowers Q by one and S_z by s_σ, with its explicit dependence on the derived parameters:
/// `parts` in the layout of [`Directions`] (empty or zero when it has none, as d_σ).
pub struct LocalOperator {
    pub value: nalgebra::DMatrix<f64>,
    pub parts: Vec<nalgebra::DMatrix<f64>>,
}

/// What the forward pass carries from shell 0: the operator X_σ of the spectral function and,
/// with the self-energy trick, X_F = d_σ n_σ̄.
pub struct ShellZeroOps {
    pub x: [LocalOperator; 2],
    pub f: Option<[LocalOperator; 2]>,
    /// In (Q, S) blocks: X and X_F as rank-½ tensors on the impurity's multiplets.
    pub reduced: Option<ReducedOps>,
}

/// A rank-½ operator that lowers Q by one, as reduced matrices on the impurity's multiplet
/// blocks ([`crate::model::Multiplets::blocks`]): X[L←R] keyed by (L, R), the transpose of its
/// adjoint's ⟨R‖X†‖L⟩ (CG convention of [`crate::su2`]). The forward pass builds shell 0 from
/// them as it builds any shell from the one before.
pub struct ReducedOps {
    pub d: HashMap<(usize, usize), faer::Mat<f64>>,
    /// X_F = d_σ n_σ̄ = d_σ (n_d − 1), with the self-energy trick.
    pub f: Option<HashMap<(usize, usize), faer::Mat<f64>>>,
    /// Or X directly on shell 0's product blocks (an operator that is not one of the impurity
    /// alone, such as the T-matrix's).
    pub shell0: Vec<ProductBlockOp>,
}

/// X[L←R] between two product blocks of shell 0 and its parts, in the product multiplet basis
/// of [`crate::su2::initial_shell`].
pub struct ProductBlockOp {
    pub left: Qn,
    pub right: Qn,
    pub value: faer::Mat<f64>,
    pub parts: Vec<faer::Mat<f64>>,
}

/// The T-matrix operator O_σ = [f_0σ, H_imp]/√A_Λ of [`t_matrix_operator`] as a rank-½ tensor
/// on shell 0's product multiplets: H_imp is a scalar (one matrix per block, and its parts), so
/// O[L←R] = (F[L←R]·H_R − H_L·F[L←R])/√A_Λ with F the reduced annihilator of site 0, the
/// transpose of the iteration's own f†_0 (signs included).
fn reduced_t_matrix(run: &Run, dirs: &Directions) -> Option<ReducedOps> {
    let model = run.model();
    let site0 = crate::model::SiteZero {
        coupling_factor: run.header().chain.a_lambda,
        h_total: 0.0,
    };
    let var_index: Vec<usize> = dirs
        .vars()
        .iter()
        .map(|&v| crate::model::variable_index(model, v).expect("direction is a model variable"))
        .collect();
    // H_imp alone: no on-site energy of site 0, no rescaling
    let shell = crate::su2::initial_shell(model, dirs, &var_index, site0, 0.0, 1.0)?;
    let norm = 1.0 / site0.coupling_factor.sqrt();
    let mut shell0 = Vec::new();
    for op in &shell.fdag {
        // f†[hi←lo] → F[lo←hi]
        let (hi, lo) = (&shell.blocks[op.left], &shell.blocks[op.right]);
        let mut f = faer::Mat::<f64>::zeros(lo.h.nrows(), hi.h.nrows());
        for pc in &op.pieces {
            for i in 0..pc.len {
                f[(pc.row_r + i, pc.row_l + i)] += pc.sign;
            }
        }
        let commutator = |h_lo: &faer::Mat<f64>, h_hi: &faer::Mat<f64>| {
            let a = crate::linalg::mul(f.as_ref(), h_hi.as_ref());
            let b = crate::linalg::mul(h_lo.as_ref(), f.as_ref());
            faer::Mat::<f64>::from_fn(a.nrows(), a.ncols(), |i, j| norm * (a[(i, j)] - b[(i, j)]))
        };
        let value = commutator(&lo.h, &hi.h);
        let parts = (0..dirs.parts())
            .map(|x| commutator(&lo.dh[x], &hi.dh[x]))
            .collect();
        shell0.push(ProductBlockOp {
            left: lo.qn,
            right: hi.qn,
            value,
            parts,
        });
    }
    Some(ReducedOps {
        d: HashMap::new(),
        f: None,
        shell0,
    })
}

/// d_σ of the SIAM as a rank-½ tensor on its impurity multiplets, from the model's own reduced
/// ⟨j‖d†‖j′⟩ (the hybridization term of [`crate::model::Multiplets`], so that the phases are
/// those the iteration uses); X_F = d_σ(n_d − 1) on the ket's side, and n_d − 1 = Q for the
/// impurity orbital counted as one site. `None` if the model has no such term (Kondo).
fn reduced_impurity_level(run: &Run, trick: bool) -> Option<ReducedOps> {
    use crate::model::{LocalOp, SiteZero};
    let model = run.model();
    let x = crate::nrg::shell::seeded_variables(model);
    let site0 = SiteZero {
        coupling_factor: run.header().chain.a_lambda,
        h_total: 0.0,
    };
    let m = model.multiplets(&x, site0)?;
    let ddag = m.terms.iter().find_map(|(_, op)| match op {
        LocalOp::Hopping(d) => Some(d),
        _ => None,
    })?;
    let mut d = HashMap::new();
    let mut f = HashMap::new();
    for (bra, ket, red) in ddag {
        let xt = faer::Mat::<f64>::from_fn(red.ncols(), red.nrows(), |i, j| red[(j, i)]);
        let q = f64::from(m.blocks[*bra].0.q);
        if q != 0.0 {
            f.insert(
                (*ket, *bra),
                faer::Mat::<f64>::from_fn(xt.nrows(), xt.ncols(), |i, j| q * xt[(i, j)]),
            );
        }
        d.insert((*ket, *bra), xt);
    }
    Some(ReducedOps {
        d,
        f: trick.then_some(f),
        shell0: Vec::new(),
    })
}

/// The Kondo model's T-matrix operator O_σ = [f_0σ, H_imp] of both spins, divided by √A_Λ,
/// with its parts. For H_imp = J S·s_0 + K (n_0 − 1) − h S_z (s_0 = ½ f†σf, J and K the
/// physical couplings 2ρJ·A_Λ, 2ρK·A_Λ of `model::Kondo`):
///
/// ```text
/// O_σ = (J/2) Σ_σ′ (S·σ)_σσ′ f_0σ′ + K f_0σ        (the field commutes with f_0)
/// ```
///
/// It is built as the commutator of f_0σ with the model's own terms, so each part is the
/// commutator with ∂H_imp/∂θ (O is linear in J and K: no second-order parts). The 1/√A_Λ makes
/// −πρ_0 Im T the continuum's: Wilson's chain has the low-energy density of states ρ_0/A_Λ at
/// site 0 (the reason its couplings carry A_Λ), so unitarity reads −π(ρ_0/A_Λ) Im T_chain = 1.
pub fn t_matrix_operator(
    model: &dyn crate::model::ImpurityModel,
    site0: crate::model::SiteZero,
    dirs: &Directions,
) -> [LocalOperator; 2] {
    let space = model.space();
    let x = crate::nrg::shell::seeded_variables(model);
    let terms = model.hamiltonian(&space, &x, site0);
    let var_index: Vec<usize> = dirs
        .vars()
        .iter()
        .map(|&v| crate::model::variable_index(model, v).expect("direction is a model variable"))
        .collect();
    let norm = 1.0 / site0.coupling_factor.sqrt();
    SPINS.map(|sigma| {
        let f = space.c(crate::model::SITE0, sigma);
        let commutators: Vec<nalgebra::DMatrix<f64>> =
            terms.iter().map(|t| &f * &t.op - &t.op * &f).collect();
        let combine = |coef: &dyn Fn(&num_dual::Dual2DVec64) -> f64| {
            let mut m = nalgebra::DMatrix::zeros(space.dim(), space.dim());
            for (t, c) in terms.iter().zip(&commutators) {
                let a = coef(&t.coef);
                if a != 0.0 {
                    m += c * (a * norm);
                }
            }
            m
        };
        LocalOperator {
            value: combine(&|c| c.re),
            parts: (0..dirs.parts())
                .map(|p| combine(&|c| crate::nrg::shell::part_coefficient(c, p, dirs, &var_index)))
                .collect(),
        }
    })
}

/// The operators of a chain's forward pass.
fn shell_zero_ops(
    operator: SpectralOperator,
    config: &RunConfig,
    run: &Run,
    space: &crate::model::LocalSpace,
    trick: bool,
    dirs: &Directions,
) -> ShellZeroOps {
    use crate::model::IMPURITY;
    let plain = |m: nalgebra::DMatrix<f64>| LocalOperator {
        value: m,
        parts: Vec::new(),
    };
    match operator {
        SpectralOperator::ImpurityLevel => ShellZeroOps {
            x: SPINS.map(|s| plain(space.c(IMPURITY, s))),
            f: trick.then(|| {
                SPINS.map(|s| plain(space.c(IMPURITY, s) * space.number(IMPURITY, 1 - s)))
            }),
            reduced: match run.symmetry() {
                Symmetry::QSz => None,
                Symmetry::QS => reduced_impurity_level(run, trick),
            },
        },
        SpectralOperator::TMatrix => {
            let m = &config.model;
            let site0 = crate::model::SiteZero {
                coupling_factor: run.header().chain.a_lambda,
                h_total: if m.field == FieldKind::Total {
                    m.h
                } else {
                    0.0
                },
            };
            ShellZeroOps {
                x: t_matrix_operator(run.model(), site0, dirs),
                f: None,
                reduced: match run.symmetry() {
                    Symmetry::QSz => None,
                    Symmetry::QS => reduced_t_matrix(run, dirs),
                },
            }
        }
    }
}

/// The sum rule's right-hand side ⟨{X_σ, X_σ†}⟩ per spin: 1 for d_σ (an exact identity); for
/// the T-matrix the expectation value of the local operator {O_σ, O_σ†} in the full density
/// matrix reduced to shell 0.
fn expected_weights(
    operator: SpectralOperator,
    ops: &ShellZeroOps,
    u0: &[faer::Mat<f64>],
    rho0: &[faer::Mat<f64>],
    space: &crate::model::LocalSpace,
    reduced: f64,
) -> [f64; 2] {
    match operator {
        SpectralOperator::ImpurityLevel => [1.0; 2],
        // (Q, S): from the reduced operator on shell 0 (the backward pass's)
        SpectralOperator::TMatrix if ops.reduced.is_some() => [reduced; 2],
        SpectralOperator::TMatrix => SPINS.map(|s| {
            let o = &ops.x[s].value;
            let anti = o * o.transpose() + o.transpose() * o;
            fdm::local_expectation(u0, rho0, space, &anti)
        }),
    }
}
// ---- progress (for the explorer's status line; no part of the method) ----------------------

/// Progress of [`spectrum_with_progress`]: `report(done, total)` after every shell of either
/// pass, summed over the chains of a z-average, with total = 2·Σ_chains (N_max + 1) (plus N_max + 1
/// for a chain whose forward pass runs again, [`crate::fdm::DdSkip`]). Chains run
/// in parallel, so `report` may be called from several threads at once.
pub struct Progress<'a> {
    done: AtomicUsize,
    /// Grows when a chain's forward pass is run again (its DD-skip bound failed).
    total: AtomicUsize,
    report: &'a (dyn Fn(usize, usize) + Sync),
}

impl<'a> Progress<'a> {
    fn new(configs: &[RunConfig], report: &'a (dyn Fn(usize, usize) + Sync)) -> Progress<'a> {
        let total = configs
            .iter()
            .map(|c| 2 * (crate::chain::last_shell(&c.nrg) + 1))
            .sum();
        Progress {
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(total),
            report,
        }
    }

    fn shell(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.report)(done, self.total.load(Ordering::Relaxed));
    }

    /// `shells` more shells to come (a forward pass run again).
    fn add(&self, shells: usize) {
        self.total.fetch_add(shells, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IMPURITY, ImpurityModel, Kondo, SITE0, SiteZero};
    use nalgebra::DMatrix;

    /// The T-matrix operator built as a commutator is the closed form
    /// O_σ = ((J/2) Σ_σ′ (S·σ)_σσ′ f_0σ′ + K f_0σ)/√A, and the sum rule's identity
    /// Σ_σ{O_σ, O_σ†} = ((J²/4)(3/2 − 4 S·s_0) + 2K²)/A holds, with ∂O/∂ρJ = √A·(S·σ f) as its
    /// part. Exact arithmetic on 8×8 matrices of small integers and halves: 1e-13 is round-off.
    #[test]
    fn t_matrix_operator_is_the_closed_form_and_obeys_the_anticommutator_identity() {
        let (j, k, a) = (0.3, 0.07, 1.1);
        let model = Kondo { j, k, h_imp: 0.02 };
        let site0 = SiteZero {
            coupling_factor: a,
            h_total: 0.01,
        };
        let dirs = Directions::new(vec![Variable::J, Variable::K], [(0, 0), (0, 1), (1, 1)]);
        let ops = t_matrix_operator(&model, site0, &dirs);
        let s = model.space();
        let (jp, kp) = (2.0 * j * a, 2.0 * k * a);
        let f = |sg: usize| s.c(SITE0, sg);
        let sz = s.sz(IMPURITY);
        let sp = s.s_plus(IMPURITY);
        let sm = sp.transpose();
        // (S·σ)_↑↑ = S^z, (S·σ)_↑↓ = S^−, (S·σ)_↓↑ = S^+, (S·σ)_↓↓ = −S^z
        let spin_f = [&sz * f(0) + &sm * f(1), &sp * f(0) - &sz * f(1)];
        let close = |x: &DMatrix<f64>, y: &DMatrix<f64>| (x - y).abs().max() < 1e-13;
        let mut anti = DMatrix::zeros(s.dim(), s.dim());
        for sg in 0..2 {
            let o = &ops[sg];
            let want = (&spin_f[sg] * (jp / 2.0) + f(sg) * kp) / a.sqrt();
            assert!(close(&o.value, &want), "σ = {sg}");
            assert!(
                close(&o.parts[0], &(&spin_f[sg] * a.sqrt())),
                "∂/∂ρJ, σ = {sg}"
            );
            assert!(
                close(&o.parts[1], &(f(sg) * (2.0 * a.sqrt()))),
                "∂/∂ρK, σ = {sg}"
            );
            for p in 2..5 {
                assert!(o.parts[p].abs().max() == 0.0, "O is linear in J and K");
            }
            anti += &o.value * o.value.transpose() + o.value.transpose() * &o.value;
        }
        let one = DMatrix::identity(s.dim(), s.dim());
        let want = ((&one * 1.5 - s.spin_dot(IMPURITY, SITE0) * 4.0) * (jp * jp / 4.0)
            + &one * (2.0 * kp * kp))
            / a;
        assert!(close(&anti, &want));
    }
}
