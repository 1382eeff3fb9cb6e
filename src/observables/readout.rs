//! Impurity observables from the free energy of one shell.
//!
//! Inputs: the shell's F = E_shift + ω_N·G(τ, η) with derivative parts in the matrix directions
//! (`thermo::ShellFreeEnergy`), and the bare chain's F at the same shell and temperature
//! ([`BareShell`]). Everything impurity-specific lives here: which derivative parts a run
//! carries ([`plan_directions`]) and how each observable is read off them ([`read_out`]).
//!
//! Units: τ = T/ω_N and η = δh_tot/ω_N are the thermal variables of G, so with
//! F(T, h) = shift + ω·G(T/ω, h/ω):
//!   S = −∂F/∂T = −G_τ,  C = −T ∂²F/∂T² = −τ G_ττ,  Tχ = −T ∂²F/∂h² = −τ G_ηη,
//!   ∂F/∂θ = shift_θ + ω G_θ (physical), ∂²F/∂θ∂h = G_θη, ∂²F/∂h² = G_ηη/ω.

use crate::jet::Directions;
use crate::model::{ImpurityModel, Variable};
use crate::params::{FieldKind, Param, RunConfig};
use crate::record::Observables;
use crate::symmetry::Symmetry;
use crate::thermo::{JetParts, ShellFreeEnergy, Ts, TsParts};
use indexmap::IndexMap;

/// The bare chain's free energy at one shell: F_bare = shift + ω_N·g(τ, η).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BareShell {
    /// Accumulated ground-energy shift, physical units.
    pub shift: f64,
    /// −τ ln Z of the shell (rescaled), with its (τ, η) derivatives.
    pub g: Ts,
}

/// Where the derivative with respect to a user parameter comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A matrix direction (index into [`Directions`]).
    Matrix(usize),
    /// The field on the total spin: an explicit scalar variable of the traces.
    TotalField,
    /// The field on the impurity spin in (Q, S) blocks: the vector sector ([`crate::vector`]).
    /// At h_loc = 0 every odd derivative vanishes and ∂²F/∂h_loc² = −χ_loc.
    ImpurityField,
}

/// Matrix directions of the impurity observables, when computed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObservableDirs {
    pub eps_d: Option<usize>,
    pub u: Option<usize>,
    pub h_imp: Option<usize>,
}

/// Which derivative parts a run carries and what each is for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dirs: Directions,
    pub sources: Vec<(Param, Source)>,
    pub obs_dirs: ObservableDirs,
    /// The run carries the vector sector ((Q, S) blocks, χ_loc asked for).
    pub vector: bool,
    /// χ_loc is reported among the observables.
    pub vector_obs: bool,
}

impl Plan {
    /// Derivative parts `dirs` carried for their cost only, nothing reported.
    pub fn bare_directions(dirs: Directions) -> Plan {
        Plan {
            dirs,
            sources: Vec::new(),
            obs_dirs: ObservableDirs::default(),
            vector: false,
            vector_obs: false,
        }
    }
}

/// Directions: the user's parameters first (their full Hessian), then what the impurity
/// observables need (first order in ε_d and U, the pairs (ε_d, θ) and (U, θ) for ∂n_d/∂θ and
/// ∂docc/∂θ, and (ε_d, ε_d), (h_imp, h_imp) for χ_c and χ_loc). In (Q, S) blocks a field on the
/// impurity spin is no scalar direction: χ_loc comes from the vector sector instead.
pub fn plan_directions(config: &RunConfig, model: &dyn ImpurityModel) -> Plan {
    let variable_of = |p: Param| match p {
        Param::EpsD => Variable::EpsD,
        Param::U => Variable::U,
        Param::Gamma => Variable::Gamma,
        Param::J => Variable::J,
        Param::K => Variable::K,
        Param::H => Variable::HImp,
    };
    let mut vars: Vec<Variable> = Vec::new();
    let mut add = |v: Variable| match vars.iter().position(|&w| w == v) {
        Some(i) => i,
        None => {
            vars.push(v);
            vars.len() - 1
        }
    };
    let qs = config.symmetry() == Symmetry::QS;
    let mut sources = Vec::new();
    for &p in &config.derive {
        if sources.iter().any(|&(q, _)| q == p) {
            continue;
        }
        let src = if p == Param::H && config.model.field == FieldKind::Total {
            Source::TotalField
        } else if p == Param::H && qs {
            Source::ImpurityField
        } else {
            Source::Matrix(add(variable_of(p)))
        };
        sources.push((p, src));
    }
    let has = |v: Variable| model.variables().iter().any(|&(w, _)| w == v);
    let mut obs_dirs = ObservableDirs::default();
    if config.output.impurity_observables {
        obs_dirs.eps_d = has(Variable::EpsD).then(|| add(Variable::EpsD));
        obs_dirs.u = has(Variable::U).then(|| add(Variable::U));
        obs_dirs.h_imp = (!qs).then(|| add(Variable::HImp));
    }
    let vector_obs = qs && config.output.impurity_observables;
    let vector = vector_obs || sources.iter().any(|&(_, s)| s == Source::ImpurityField);
    let user: Vec<usize> = sources
        .iter()
        .filter_map(|&(_, s)| match s {
            Source::Matrix(i) => Some(i),
            Source::TotalField | Source::ImpurityField => None,
        })
        .collect();
    let mut pairs = Vec::new();
    for (a, &i) in user.iter().enumerate() {
        for &j in &user[a..] {
            pairs.push((i, j));
        }
        for o in [obs_dirs.eps_d, obs_dirs.u].into_iter().flatten() {
            pairs.push((o, i));
        }
    }
    if let Some(e) = obs_dirs.eps_d {
        pairs.push((e, e));
    }
    if let Some(h) = obs_dirs.h_imp {
        pairs.push((h, h));
    }
    Plan {
        dirs: Directions::new(vars, pairs),
        sources,
        obs_dirs,
        vector,
        vector_obs,
    }
}

/// Observables, gradient, Hessian and observable derivatives of one shell.
#[derive(Debug, Clone)]
pub struct ReadOut {
    pub obs: Observables,
    /// ∂F_imp/∂θ per derived parameter.
    pub grad: IndexMap<String, f64>,
    /// ∂²F_imp/∂θ∂φ keyed "θ,φ".
    pub hess: IndexMap<String, f64>,
    /// ∂X/∂θ for every observable X with an exact first derivative at second order.
    pub obs_grad: IndexMap<String, IndexMap<String, f64>>,
}

/// Read the impurity observables off the shell's free energy `f` minus the bare chain's;
/// `vector` is the vector sector's (χ_loc, χ_cross) of a (Q, S) run (the bare chain has none).
pub fn read_out(
    f: &ShellFreeEnergy,
    bare: &BareShell,
    plan: &Plan,
    vector: Option<(f64, f64)>,
) -> ReadOut {
    let chi_loc = vector.map(|v| v.0);
    let (omega, tau, g) = (f.omega, f.tau, &f.g);
    let dirs = &plan.dirs;
    // physical ∂F/∂θ_i and ∂²F/∂θ_i∂θ_j (the bare chain depends on no matrix direction)
    let d1 = |i: usize| f.shift.parts[i] + omega * g.first(i).re;
    let d2 = |i: usize, j: usize| {
        dirs.pair_part(i, j).map_or(0.0, |p| f.shift.parts[p]) + omega * g.second(i, j)
    };
    let g_imp: Ts = g.re - bare.g;
    let o = plan.obs_dirs;
    let obs = Observables {
        f_imp: (f.shift.value - bare.shift) + omega * g_imp.re,
        s_imp: -g_imp.first_t(),
        c_imp: -tau * g_imp.second_t(),
        tchi_imp: -tau * g_imp.second_h(),
        chi_loc: o
            .h_imp
            .map(|h| -d2(h, h))
            .or(chi_loc.filter(|_| plan.vector_obs)),
        n_d: o.eps_d.map(d1),
        docc: o.u.map(d1),
        chi_c: o.eps_d.map(|e| -d2(e, e)),
        // (Q, S_z): −∂²F/∂h_loc∂h = −G_{h_loc,η} (the bare chain feels no h_loc)
        chi_cross: o
            .h_imp
            .map(|h| -g.first(h).first_h())
            .or(vector.filter(|_| plan.vector_obs).map(|v| v.1)),
    };
    let mut grad = IndexMap::new();
    let mut hess = IndexMap::new();
    for (a, &(p, sp)) in plan.sources.iter().enumerate() {
        let value = match sp {
            Source::Matrix(i) => d1(i),
            Source::TotalField => g_imp.first_h(),
            // odd in h⃗_loc
            Source::ImpurityField => 0.0,
        };
        grad.insert(p.name().to_string(), value);
        for &(q, sq) in &plan.sources[a..] {
            let h = match (sp, sq) {
                (Source::Matrix(i), Source::Matrix(j)) => d2(i, j),
                (Source::Matrix(i), Source::TotalField)
                | (Source::TotalField, Source::Matrix(i)) => g.first(i).first_h(),
                (Source::TotalField, Source::TotalField) => g_imp.second_h() / omega,
                (Source::ImpurityField, Source::ImpurityField) => {
                    -chi_loc.expect("the vector sector runs when h_loc is derived")
                }
                // odd in h⃗_loc (and a run has one field kind)
                (Source::ImpurityField, _) | (_, Source::ImpurityField) => 0.0,
            };
            hess.insert(format!("{},{}", p.name(), q.name()), h);
        }
    }
    // first derivatives of the observables that are exact at second order
    let mut obs_grad: IndexMap<String, IndexMap<String, f64>> = IndexMap::new();
    let mut put = |obs: &str, p: Param, v: Option<f64>| {
        if let Some(v) = v {
            obs_grad
                .entry(obs.to_string())
                .or_default()
                .insert(p.name().to_string(), v);
        }
    };
    for &(p, sp) in &plan.sources {
        match sp {
            Source::Matrix(i) => {
                let gi = g.first(i);
                put("S_imp", p, Some(-gi.first_t()));
                put("C_imp", p, Some(-tau * gi.second_t()));
                put("Tchi_imp", p, Some(-tau * gi.second_h()));
                put("n_d", p, o.eps_d.map(|e| d2(e, i)));
                put("docc", p, o.u.map(|u| d2(u, i)));
            }
            Source::TotalField => {
                put("S_imp", p, Some(-g_imp.mixed_th() / omega));
                put("n_d", p, o.eps_d.map(|e| g.first(e).first_h()));
                put("docc", p, o.u.map(|u| g.first(u).first_h()));
            }
            Source::ImpurityField => {
                // every first derivative in h_loc is odd in h⃗_loc: exactly zero at h_loc = 0
                for name in ["S_imp", "C_imp", "Tchi_imp"] {
                    put(name, p, Some(0.0));
                }
                put("n_d", p, o.eps_d.map(|_| 0.0));
                put("docc", p, o.u.map(|_| 0.0));
            }
        }
    }
    ReadOut {
        obs,
        grad,
        hess,
        obs_grad,
    }
}
