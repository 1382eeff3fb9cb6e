//! Run parameters: what a preset or the CLI resolves to before the solver starts.
//!
//! Units: k_B = 1, gμ_B = 1, half band width D = 1, Γ = πρV² with ρ = 1/2D.
//! The names mirror the TOML keys (`model.U`, `nrg.Lambda`, ...) so that error messages,
//! presets, `--set KEY=VALUE` and the JSON header all speak the same language.

use crate::symmetry::Symmetry;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which impurity model is solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Single-impurity Anderson model (U = 0 is the resonant level model).
    Siam,
    /// Spin-1/2 Kondo model with optional potential scattering.
    Kondo,
}

impl ModelKind {
    pub const ALL: [ModelKind; 2] = [ModelKind::Siam, ModelKind::Kondo];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Siam => "siam",
            ModelKind::Kondo => "kondo",
        }
    }

    /// Parameters of this model that can be differentiated (`--derive`), in display order.
    pub fn parameters(self) -> &'static [Param] {
        match self {
            ModelKind::Siam => &[Param::EpsD, Param::U, Param::Gamma, Param::H],
            ModelKind::Kondo => &[Param::J, Param::K, Param::H],
        }
    }
}

/// What the magnetic field `h` couples to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// −h S_z of the whole system (impurity and conduction band): Wilson's χ_imp.
    Total,
    /// −h S_z of the impurity only: the local susceptibility χ_loc.
    Impurity,
}

impl FieldKind {
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Total => "total",
            FieldKind::Impurity => "impurity",
        }
    }
}

/// Discretization of the flat conduction band onto a Wilson chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Discretization {
    /// Wilson's logarithmic grid; V0 carries the A_Λ correction.
    Wilson,
    /// Campo–Oliveira representative energies (no A_Λ needed).
    CampoOliveira,
    /// Žitko–Pruschke representative energies (no A_Λ needed, exact band edge).
    ZitkoPruschke,
}

impl Discretization {
    pub const ALL: [Discretization; 3] = [
        Discretization::Wilson,
        Discretization::CampoOliveira,
        Discretization::ZitkoPruschke,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Discretization::Wilson => "wilson",
            Discretization::CampoOliveira => "campo-oliveira",
            Discretization::ZitkoPruschke => "zitko-pruschke",
        }
    }
}

/// What the impurity contributions subtract: F_imp = F(impurity + chain) − F(bare chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareChain {
    /// The bare chain iterated and truncated by the same rules and kept count as the impurity
    /// run, so that truncation errors cancel where the two spectra coincide (the strong-coupling
    /// fixed point). What established NRG codes do.
    Truncated,
    /// The bare chain solved exactly (no truncation).
    Exact,
}

impl BareChain {
    pub const ALL: [BareChain; 2] = [BareChain::Truncated, BareChain::Exact];

    pub fn name(self) -> &'static str {
        match self {
            BareChain::Truncated => "truncated",
            BareChain::Exact => "exact",
        }
    }
}

/// Which states the partition function at T_N runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermoStates {
    /// Every state of the chain of length N: the shell's states plus the states discarded at
    /// earlier shells times their environment (the Anders–Schiller basis of full-density-matrix
    /// NRG). Halves the truncation error of S_imp and Tχ_imp at the same kept count.
    Complete,
    /// Wilson's choice: the states of shell N only.
    Shell,
}

impl ThermoStates {
    pub const ALL: [ThermoStates; 2] = [ThermoStates::Complete, ThermoStates::Shell];

    pub fn name(self) -> &'static str {
        match self {
            ThermoStates::Complete => "complete",
            ThermoStates::Shell => "shell",
        }
    }
}

/// Whether `auto` picks (Q, S) blocks when the run allows them. The (Q, S) mode offers every
/// thermodynamic output of the (Q, S_z) one (χ_loc through the vector sector); spectral
/// functions resolve `auto` on their own ([`RunConfig::for_spectra`]).
pub const AUTO_PICKS_QS: bool = true;

/// Which quantum numbers label the blocks (`nrg.symmetry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SymmetryChoice {
    /// (Q, S) when the run allows it (no field), (Q, S_z) otherwise.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// SU(2) spin symmetry: (Q, S) multiplet blocks, several times smaller. No field.
    #[serde(rename = "QS")]
    Qs,
    /// (Q, S_z) blocks: any field.
    #[serde(rename = "QSZ")]
    Qsz,
}

impl SymmetryChoice {
    pub const ALL: [SymmetryChoice; 3] = [
        SymmetryChoice::Auto,
        SymmetryChoice::Qs,
        SymmetryChoice::Qsz,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SymmetryChoice::Auto => "auto",
            SymmetryChoice::Qs => "QS",
            SymmetryChoice::Qsz => "QSZ",
        }
    }
}

/// A Hamiltonian parameter that derivatives can be taken with respect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Param {
    #[serde(rename = "eps_d")]
    EpsD,
    U,
    Gamma,
    /// The model's field `h`, acting as `model.field` says.
    #[serde(rename = "h")]
    H,
    J,
    K,
}

impl Param {
    pub const ALL: [Param; 6] = [
        Param::EpsD,
        Param::U,
        Param::Gamma,
        Param::H,
        Param::J,
        Param::K,
    ];

    /// The name used in TOML keys, `--derive`, and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Param::EpsD => "eps_d",
            Param::U => "U",
            Param::Gamma => "Gamma",
            Param::H => "h",
            Param::J => "J",
            Param::K => "K",
        }
    }

    pub fn from_name(s: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Impurity model parameters. Fields that do not belong to `kind` are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    pub kind: ModelKind,
    /// On-site Coulomb repulsion (SIAM).
    #[serde(rename = "U")]
    pub u: f64,
    /// Impurity level energy (SIAM); ε_d = −U/2 is particle–hole symmetric.
    pub eps_d: f64,
    /// Hybridization width Γ = πρV² (SIAM).
    #[serde(rename = "Gamma")]
    pub gamma: f64,
    /// Dimensionless exchange ρJ (Kondo): H_K = J_phys S·s_0 with ρ = 1/2D, so J_phys = 2D·ρJ.
    #[serde(rename = "J")]
    pub j: f64,
    /// Dimensionless potential scattering ρK (Kondo): K_phys Σ_σ f†_0σ f_0σ, K_phys = 2D·ρK.
    #[serde(rename = "K")]
    pub k: f64,
    /// Magnetic field (Zeeman term −h S_z, gμ_B = 1).
    pub h: f64,
    /// What the field acts on.
    pub field: FieldKind,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            kind: ModelKind::Siam,
            u: 0.1,
            eps_d: -0.05,
            gamma: 0.01,
            j: 0.2,
            k: 0.0,
            h: 0.0,
            field: FieldKind::Total,
        }
    }
}

impl ModelParams {
    /// Value of a differentiable parameter.
    pub fn get(&self, p: Param) -> f64 {
        match p {
            Param::EpsD => self.eps_d,
            Param::U => self.u,
            Param::Gamma => self.gamma,
            Param::H => self.h,
            Param::J => self.j,
            Param::K => self.k,
        }
    }

    pub fn set(&mut self, p: Param, value: f64) {
        match p {
            Param::EpsD => self.eps_d = value,
            Param::U => self.u = value,
            Param::Gamma => self.gamma = value,
            Param::H => self.h = value,
            Param::J => self.j = value,
            Param::K => self.k = value,
        }
    }
}

/// NRG numerical parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NrgParams {
    /// Logarithmic discretization parameter Λ > 1.
    #[serde(rename = "Lambda")]
    pub lambda: f64,
    pub discretization: Discretization,
    /// Twist parameter z ∈ (0, 1]; z = 1 is the untwisted grid.
    pub z: f64,
    /// Number of kept states per shell (the cut is then moved up to a gap, at most `keep·(1+gap_window)`).
    pub keep: usize,
    /// Optional energy cutoff in units of the shell scale ω_N (0 = none). With both set,
    /// the stricter one wins.
    pub e_cut: f64,
    /// Temperature of shell N is T_N = ω_N / β̄. Larger β̄ puts T_N further below the
    /// truncation cut (the error is ~e^(−β̄·√Λ·E_cut)) at the price of more discretization
    /// ripple; measured at Λ = 2.5 with 300 kept states, β̄ = 0.75 leaves S_imp off by 0.09 in
    /// the free-orbital regime, β̄ = 1 with 400 states by 0.007.
    pub beta_bar: f64,
    /// The chain grows until T_N ≤ T_min.
    #[serde(rename = "T_min")]
    pub t_min: f64,
    /// Fraction above the nominal kept count in which the cut is moved to the largest gap.
    pub gap_window: f64,
    /// How the bare chain is subtracted for impurity contributions.
    #[serde(default = "default_bare_chain")]
    pub bare_chain: BareChain,
    /// Which states the thermodynamics at T_N trace over.
    #[serde(default = "default_thermo_states")]
    pub thermo_states: ThermoStates,
    /// Memory budget in bytes: a run whose estimated peak ([`crate::estimate`]) is larger is
    /// refused before it starts. Defaults to half the physical memory, so presets written
    /// before this key existed load unchanged.
    #[serde(default = "crate::estimate::default_max_memory")]
    pub max_memory: u64,
    /// z-averaging: the spectral function is averaged over Nz twisted chains z_i = i/Nz,
    /// i = 1…Nz (1: the plain chain at `z`). `dnrg spectrum` only; 1…64. Not serialized at 1,
    /// so run headers and written presets stay as they were.
    #[serde(default = "default_z_average", skip_serializing_if = "is_one")]
    pub z_average: usize,
    /// Block labels: (Q, S) multiplets, (Q, S_z), or `auto`. A run's header holds the resolved
    /// choice ([`RunConfig::symmetry`]).
    #[serde(default)]
    pub symmetry: SymmetryChoice,
}

fn default_z_average() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn default_bare_chain() -> BareChain {
    BareChain::Truncated
}

fn default_thermo_states() -> ThermoStates {
    ThermoStates::Complete
}

impl Default for NrgParams {
    fn default() -> Self {
        NrgParams {
            lambda: 2.5,
            discretization: Discretization::Wilson,
            z: 1.0,
            keep: 400,
            e_cut: 0.0,
            beta_bar: 1.0,
            t_min: 1e-8,
            gap_window: 0.2,
            bare_chain: BareChain::Truncated,
            thermo_states: ThermoStates::Complete,
            max_memory: crate::estimate::default_max_memory(),
            z_average: 1,
            symmetry: SymmetryChoice::Auto,
        }
    }
}

/// What to report besides the thermodynamics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputParams {
    /// Number of lowest level clusters listed per shell.
    pub levels: usize,
    /// Compute ⟨n_d⟩, double occupancy, χ_loc and χ_c by automatic differentiation.
    /// `false` gives a plain NRG run (only F, S, C, Tχ), as fast as NRG without derivatives.
    pub impurity_observables: bool,
}

impl Default for OutputParams {
    fn default() -> Self {
        OutputParams {
            levels: 16,
            impurity_observables: true,
        }
    }
}

/// Everything one NRG run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunConfig {
    pub model: ModelParams,
    pub nrg: NrgParams,
    pub output: OutputParams,
    /// Parameters to differentiate with respect to (gradient and Hessian of F_imp, and the
    /// first derivatives of every observable).
    pub derive: Vec<Param>,
}

/// A parameter value the solver cannot accept: the dotted key and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: {reason}")]
pub struct InvalidParam {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl InvalidParam {
    /// The chain would need too many shells (a joint limit on Λ, β̄ and T_min, reported for
    /// `nrg.T_min` by [`RunConfig::validate`]).
    pub fn is_shell_count(&self) -> bool {
        self.key == "nrg.T_min" && self.reason.contains(" shells with Λ")
    }
}

/// Largest number of shells a run may need: beyond this T_min is unreasonably small for Λ.
pub const MAX_SHELLS: usize = 400;

/// Smallest Γ at which derivatives with respect to Γ are offered. Measured (Λ = 3, U = 0.1):
/// ∂F/∂Γ stays within 1e-8 of its Γ → 0 limit down to Γ = 1e-16, but ∂²F/∂Γ² = F_VV·V′² + F_V·V″
/// cancels two terms of order 1/Γ: it is off by 1e-4 at Γ = 1e-8, 1% at 1e-10 and meaningless
/// at 1e-12.
pub const MIN_GAMMA_DERIVATIVE: f64 = 1e-8;
/// Smallest memory budget (`nrg.max_memory`): the program itself needs about this much.
pub const MIN_MEMORY: u64 = 64 << 20;

/// Largest magnitude of an energy parameter (U, ε_d, Γ, J, K, h) in units of D.
pub const MAX_ENERGY: f64 = 1e4;

impl RunConfig {
    /// Whether SU(2) spin symmetry holds: no field of either kind (both models are
    /// SU(2)-invariant without one).
    pub fn spin_rotation_invariant(&self) -> bool {
        self.model.h == 0.0
    }

    /// The block labels this run uses: `nrg.symmetry` with `auto` resolved: (Q, S) whenever
    /// [`Self::spin_rotation_invariant`] (and [`AUTO_PICKS_QS`]).
    pub fn symmetry(&self) -> Symmetry {
        match self.nrg.symmetry {
            SymmetryChoice::Qs => Symmetry::QS,
            SymmetryChoice::Qsz => Symmetry::QSz,
            SymmetryChoice::Auto if AUTO_PICKS_QS && self.spin_rotation_invariant() => Symmetry::QS,
            SymmetryChoice::Auto => Symmetry::QSz,
        }
    }

    /// The configuration a spectral function runs with: `auto` resolved as for thermodynamics
    /// ((Q, S) without a field), except that spin-resolved derivatives ∂A_σ/∂h need (Q, S_z)
    /// blocks (the field is no scalar direction of (Q, S)). An explicit choice stays.
    pub fn for_spectra(&self) -> RunConfig {
        let mut c = self.clone();
        if c.nrg.symmetry == SymmetryChoice::Auto {
            c.nrg.symmetry = if c.symmetry() == Symmetry::QS && !c.derive.contains(&Param::H) {
                SymmetryChoice::Qs
            } else {
                SymmetryChoice::Qsz
            };
        }
        c
    }

    /// Check every value; the first problem found is reported with its dotted key.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(InvalidParam {
                key: key.to_string(),
                value,
                reason: reason.to_string(),
            })
        };
        let m = &self.model;
        let n = &self.nrg;
        for (key, v) in [
            ("model.U", m.u),
            ("model.eps_d", m.eps_d),
            ("model.Gamma", m.gamma),
            ("model.J", m.j),
            ("model.K", m.k),
            ("model.h", m.h),
        ] {
            if !v.is_finite() {
                return bad(key, format!("{v:?}"), "must be a finite number");
            }
            // energies far beyond the band (D = 1) only produce round-off: 1e4 leaves room for
            // every physical question and keeps the eigensolver's inputs sane
            if v.abs() > MAX_ENERGY {
                return bad(
                    key,
                    format!("{v:?}"),
                    &format!("must lie within ±{MAX_ENERGY:e} (the band half-width is 1)"),
                );
            }
        }
        if m.gamma < 0.0 {
            return bad(
                "model.Gamma",
                format!("{:?}", m.gamma),
                "must be ≥ 0 (Γ = πρV²)",
            );
        }
        if !(n.lambda.is_finite() && n.lambda > 1.0) {
            return bad(
                "nrg.Lambda",
                format!("{:?}", n.lambda),
                "must be greater than 1",
            );
        }
        if n.lambda > 100.0 {
            return bad(
                "nrg.Lambda",
                format!("{:?}", n.lambda),
                "must be at most 100",
            );
        }
        if !(n.z.is_finite() && n.z >= 0.01 && n.z <= 1.0) {
            return bad("nrg.z", format!("{:?}", n.z), "twist must lie in [0.01, 1]");
        }
        if !(1..=64).contains(&n.z_average) {
            return bad(
                "nrg.z_average",
                n.z_average.to_string(),
                "must be between 1 and 64",
            );
        }
        if n.keep == 0 {
            return bad(
                "nrg.keep",
                n.keep.to_string(),
                "must keep at least one state",
            );
        }
        if n.keep > 20_000 {
            return bad("nrg.keep", n.keep.to_string(), "at most 20000 kept states");
        }
        if !(n.e_cut.is_finite() && n.e_cut >= 0.0) {
            return bad(
                "nrg.e_cut",
                format!("{:?}", n.e_cut),
                "must be ≥ 0 (0 = no energy cutoff)",
            );
        }
        if !(n.beta_bar.is_finite() && (0.01..=100.0).contains(&n.beta_bar)) {
            return bad(
                "nrg.beta_bar",
                format!("{:?}", n.beta_bar),
                "must lie in [0.01, 100] (T_N = ω_N/β̄; usual values 0.5–2)",
            );
        }
        if !(n.t_min.is_finite() && n.t_min > 0.0) {
            return bad("nrg.T_min", format!("{:?}", n.t_min), "must be positive");
        }
        if n.t_min < 1e-100 {
            return bad(
                "nrg.T_min",
                format!("{:?}", n.t_min),
                "must be at least 1e-100",
            );
        }
        if !(n.gap_window.is_finite() && (0.0..=1.0).contains(&n.gap_window)) {
            return bad(
                "nrg.gap_window",
                format!("{:?}", n.gap_window),
                "must lie in [0, 1]",
            );
        }
        if n.max_memory < MIN_MEMORY {
            return bad(
                "nrg.max_memory",
                crate::files::fmt_bytes(n.max_memory),
                &format!(
                    "must be at least {} (a number of bytes, or a string such as \"8 GiB\")",
                    crate::files::fmt_bytes(MIN_MEMORY)
                ),
            );
        }
        if self.output.levels > 100_000 {
            return bad(
                "output.levels",
                self.output.levels.to_string(),
                "at most 100000",
            );
        }
        let shells = crate::chain::shells_needed(n);
        if shells > MAX_SHELLS {
            return bad(
                "nrg.T_min",
                format!("{:?}", n.t_min),
                &format!(
                    "needs {} shells with Λ = {:?}, β̄ = {:?} (at most {MAX_SHELLS}); raise T_min or Λ",
                    if shells > 1_000_000_000 {
                        "over 1e9".to_string()
                    } else {
                        shells.to_string()
                    },
                    n.lambda,
                    n.beta_bar
                ),
            );
        }
        let allowed = m.kind.parameters();
        for p in &self.derive {
            if !allowed.contains(p) {
                let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
                return bad(
                    "derive",
                    p.name().to_string(),
                    &format!(
                        "not a parameter of the {} model (expected one of {})",
                        m.kind.name(),
                        names.join(", ")
                    ),
                );
            }
        }
        if m.kind == ModelKind::Siam
            && m.gamma < MIN_GAMMA_DERIVATIVE
            && self.derive.contains(&Param::Gamma)
        {
            return bad(
                "model.Gamma",
                format!("{:?}", m.gamma),
                &format!(
                    "derivatives with respect to Gamma need Gamma ≥ {MIN_GAMMA_DERIVATIVE:e}: \
                     V ∝ √Γ, so ∂/∂Γ ∝ 1/√Γ amplifies the eigensolver's round-off and \
                     ∂²F/∂Γ² is lost below it (values and every other derivative are computed \
                     for any Gamma ≥ 0)"
                ),
            );
        }
        // derivatives in an impurity field at h = 0 (χ_loc) are fine: the vector sector
        if self.nrg.symmetry == SymmetryChoice::Qs && !self.spin_rotation_invariant() {
            return bad(
                "nrg.symmetry",
                "QS".into(),
                &format!(
                    "a field (model.h = {:?}) breaks SU(2) spin symmetry, so (Q, S) blocks \
                     cannot hold the run: use \"QSZ\" or \"auto\"",
                    m.h
                ),
            );
        }
        Ok(())
    }
}
