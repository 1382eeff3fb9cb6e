//! The impurity spectral function A_σ(ω, T) = −Im G_dσ(ω)/π by the full-density-matrix NRG
//! (Weichselbaum & von Delft, PRL 99, 076402 (2007); the complete basis of Anders & Schiller),
//! value only. The formulas and their notation are those of
//! `shared/design/spectral-derivatives.md`, §1 and §5.
//!
//! Two passes over the chain:
//! 1. **Forward** (the ordinary iteration, no derivative parts): every shell's eigenvalues,
//!    eigenvectors U and kept counts are stored, and the impurity annihilator d_σ is carried
//!    along in the eigenbasis of every shell, on all four blocks (KK, KD, DK, DD). d acts on the
//!    impurity orbital, which is first in the Jordan–Wigner order, so in the product basis
//!    (kept states of shell N−1) ⊗ (site N) it is d_{N−1,KK} ⊗ 1 with no sign. Storage per
//!    shell is U and the two d's: proportional to Σ_b n_b², as the backward sweep needs.
//! 2. **Backward**: the weights w_N = 4^{N_max−N} Z̃_N / Z of every shell's discarded states
//!    at the user's temperature T (in logarithms: 4^{N_max−N} overflows), the reduced density
//!    matrices R_N on the kept spaces (R_{N−1} = Σ_s U_s (R_N ⊕ ρ^D_N) U_sᵀ, U_s the rows of a
//!    product block that belong to site state s), and the pole weights
//!    W_rs = X_rs (ρX + Xρ)_rs of every pair (r, s) ∉ K×K, at Ω_rs = ω_N (E_s − E_r).
//!
//! The poles are binned on a logarithmic grid per sign of Ω and broadened once at the end
//! ([`Binned`]). The sum rule Σ W = Tr ρ{d, d†} = 1 holds exactly for the complete basis, so
//! its residual measures the bookkeeping, not the truncation; ⟨n_dσ⟩ = Tr ρ d†d comes from the
//! same poles.
//!
//! The self-energy trick (Bulla, Hewson & Pruschke 1998; design note §1.6), on by default when
//! U ≠ 0: X_F = d_σ n_σ̄ is carried along with d (from the local Fock space at shell 0, then
//! exactly like d), its poles W_F = (X_F)_rs (ρX + Xρ)_rs use the same density matrices and
//! Σ W_F = ⟨n_σ̄⟩ is checked. [`Spectrum::evaluate`] makes G and F complex by Kramers–Kronig,
//! forms Σ = U F/G and A = −Im G_new/π with G_new = 1/(ω − ε_dσ − Δ_σ(ω) − Σ).
//!
//! z-averaging (`nrg.z_average = Nz`): Nz chains with z_i = i/Nz, i = 1…Nz (so z = 1, the
//! plain chain, is one of them), run in parallel on rayon's pool and binned on one grid; the
//! bins of A and of F are averaged in z order (independent of the scheduling) before Σ is
//! formed, as is standard.
//!
//! Not in this phase: derivatives of A, the Kondo model's T-matrix, z-averaged
//! thermodynamics, spilling per-shell data to disk.

use crate::jet::Directions;
use crate::linalg::{gemm, mul, sandwich};
use crate::model::{IMPURITY, LocalSpace};
use crate::params::{InvalidParam, ModelKind, RunConfig};
use crate::record::Header;
use crate::shell::{SubBlocks, group_by_qn};
use crate::solver::Run;
use crate::step::EigenBlock;
use crate::symmetry::{Qn, SPINS, Symmetry, creation_qn};
use faer::Mat;
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

/// The broadening kernel K(ω, Ω), normalized (∫K dω = 1) for every pole Ω:
///
///   K = h(Ω)·P(ω, Ω) + (1 − h(Ω))·G(ω − Ω),   h(Ω) = 1 − exp(−(Ω/ω₀)²),
///   P = θ(ωΩ)/(√π b|Ω|)·exp(−u²), u = ln|ω/Ω|/b + b/4   (log-Gaussian),
///   G(x) = exp(−(x/γ)²)/(√π γ)                             (linear Gaussian, width γ ~ T).
///
/// The log-Gaussian is Weichselbaum–von Delft's θ(ωΩ)/(√π b|ω|)·exp(−(ln|ω/Ω|/b − b/4)²),
/// rewritten with the prefactor 1/|Ω| (the two are identical). The design note's §1.5 pairs
/// 1/|Ω| with −b/4, which integrates over ω to e^{b²/2} (1.197 at b = 0.6; the unit test below
/// caught it); with +b/4 it is normalized. Its Ω-derivatives keep the note's form
/// (∂_Ω P = κP/Ω, κ = 2u/b − 1), as a constant in u does not enter them.
///
/// Why the crossover is in the pole position Ω rather than in ω: each pole keeps exactly its
/// weight whatever the mix, so the broadened A integrates to Σ W. Poles with |Ω| ≪ T (discarded
/// pairs nearly degenerate at the scale T) would give the log-Gaussian's spikes at |ω| ≪ T; they
/// are smeared over ~T instead, which is the physical resolution at temperature T.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    pub b: f64,
    /// ω₀ (0: no crossover).
    pub omega0: f64,
    /// γ.
    pub gamma: f64,
}

impl Kernel {
    /// Weight of the log-Gaussian part for a pole at Ω.
    fn log_share(&self, big: f64) -> f64 {
        if self.omega0 == 0.0 {
            1.0
        } else {
            -(-(big / self.omega0).powi(2)).exp_m1()
        }
    }

    /// K(ω, Ω).
    pub fn eval(&self, omega: f64, big: f64) -> f64 {
        let h = self.log_share(big);
        let mut k = 0.0;
        if h > 0.0 && omega * big > 0.0 {
            let u = (omega / big).ln() / self.b + self.b / 4.0;
            k += h * (-u * u).exp() / (PI.sqrt() * self.b * big.abs());
        }
        if h < 1.0 {
            let x = (omega - big) / self.gamma;
            k += (1.0 - h) * (-x * x).exp() / (PI.sqrt() * self.gamma);
        }
        k
    }
}

/// Pole weights on a logarithmic grid, one per sign of Ω: bins at |Ω_j| = exp(ℓ₀ + jΔ), each
/// weight split linearly in ln|Ω| between its two neighbouring bins (design note §5), so the
/// total weight is exact and the error of the broadened A is O(Δ²).
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    l0: f64,
    dl: f64,
    /// Weights of the bins at +|Ω_j| and at −|Ω_j|.
    pub pos: Vec<f64>,
    pub neg: Vec<f64>,
}

impl Binned {
    /// Bins from `lo` to (at least) `hi`, `per_decade` per decade.
    pub fn new(lo: f64, hi: f64, per_decade: usize) -> Binned {
        let dl = std::f64::consts::LN_10 / per_decade as f64;
        let l0 = lo.ln();
        let n = ((hi.ln() - l0) / dl).ceil().max(1.0) as usize + 1;
        Binned {
            l0,
            dl,
            pos: vec![0.0; n],
            neg: vec![0.0; n],
        }
    }

    /// |Ω| of bin j.
    pub fn center(&self, j: usize) -> f64 {
        (self.l0 + j as f64 * self.dl).exp()
    }

    /// Add weight `w` at Ω. A pole at exactly zero (degenerate states of neighbouring charge) is
    /// split evenly between the two signs, which keeps a particle–hole symmetric spectrum so.
    pub fn add(&mut self, big: f64, w: f64) {
        if big == 0.0 {
            self.pos[0] += 0.5 * w;
            self.neg[0] += 0.5 * w;
            return;
        }
        let n = self.pos.len();
        let bins = if big > 0.0 {
            &mut self.pos
        } else {
            &mut self.neg
        };
        let x = (big.abs().ln() - self.l0) / self.dl;
        if x <= 0.0 {
            bins[0] += w;
        } else if x >= (n - 1) as f64 {
            bins[n - 1] += w;
        } else {
            let j = x.floor() as usize;
            let f = x - j as f64;
            bins[j] += (1.0 - f) * w;
            bins[j + 1] += f * w;
        }
    }

    /// Σ_j M_j K(ω, ±|Ω_j|).
    pub fn broaden(&self, kernel: &Kernel, omega: f64) -> f64 {
        let mut a = 0.0;
        for j in 0..self.pos.len() {
            let c = self.center(j);
            if self.pos[j] != 0.0 {
                a += self.pos[j] * kernel.eval(omega, c);
            }
            if self.neg[j] != 0.0 {
                a += self.neg[j] * kernel.eval(omega, -c);
            }
        }
        a
    }

    /// Total weight.
    pub fn total(&self) -> f64 {
        self.pos.iter().sum::<f64>() + self.neg.iter().sum::<f64>()
    }
}

/// One diagonalized block as the backward sweep needs it.
struct StoredBlock {
    /// Rescaled, shifted eigenvalues (ascending).
    energies: Vec<f64>,
    u: Mat<f64>,
    kept: usize,
}

/// d_σ between two blocks of one shell, in their eigenbases: X_rs = ⟨r ∈ left|d_σ|s ∈ right⟩.
struct StoredOp {
    left: usize,
    right: usize,
    x: Mat<f64>,
}

/// What the backward sweep needs of one shell.
struct StoredShell {
    omega: f64,
    /// Accumulated shift C_N (physical units): ℰ = ω_N E + C_N.
    shift: f64,
    blocks: Vec<StoredBlock>,
    subs: Vec<SubBlocks>,
    d: [Vec<StoredOp>; 2],
    /// X_F = d_σ n_σ̄ for the self-energy trick, on the same block pairs as d (empty when the
    /// trick is off).
    f: [Vec<StoredOp>; 2],
}

impl StoredShell {
    fn bytes(&self) -> usize {
        let mats: usize = self
            .blocks
            .iter()
            .map(|b| b.u.nrows() * b.u.ncols())
            .sum::<usize>()
            + self
                .d
                .iter()
                .chain(&self.f)
                .flatten()
                .map(|o| o.x.nrows() * o.x.ncols())
                .sum::<usize>();
        8 * (mats + self.blocks.iter().map(|b| b.energies.len()).sum::<usize>())
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

/// Wall time of the two passes (binning is part of the backward one; broadening happens when
/// A is evaluated).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpectralTimes {
    pub forward: Duration,
    pub backward: Duration,
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
    /// What the self-energy trick needs of the model.
    pub siam: SiamLevels,
    pub sums: [SpinSums; 2],
    /// w_N of every shell (Σ = 1); of the z = 1 chain when z-averaged.
    pub shell_weights: Vec<f64>,
    /// max_N |Tr R_{N−1} − Σ_{M≥N} w_M|: the backward sweep's own check.
    pub trace_residual: f64,
    /// Bytes of per-shell data stored between the passes (eigenvectors, energies, d), of the
    /// largest chain when z-averaged (chains run in parallel: as many at once as threads).
    pub stored_bytes: usize,
    /// Wall time of the passes, summed over the chains of a z-average.
    pub times: SpectralTimes,
    omega_last: f64,
    /// The twists z of the averaged chains (one value without z-averaging).
    pub z_values: Vec<f64>,
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

    /// A_σ(ω), broadened.
    pub fn a(&self, sigma: usize, omega: f64) -> f64 {
        self.bins[sigma].broaden(&self.kernel, omega)
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

    fn empty_bins(&self) -> Binned {
        bins_for(&self.options, self.omega_last())
    }

    /// ⟨n_d⟩ = Σ_σ ⟨d†_σ d_σ⟩.
    pub fn n_d(&self) -> f64 {
        self.sums.iter().map(|s| s.occupation).sum()
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
    fn spin(sigma: usize) -> f64 {
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
        use rayon::prelude::*;
        let Some(bins_f) = &self.bins_f else {
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
        };
        let lo = self.bins[0].center(0);
        let hi = 10.0 * self.bins[0].center(self.bins[0].pos.len() - 1);
        let steps = ((hi / lo).log10() * KK_POINTS_PER_DECADE as f64).ceil() as usize;
        let mut grid: Vec<f64> = (0..=steps)
            .map(|i| lo * (hi / lo).powf(i as f64 / steps as f64))
            .flat_map(|x| [x, -x])
            .chain(std::iter::once(0.0))
            .chain(omega.iter().copied())
            .collect();
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        // broadened A and A_F on the grid, per spin
        let spectra: Vec<[Vec<f64>; 2]> = SPINS
            .iter()
            .map(|&sigma| {
                [&self.bins[sigma], &bins_f[sigma]].map(|b| {
                    grid.par_iter()
                        .map(|&w| b.broaden(&self.kernel, w))
                        .collect()
                })
            })
            .collect();
        let u = self.siam.u;
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
                    sigma: [Complex::new(0.0, 0.0); 2],
                };
                for sigma in SPINS {
                    let [ag, af] = &spectra[sigma];
                    let g = Complex::new(hilbert(&grid, ag, k), -PI * ag[k]);
                    let f = Complex::new(hilbert(&grid, af, k), -PI * af[k]);
                    let s = f / g * u;
                    let g_new = (Complex::new(w - self.siam.level(sigma), 0.0)
                        - self.siam.hybridization(sigma, w)
                        - s)
                        .inv();
                    p.a_raw[sigma] = ag[k];
                    p.a[sigma] = -g_new.im / PI;
                    p.sigma[sigma] = s;
                }
                p
            })
            .collect()
    }
}

fn bins_for(o: &SpectralOptions, omega_last: f64) -> Binned {
    let lo = o.bin_floor * o.t.min(omega_last);
    Binned::new(lo, o.bin_ceiling.max(lo), o.bins_per_decade)
}

/// Compute the FDM spectral function of the impurity level of a SIAM run at temperature
/// `opts.t`. The run's own `derive` list is ignored: this phase is value only.
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
    opts.validate()?;
    if config.model.kind != ModelKind::Siam {
        return Err(InvalidParam {
            key: "model.kind".into(),
            value: config.model.kind.name().into(),
            reason: "the spectral function is implemented for the SIAM only (the Kondo model's \
                     T-matrix is not yet)"
                .into(),
        });
    }
    if config.symmetry() != Symmetry::QSz {
        return Err(InvalidParam {
            key: "nrg.symmetry".into(),
            value: config.symmetry().name().into(),
            reason: "the spectral function is implemented in (Q, S_z) blocks only (d† as a \
                     rank-½ tensor is not yet): use \"QSZ\" or \"auto\""
                .into(),
        });
    }
    let siam = SiamLevels::of(config);
    let trick = opts.self_energy_trick && siam.u != 0.0;
    // z-averaging: one chain per z_i = i/Nz (i = 1…Nz, so z = 1 is among them), all binned on
    // one grid, whose lowest bin is set by the smallest ω_{N_max} of the chains
    let nz = config.nrg.z_average;
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
    let template = bins_for(opts, omega_last);
    let progress = Progress::new(&configs, report);
    use rayon::prelude::*;
    // each chain is independent; the results are combined in the order of z afterwards, so
    // they do not depend on the scheduling
    let chains: Vec<Option<OneChain>> = configs
        .par_iter()
        .map(|c| one_chain(c, opts.t, trick, &template, &cancel, &progress))
        .collect::<Result<_, _>>()?;
    let Some(chains) = chains.into_iter().collect::<Option<Vec<OneChain>>>() else {
        return Ok(None);
    };
    let scale = 1.0 / nz as f64;
    let average = |pick: &dyn Fn(&OneChain) -> &[Binned; 2]| -> [Binned; 2] {
        let mut out = [template.clone(), template.clone()];
        for ch in &chains {
            for (o, b) in out.iter_mut().zip(pick(ch)) {
                for (x, y) in o.pos.iter_mut().zip(&b.pos) {
                    *x += scale * y;
                }
                for (x, y) in o.neg.iter_mut().zip(&b.neg) {
                    *x += scale * y;
                }
            }
        }
        out
    };
    let bins = average(&|c| &c.bins);
    let bins_f = average(&|c| &c.bins_f);
    let mut sums = [SpinSums::default(); 2];
    for ch in &chains {
        for (s, c) in sums.iter_mut().zip(&ch.sums) {
            s.weight += scale * c.weight;
            s.occupation += scale * c.occupation;
            s.occupation_spectral += scale * c.occupation_spectral;
            s.weight_f += scale * c.weight_f;
        }
    }
    let last = chains.last().expect("at least one chain");
    Ok(Some(Spectrum {
        header: last.header.clone(),
        options: opts.clone(),
        kernel: Kernel {
            b: opts.b,
            omega0: opts.crossover * opts.t,
            gamma: opts.linear_width * opts.t,
        },
        bins,
        bins_f: trick.then_some(bins_f),
        siam,
        sums,
        shell_weights: last.shell_weights.clone(),
        trace_residual: chains.iter().map(|c| c.trace_residual).fold(0.0, f64::max),
        stored_bytes: chains.iter().map(|c| c.stored_bytes).max().unwrap_or(0),
        times: SpectralTimes {
            forward: chains.iter().map(|c| c.times.forward).sum(),
            backward: chains.iter().map(|c| c.times.backward).sum(),
        },
        omega_last,
        z_values: configs.iter().map(|c| c.nrg.z).collect(),
    }))
}

/// The forward and backward passes of one chain (one z).
struct OneChain {
    header: Header,
    bins: [Binned; 2],
    bins_f: [Binned; 2],
    sums: [SpinSums; 2],
    shell_weights: Vec<f64>,
    trace_residual: f64,
    stored_bytes: usize,
    times: SpectralTimes,
}

fn one_chain(
    config: &RunConfig,
    t: f64,
    trick: bool,
    template: &Binned,
    cancel: &Arc<AtomicBool>,
    progress: &Progress,
) -> Result<Option<OneChain>, InvalidParam> {
    let started = Instant::now();
    let mut run =
        Run::with_directions(config, Directions::default())?.with_cancel_flag(cancel.clone());
    let header = run.header().clone();
    let space = run.model().space();
    let shells = forward(&mut run, &space, trick, progress);
    if run.is_cancelled() {
        return Ok(None);
    }
    let forward_time = started.elapsed();
    let clock = Instant::now();
    let mut bins = [template.clone(), template.clone()];
    let mut bins_f = [template.clone(), template.clone()];
    let Some((sums, shell_weights, trace_residual)) =
        backward(&shells, t, &mut bins, &mut bins_f, cancel, progress)
    else {
        return Ok(None);
    };
    Ok(Some(OneChain {
        header,
        bins,
        bins_f,
        sums,
        shell_weights,
        trace_residual,
        stored_bytes: shells.iter().map(StoredShell::bytes).sum(),
        times: SpectralTimes {
            forward: forward_time,
            backward: clock.elapsed(),
        },
    }))
}

/// The forward pass: run the iteration and keep, per shell, the eigenbases and d_σ on all
/// four blocks.
fn forward(
    run: &mut Run,
    space: &LocalSpace,
    trick: bool,
    progress: &Progress,
) -> Vec<StoredShell> {
    let mut shells: Vec<StoredShell> = Vec::new();
    // d_σ (and X_F = d_σ n_σ̄) on the kept space of the previous shell, keyed by (left, right)
    // kept-block index
    let mut kept_d: [HashMap<(usize, usize), Mat<f64>>; 2] = [HashMap::new(), HashMap::new()];
    let mut kept_f: [HashMap<(usize, usize), Mat<f64>>; 2] = [HashMap::new(), HashMap::new()];
    while let Some(shell) = run.next_raw_shell() {
        let index: HashMap<Qn, usize> = shell
            .eig
            .iter()
            .enumerate()
            .map(|(b, eb)| (eb.qn, b))
            .collect();
        let d = SPINS.map(|sigma| {
            if shell.n == 0 {
                initial_d(space, &space.c(IMPURITY, sigma), &shell.eig, &index, sigma)
            } else {
                propagate_d(&shell.eig, &shell.subs, &index, &kept_d[sigma], sigma)
            }
        });
        // X_F = d_σ n_σ̄ acts on the impurity only, like d: the same propagation, no sign
        let f = SPINS.map(|sigma| {
            if !trick {
                Vec::new()
            } else if shell.n == 0 {
                let local = space.c(IMPURITY, sigma) * space.number(IMPURITY, 1 - sigma);
                initial_d(space, &local, &shell.eig, &index, sigma)
            } else {
                propagate_d(&shell.eig, &shell.subs, &index, &kept_f[sigma], sigma)
            }
        });
        // the kept blocks of this shell, in the order the next shell's layout refers to them
        let mut compact = vec![None; shell.eig.len()];
        let mut next = 0;
        for (b, &k) in shell.kept_blocks.iter().enumerate() {
            if k > 0 {
                compact[b] = Some(next);
                next += 1;
            }
        }
        let restrict = |ops: &[StoredOp]| -> HashMap<(usize, usize), Mat<f64>> {
            ops.iter()
                .filter_map(|op| {
                    let (l, r) = (compact[op.left]?, compact[op.right]?);
                    let (kl, kr) = (shell.kept_blocks[op.left], shell.kept_blocks[op.right]);
                    Some(((l, r), op.x.as_ref().submatrix(0, 0, kl, kr).to_owned()))
                })
                .collect()
        };
        for sigma in SPINS {
            kept_d[sigma] = restrict(&d[sigma]);
            kept_f[sigma] = restrict(&f[sigma]);
        }
        let blocks = shell
            .eig
            .into_iter()
            .zip(&shell.kept_blocks)
            .map(|(eb, &kept)| StoredBlock {
                energies: eb.energies,
                u: eb.u,
                kept,
            })
            .collect();
        shells.push(StoredShell {
            omega: shell.free_energy.omega,
            shift: shell.free_energy.shift.value,
            blocks,
            subs: shell.subs,
            d,
            f,
        });
        progress.shell();
    }
    shells
}

/// d_σ (or any local operator `c` with its quantum numbers, such as d_σ n_σ̄) at shell 0, from
/// the local Fock space: the product blocks of shell 0 are the local states grouped by (Q, S_z)
/// exactly as [`group_by_qn`] orders them.
fn initial_d(
    space: &LocalSpace,
    c: &nalgebra::DMatrix<f64>,
    eig: &[EigenBlock],
    index: &HashMap<Qn, usize>,
    sigma: usize,
) -> Vec<StoredOp> {
    let (groups, _) = group_by_qn(space);
    let mut ops = Vec::new();
    for (right, eb) in eig.iter().enumerate() {
        let Some(&left) = index.get(&eb.qn.minus(creation_qn(sigma))) else {
            continue;
        };
        let (rows, cols) = (&groups[&eig[left].qn], &groups[&eb.qn]);
        let local = Mat::<f64>::from_fn(rows.len(), cols.len(), |a, b| c[(rows[a], cols[b])]);
        if (0..local.ncols()).all(|j| (0..local.nrows()).all(|i| local[(i, j)] == 0.0)) {
            continue;
        }
        ops.push(StoredOp {
            left,
            right,
            x: sandwich(eig[left].u.as_ref(), local.as_ref(), eb.u.as_ref()),
        });
    }
    ops
}

/// d_σ at shell N ≥ 1: d_{N−1,KK} ⊗ 1 in the product basis (the impurity is first in the
/// Jordan–Wigner order, so no sign), rotated into the eigenbases of both blocks. The product
/// operator is never formed: (d ⊗ 1)·U_right is assembled sub-block by sub-block.
fn propagate_d(
    eig: &[EigenBlock],
    subs: &[SubBlocks],
    index: &HashMap<Qn, usize>,
    kept_d: &HashMap<(usize, usize), Mat<f64>>,
    sigma: usize,
) -> Vec<StoredOp> {
    let mut ops = Vec::new();
    for (right, eb) in eig.iter().enumerate() {
        let Some(&left) = index.get(&eb.qn.minus(creation_qn(sigma))) else {
            continue;
        };
        let (nl, nr) = (eig[left].dim(), eb.dim());
        let mut du = Mat::<f64>::zeros(nl, nr);
        let mut any = false;
        for s in 0..subs[right].len() {
            let (Some((kr, off_r)), Some((kl, off_l))) = (subs[right][s], subs[left][s]) else {
                continue;
            };
            let Some(x) = kept_d.get(&(kl, kr)) else {
                continue;
            };
            gemm(
                du.as_mut().submatrix_mut(off_l, 0, x.nrows(), nr),
                true,
                x.as_ref(),
                eb.u.as_ref().submatrix(off_r, 0, x.ncols(), nr),
                1.0,
            );
            any = true;
        }
        if any {
            ops.push(StoredOp {
                left,
                right,
                x: mul(eig[left].u.as_ref().transpose(), du.as_ref()),
            });
        }
    }
    ops
}

/// ln Σ exp(x_i) without overflow (−∞ for an empty sum).
fn log_sum_exp(x: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = x.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + x.map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Physical energies −ℰ/T of the discarded states of one block.
fn discarded_exponents(sh: &StoredShell, b: &StoredBlock, t: f64) -> Vec<f64> {
    b.energies[b.kept..]
        .iter()
        .map(|&e| -(sh.omega * e + sh.shift) / t)
        .collect()
}

/// The backward pass: weights, density matrices, poles. Returns the per-spin sums, w_N and the
/// residual of the trace check (`None` if cancelled).
fn backward(
    shells: &[StoredShell],
    t: f64,
    bins: &mut [Binned; 2],
    bins_f: &mut [Binned; 2],
    cancel: &AtomicBool,
    progress: &Progress,
) -> Option<([SpinSums; 2], Vec<f64>, f64)> {
    let n_max = shells.len() - 1;
    let ln4 = 4f64.ln();
    // ln(4^{N_max−N} Z̃_N), with Z̃_N = Tr_{D_N} e^{−ℰ/T} (E_ref = 0; it cancels in w_N, ρ^D)
    let ln_mz: Vec<f64> = shells
        .iter()
        .enumerate()
        .map(|(n, sh)| {
            let x: Vec<f64> = sh
                .blocks
                .iter()
                .flat_map(|b| discarded_exponents(sh, b, t))
                .collect();
            (n_max - n) as f64 * ln4 + log_sum_exp(x.iter().copied())
        })
        .collect();
    let mut ln_z = log_sum_exp(ln_mz.iter().copied());
    let mut weights: Vec<f64> = ln_mz.iter().map(|&l| (l - ln_z).exp()).collect();
    // The exponents are of order |ℰ|/T (10³ and more), so each w_N carries a relative round-off
    // of ~|ℰ|/T·ε and Σ w_N misses 1 by ~1e-13. Folding the measured sum into Z makes the
    // normalization exact to the last bits (it is a multiplicative correction of 1 + O(1e-13)).
    let total: f64 = weights.iter().sum();
    ln_z += total.ln();
    weights.iter_mut().for_each(|w| *w /= total);

    let mut sums = [SpinSums::default(); 2];
    let mut trace_residual = 0.0f64;
    // R_N per block of the current shell (k_b × k_b); empty at the last shell (nothing kept)
    let mut r: Vec<Mat<f64>> = shells[n_max]
        .blocks
        .iter()
        .map(|b| Mat::zeros(b.kept, b.kept))
        .collect();
    for n in (0..=n_max).rev() {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let sh = &shells[n];
        let ln_pref = (n_max - n) as f64 * ln4 - ln_z;
        let rho_d: Vec<Vec<f64>> = sh
            .blocks
            .iter()
            .map(|b| {
                discarded_exponents(sh, b, t)
                    .into_iter()
                    .map(|x| (x + ln_pref).exp())
                    .collect()
            })
            .collect();
        for sigma in SPINS {
            for op in &sh.d[sigma] {
                let f = sh.f[sigma]
                    .iter()
                    .find(|o| o.left == op.left && o.right == op.right)
                    .map(|o| (o, &mut bins_f[sigma]));
                poles(sh, op, f, &r, &rho_d, t, &mut bins[sigma], &mut sums[sigma]);
            }
        }
        progress.shell();
        if n == 0 {
            break;
        }
        let prev = &shells[n - 1];
        let kept_prev: Vec<usize> = prev
            .blocks
            .iter()
            .map(|b| b.kept)
            .filter(|&k| k > 0)
            .collect();
        let mut r_prev: Vec<Mat<f64>> = kept_prev.iter().map(|&k| Mat::zeros(k, k)).collect();
        for (p, b) in sh.blocks.iter().enumerate() {
            for &(kc, off) in sh.subs[p].iter().flatten() {
                let m = kept_prev[kc];
                let nb = b.energies.len();
                let v = b.u.as_ref().submatrix(off, 0, m, nb);
                let (vk, vd) = (v.subcols(0, b.kept), v.subcols(b.kept, nb - b.kept));
                let t1 = mul(vk, r[p].as_ref());
                gemm(r_prev[kc].as_mut(), true, t1.as_ref(), vk.transpose(), 1.0);
                let t2 = Mat::<f64>::from_fn(m, nb - b.kept, |i, j| vd[(i, j)] * rho_d[p][j]);
                gemm(r_prev[kc].as_mut(), true, t2.as_ref(), vd.transpose(), 1.0);
            }
        }
        let trace: f64 = r_prev
            .iter()
            .map(|m| (0..m.nrows()).map(|i| m[(i, i)]).sum::<f64>())
            .sum();
        let expected: f64 = weights[n..].iter().sum();
        trace_residual = trace_residual.max((trace - expected).abs());
        // back to block indexing of shell N−1 (blocks with nothing kept get 0×0)
        let mut it = r_prev.into_iter();
        r = prev
            .blocks
            .iter()
            .map(|b| {
                if b.kept > 0 {
                    it.next().expect("one R per kept block")
                } else {
                    Mat::zeros(0, 0)
                }
            })
            .collect();
    }
    Some((sums, weights, trace_residual))
}

/// The poles of one block pair of d_σ at one shell: W_rs = X_rs (ρ_L X + X ρ_R)_rs for every
/// (r, s) ∉ K×K, with ρ = R ⊕ ρ^D on each side, binned at Ω = ω_N (E_s − E_r). With `f`, the
/// poles of F = ⟨⟨d n̄; d†⟩⟩ too: W_F = (X_F)_rs (ρ_L X + X ρ_R)_rs (the B = d† side is d's).
#[allow(clippy::too_many_arguments)]
fn poles(
    sh: &StoredShell,
    op: &StoredOp,
    mut f: Option<(&StoredOp, &mut Binned)>,
    r: &[Mat<f64>],
    rho_d: &[Vec<f64>],
    t: f64,
    bins: &mut Binned,
    sums: &mut SpinSums,
) {
    let (bl, br) = (&sh.blocks[op.left], &sh.blocks[op.right]);
    let (kl, kr) = (bl.kept, br.kept);
    let (nl, nr) = (bl.energies.len(), br.energies.len());
    let x = op.x.as_ref();
    // ρ_L X: kept rows through R_L, discarded rows scaled by ρ^D
    let mut rx = Mat::<f64>::from_fn(nl, nr, |i, j| {
        if i < kl {
            0.0
        } else {
            rho_d[op.left][i - kl] * x[(i, j)]
        }
    });
    if kl > 0 {
        gemm(
            rx.as_mut().submatrix_mut(0, 0, kl, nr),
            false,
            r[op.left].as_ref(),
            x.submatrix(0, 0, kl, nr),
            1.0,
        );
    }
    // X ρ_R: kept columns through R_R, discarded columns scaled by ρ^D
    let mut xr = Mat::<f64>::from_fn(nl, nr, |i, j| {
        if j < kr {
            0.0
        } else {
            x[(i, j)] * rho_d[op.right][j - kr]
        }
    });
    if kr > 0 {
        gemm(
            xr.as_mut().submatrix_mut(0, 0, nl, kr),
            false,
            x.submatrix(0, 0, nl, kr),
            r[op.right].as_ref(),
            1.0,
        );
    }
    for j in 0..nr {
        for i in 0..nl {
            if i < kl && j < kr {
                continue;
            }
            let v = x[(i, j)];
            let w = v * (rx[(i, j)] + xr[(i, j)]);
            let big = sh.omega * (br.energies[j] - bl.energies[i]);
            bins.add(big, w);
            sums.weight += w;
            if let Some((fop, fbins)) = f.as_mut() {
                let wf = fop.x[(i, j)] * (rx[(i, j)] + xr[(i, j)]);
                fbins.add(big, wf);
                sums.weight_f += wf;
            }
            sums.occupation += v * xr[(i, j)];
            sums.occupation_spectral += w * fermi(big, t);
        }
    }
}

// ---- progress (for the explorer's status line; no part of the method) ----------------------

/// Progress of [`spectrum_with_progress`]: `report(done, total)` after every shell of either
/// pass, summed over the chains of a z-average, with total = 2·Σ_chains (N_max + 1). Chains run
/// in parallel, so `report` may be called from several threads at once.
pub struct Progress<'a> {
    done: AtomicUsize,
    total: usize,
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
            total,
            report,
        }
    }

    fn shell(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.report)(done, self.total);
    }
}

/// f(x) = 1/(e^{x/T} + 1) without overflow.
fn fermi(x: f64, t: f64) -> f64 {
    let y = x / t;
    if y > 0.0 {
        let e = (-y).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + y.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_normalized_on_both_sides_of_the_crossover() {
        // ∫K dω by the trapezoid rule on a fine grid, for poles below, at and above ω₀
        let k = Kernel {
            b: 0.6,
            omega0: 1e-3,
            gamma: 1e-3,
        };
        for big in [-3e-2f64, 1e-4, 1e-3, 5e-3, 0.3] {
            let lo = -big.abs() * 20.0 - 1e-2;
            let hi = big.abs() * 20.0 + 1e-2;
            let n = 400_000;
            let h = (hi - lo) / n as f64;
            let s: f64 = (0..=n)
                .map(|i| {
                    let w = if i == 0 || i == n { 0.5 } else { 1.0 };
                    w * k.eval(lo + i as f64 * h, big)
                })
                .sum::<f64>()
                * h;
            // the log-Gaussian tail beyond 20|Ω| and the grid's resolution of the peak: 1e-4
            assert!((s - 1.0).abs() < 3e-4, "Ω = {big}: ∫K = {s}");
        }
    }

    #[test]
    fn bins_keep_the_total_weight() {
        let mut b = Binned::new(1e-6, 10.0, 200);
        for (big, w) in [
            (1e-9, 0.1),
            (-3e-3, 0.2),
            (0.0, 0.3),
            (0.7, 0.25),
            (50.0, 0.15),
        ] {
            b.add(big, w);
        }
        assert!((b.total() - 1.0).abs() < 1e-15);
    }
}
