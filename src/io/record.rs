//! The records a run produces, shared by every front end (JSONL/CSV writers, the explorer).
//!
//! Field names on the wire are a public contract (scripts depend on them): extend, never rename.
//! Records are deterministic: two runs with the same parameters serialize identically
//! (no wall-clock times in here; front ends time shells themselves).

use crate::params::{NrgParams, OutputParams, Param};
use indexmap::IndexMap;
use serde::Serialize;

/// First record of a run: the resolved parameters and the Wilson chain actually used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Header {
    /// Always "header".
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: &'static str,
    /// Preset name or path the parameters came from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Only the parameters that belong to the model kind.
    pub model: IndexMap<String, serde_json::Value>,
    pub nrg: NrgParams,
    pub output: OutputParams,
    pub derive: Vec<Param>,
    pub chain: ChainInfo,
    /// Index of the last shell (the chain has sites 0..=N_max).
    #[serde(rename = "N_max")]
    pub n_max: usize,
}

impl Header {
    /// T_N = ω_N/β̄ of every shell of the run, N = 0..=N_max.
    pub fn temperatures(&self) -> impl Iterator<Item = f64> + '_ {
        self.chain.omega[..=self.n_max]
            .iter()
            .map(|w| w / self.nrg.beta_bar)
    }
}

/// The Wilson chain in physical units (D = 1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChainInfo {
    /// Impurity–site-0 amplitude actually used (includes A_Λ for Wilson's discretization);
    /// null for the Kondo model, which couples by exchange.
    #[serde(rename = "V0")]
    pub v0: Option<f64>,
    /// Factor applied to every coupling to site 0 (A_Λ for Wilson's scheme, 1 otherwise).
    #[serde(rename = "A_Lambda")]
    pub a_lambda: f64,
    /// Hoppings t_0, t_1, … between sites n and n+1.
    pub hopping: Vec<f64>,
    /// On-site energies ε_0, ε_1, … (zero for the symmetric flat band).
    pub onsite: Vec<f64>,
    /// Shell scales ω_0, ω_1, …: rescaled energies are E/ω_N, T_N = ω_N/β̄.
    pub omega: Vec<f64>,
}

/// One cluster of degenerate levels inside a (Q, S_z) block, or of multiplets inside a (Q, S)
/// block (then `S` is set and `Sz` = S, the highest-weight member).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Level {
    /// (E − E_ground)/ω_N.
    #[serde(rename = "E")]
    pub e: f64,
    /// Charge relative to half filling.
    #[serde(rename = "Q")]
    pub q: i32,
    #[serde(rename = "Sz")]
    pub sz: f64,
    /// Total spin, in (Q, S) runs only.
    #[serde(rename = "S", skip_serializing_if = "Option::is_none")]
    pub s: Option<f64>,
    /// Number of states in the cluster.
    pub deg: usize,
    /// d[(E − E_ground)/ω_N]/dθ for every derived parameter θ: the `deg` first-order shifts
    /// of the cluster (eigenvalues of the perturbation inside the cluster), ascending.
    #[serde(rename = "dE")]
    pub de: IndexMap<String, Vec<f64>>,
}

/// Impurity thermodynamics at T_N. `None` (JSON null) where the model has no such quantity
/// or the run did not compute it.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Observables {
    /// Impurity free energy F − F_chain.
    #[serde(rename = "F_imp")]
    pub f_imp: f64,
    /// Impurity entropy −∂F_imp/∂T.
    #[serde(rename = "S_imp")]
    pub s_imp: f64,
    /// Impurity specific heat −T ∂²F_imp/∂T².
    #[serde(rename = "C_imp")]
    pub c_imp: f64,
    /// T χ_imp for a field on the total spin: −T ∂²F_imp/∂h_tot².
    #[serde(rename = "Tchi_imp")]
    pub tchi_imp: f64,
    /// Local susceptibility −∂²F/∂h_loc² for a field on the impurity spin only.
    pub chi_loc: Option<f64>,
    /// Impurity occupation ∂F/∂ε_d.
    pub n_d: Option<f64>,
    /// Double occupancy ⟨n_d↑ n_d↓⟩ = ∂F/∂U.
    pub docc: Option<f64>,
    /// Charge susceptibility −∂²F/∂ε_d² = −∂⟨n_d⟩/∂ε_d.
    pub chi_c: Option<f64>,
    /// Cross susceptibility −∂²F/∂h∂h_loc (h on the total spin, h_loc on the impurity spin,
    /// both at zero), with χ_loc: the impurity's share of the total spin response. Written
    /// after the other observables (last CSV column), so older readers see the same layout.
    pub chi_cross: Option<f64>,
}

impl Observables {
    /// Name and value of every observable, in output order (CSV columns, UI panels).
    pub fn entries(&self) -> [(&'static str, Option<f64>); 8] {
        [
            ("F_imp", Some(self.f_imp)),
            ("S_imp", Some(self.s_imp)),
            ("C_imp", Some(self.c_imp)),
            ("Tchi_imp", Some(self.tchi_imp)),
            ("chi_loc", self.chi_loc),
            ("n_d", self.n_d),
            ("docc", self.docc),
            ("chi_c", self.chi_c),
        ]
    }
}

/// Everything computed at shell N (chain sites 0..=N).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShellRecord {
    /// Always "shell".
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "N")]
    pub n: usize,
    /// T_N = ω_N / β̄.
    #[serde(rename = "T")]
    pub t: f64,
    /// Shell energy scale ω_N.
    pub omega: f64,
    /// States kept for the next shell.
    pub kept: usize,
    /// States at this shell before truncation.
    pub states: usize,
    /// Gap at the truncation cut in units of ω_N (null when nothing was discarded).
    pub gap_cut: Option<f64>,
    /// Energy of the highest kept state above the ground state, in units of ω_N: the
    /// effective energy cutoff, which bounds the truncation error (≈ e^(−β̄·√Λ·E_cut)).
    #[serde(rename = "E_cut")]
    pub e_cut: f64,
    /// Fraction of the Boltzmann weight at T_{N+1} carried by the states discarded here: what
    /// the next shell's trace misses (null when nothing was discarded).
    pub discarded_weight: Option<f64>,
    pub levels: Vec<Level>,
    pub obs: Observables,
    /// ∂F_imp/∂θ.
    pub grad: IndexMap<String, f64>,
    /// ∂²F_imp/∂θ∂φ, keyed "θ,φ" in `derive` order.
    pub hess: IndexMap<String, f64>,
    /// ∂X/∂θ for each observable X that has an exact first derivative at second order.
    pub obs_grad: IndexMap<String, IndexMap<String, f64>>,
    /// Anything suspicious about this shell (e.g. a small gap at the cut).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Last record: how the run ended and a few whole-run results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Always "done".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "complete" or "cancelled".
    pub status: &'static str,
    /// Number of shells computed.
    pub shells: usize,
    /// Kondo temperature by Wilson's definition T_K χ_imp(T_K) = 0.07, when Tχ_imp falls through
    /// 0.07 from a local-moment regime (null otherwise, with the reason in `T_K_reason`).
    #[serde(rename = "T_K")]
    pub t_k: Option<f64>,
    /// Why `T_K` is null (absent when it is not).
    #[serde(rename = "T_K_reason", skip_serializing_if = "Option::is_none")]
    pub t_k_reason: Option<String>,
    /// Fermi-liquid Wilson ratio R = 8χ_s/(4χ_s + χ_c) from the last shell's local
    /// susceptibilities, when that shell lies well below the crossover (SIAM at zero field).
    pub wilson_ratio: Option<f64>,
    /// Why `wilson_ratio` is null (absent when it is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wilson_ratio_reason: Option<String>,
    /// Smallest gap at the truncation cut over the run, in units of ω_N.
    pub min_gap_cut: Option<f64>,
    pub warnings: Vec<String>,
}
