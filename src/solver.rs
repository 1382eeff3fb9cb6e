//! The iteration driver: one call, one shell.
//!
//! Shell N: diagonalize H_N block by block → shift energies so the ground state is at zero
//! (accumulating the shift, with its derivative parts, in physical units) → thermodynamics at
//! T_N from all states → lowest levels → cut at a gap, decouple kept from discarded states,
//! transform f†_N → add site N+1. The caller gets each shell's record as soon as it is
//! computed and cancels by simply not asking for the next one.

use crate::chain::WilsonChain;
use crate::free_chain;
use crate::jet::Directions;
use crate::levels::{self, DEGENERACY_TOL, Sensitivity};
use crate::model::{self, ImpurityModel, SiteZero, Variable};
use crate::parallel::map_largest_first_until;
use crate::params::{FieldKind, InvalidParam, ModelKind, Param, RunConfig};
use crate::record::{ChainInfo, Header, Observables, ShellRecord, Summary};
use crate::shell::{self, KeptShell, ProductShell, SiteAddition};
use crate::step::{self, EigenBlock};
use crate::thermo::{self, Jet, JetParts, ShiftJet, Ts, TsParts};
use crate::truncation;
use indexmap::IndexMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Wall time spent in each stage of the shells computed so far: where a run's time goes
/// (the benchmark prints it; records never contain times, so that output is deterministic).
#[derive(Debug, Clone, Default)]
pub struct StageTimes {
    /// Eigendecompositions of the real parts and rotation of the first-order parts.
    pub diagonalize: Duration,
    /// Rotation of the second-order parts (kept rows) and their traces.
    pub pairs: Duration,
    /// Traces over all states and the free energy (including the bare chain).
    pub thermodynamics: Duration,
    /// Kept–discarded decoupling.
    pub decouple: Duration,
    /// Transformation of f† into the kept bases.
    pub operators: Duration,
    /// Assembly of the next shell's Hamiltonian.
    pub add_site: Duration,
    /// Everything in `next_shell`.
    pub total: Duration,
}

/// Where the derivative with respect to a user parameter comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// A matrix direction (index into [`Directions`]).
    Matrix(usize),
    /// The field on the total spin: an explicit scalar variable of the traces.
    TotalField,
}

/// Matrix directions of the impurity observables, when computed.
#[derive(Debug, Clone, Copy, Default)]
struct ObservableDirs {
    eps_d: Option<usize>,
    u: Option<usize>,
    h_imp: Option<usize>,
}

/// One NRG run, advanced shell by shell.
pub struct Run {
    config: RunConfig,
    header: Header,
    model: Box<dyn ImpurityModel>,
    chain: WilsonChain,
    dirs: Directions,
    sources: Vec<(Param, Source)>,
    obs_dirs: ObservableDirs,
    h_total: f64,
    next: usize,
    pending: Option<ProductShell>,
    shift: ShiftJet,
    /// (T, Tχ_imp) of every shell so far, for the Kondo temperature.
    tchi_history: Vec<(f64, f64)>,
    last_obs: Option<Observables>,
    min_gap: Option<f64>,
    warnings: Vec<String>,
    /// Kept counts imposed per shell instead of the cut rule (finite-difference checks).
    frozen_kept: Option<Vec<usize>>,
    times: StageTimes,
    /// Set by another thread to abandon the run, also in the middle of a shell.
    cancel: Option<Arc<AtomicBool>>,
    /// Levels of the bare chain (sites 0..=N) for the impurity subtraction.
    bare: free_chain::GrowingChain,
}

impl Run {
    /// Validate the parameters and prepare the chain and the impurity model.
    pub fn new(config: &RunConfig) -> Result<Run, InvalidParam> {
        config.validate()?;
        let model = model::build(&config.model);
        let plan = plan_directions(config, model.as_ref());
        Ok(Run::assemble(config.clone(), model, plan))
    }

    /// A run that carries exactly the derivative parts `dirs` and reports none of them
    /// (benchmarks compare the cost of derivative layouts with this).
    #[doc(hidden)]
    pub fn with_directions(config: &RunConfig, dirs: Directions) -> Result<Run, InvalidParam> {
        config.validate()?;
        let model = model::build(&config.model);
        let plan = Plan {
            dirs,
            sources: Vec::new(),
            obs_dirs: ObservableDirs::default(),
        };
        Ok(Run::assemble(config.clone(), model, plan))
    }

    fn assemble(config: RunConfig, model: Box<dyn ImpurityModel>, plan: Plan) -> Run {
        let Plan {
            dirs,
            sources,
            obs_dirs,
        } = plan;
        let n_max = crate::chain::last_shell(&config.nrg);
        let chain = WilsonChain::new(&config.nrg, n_max + 1);
        let h_total = match config.model.field {
            FieldKind::Total => config.model.h,
            FieldKind::Impurity => 0.0,
        };
        let var_index: Vec<usize> = dirs
            .vars()
            .iter()
            .map(|&v| {
                model::variable_index(model.as_ref(), v).expect("direction is a model variable")
            })
            .collect();

        let site0 = SiteZero {
            coupling_factor: chain.coupling_factor,
            h_total,
        };
        let pending = shell::initial_shell(
            model.as_ref(),
            &dirs,
            &var_index,
            site0,
            chain.onsite[0],
            chain.omega[0],
        );
        let header = Header {
            kind: "header",
            version: env!("CARGO_PKG_VERSION"),
            preset: None,
            description: None,
            model: model_fields(&config),
            nrg: config.nrg.clone(),
            output: config.output.clone(),
            derive: sources.iter().map(|&(p, _)| p).collect(),
            chain: ChainInfo {
                v0: model.v0(site0),
                a_lambda: chain.coupling_factor,
                hopping: chain.hopping.clone(),
                onsite: chain.onsite.clone(),
                omega: chain.omega.clone(),
            },
            n_max,
        };
        Run {
            shift: ShiftJet::zero(&dirs),
            config,
            header,
            model,
            chain,
            dirs,
            sources,
            obs_dirs,
            h_total,
            next: 0,
            pending: Some(pending),
            tchi_history: Vec::new(),
            last_obs: None,
            min_gap: None,
            warnings: Vec::new(),
            frozen_kept: None,
            times: StageTimes::default(),
            cancel: None,
            bare: free_chain::GrowingChain::new(),
        }
    }

    /// Abandon the run as soon as `flag` is set: the shell in progress stops at its next
    /// stage (eigendecompositions, traces, decoupling, …) and `next_shell` returns `None` from
    /// then on. Without a flag, a run can only be stopped between shells.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Run {
        self.cancel = Some(flag);
        self
    }

    /// Whether the run was cancelled through its flag.
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `None` (and the run ended) if cancelled.
    fn check_cancel(&mut self) -> Option<()> {
        if self.is_cancelled() {
            self.pending = None;
            None
        } else {
            Some(())
        }
    }

    /// Where the time of the shells computed so far went.
    pub fn stage_times(&self) -> &StageTimes {
        &self.times
    }

    /// Resolved parameters and the Wilson chain (preset/description left for the caller).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Index of the last shell.
    pub fn n_max(&self) -> usize {
        self.header.n_max
    }

    /// Real parts of the blocks the next shell will diagonalize: benchmarks time the
    /// eigensolver alone on exactly these matrices.
    #[doc(hidden)]
    pub fn pending_blocks(&self) -> Vec<faer::Mat<f64>> {
        self.pending
            .as_ref()
            .map(|p| p.blocks.iter().map(|b| b.h.clone()).collect())
            .unwrap_or_default()
    }

    /// Compute the next shell, or `None` when the run is complete.
    pub fn next_shell(&mut self) -> Option<ShellRecord> {
        self.check_cancel()?;
        let product = self.pending.take()?;
        let n = self.next;
        let omega = self.chain.omega[n];
        let t = omega / self.config.nrg.beta_bar;
        let last = n == self.header.n_max;
        let started = Instant::now();

        let dirs = &self.dirs;
        let cancel = self.cancel.clone();
        let cancel = cancel.as_deref();
        let mut eig: Vec<EigenBlock> = map_largest_first_until(
            &product.blocks,
            |b| b.dim(),
            |b| step::diagonalize(b, dirs),
            cancel,
        )?;
        let ground = self.shift_to_ground(&mut eig, omega);
        let mut clock = Instant::now();
        self.times.diagonalize += clock - started;
        self.check_cancel()?;
        // The cut is decided on the real energies alone; only then are the second-order parts
        // rotated, and only the rows that are kept (at the last shell: the ground cluster,
        // which fixes their shift).
        let cut = (!last).then(|| self.choose_cut(&eig));
        let pair_sums = self.rotate_pairs(&product, &mut eig, cut.as_ref(), &ground, omega, t)?;
        self.times.pairs += lap(&mut clock);
        self.check_cancel()?;

        let dirs = &self.dirs;
        let indices: Vec<usize> = (0..eig.len()).collect();
        let traces = map_largest_first_until(
            &indices,
            |&b| eig[b].dim(),
            |&b| thermo::block_trace(&eig[b], eig[b].qn.sz(), omega, t, dirs, &pair_sums[b]),
            cancel,
        )?;
        let f = thermo::free_energy(&traces, &self.shift, t, dirs);
        let h_total = self.h_total;
        let f_chain = free_chain::free_energy(self.bare_chain_levels(n), t, h_total);
        self.times.thermodynamics += lap(&mut clock);
        self.check_cancel()?;

        let sens: Vec<(String, Sensitivity)> = self
            .sources
            .iter()
            .map(|&(p, s)| {
                let s = match s {
                    Source::Matrix(i) => Sensitivity::Matrix(i),
                    Source::TotalField => Sensitivity::TotalField,
                };
                (p.name().to_string(), s)
            })
            .collect();
        let levels = levels::lowest_levels(&eig, self.config.output.levels, omega, &sens);
        let states = product.states();

        let mut warnings = Vec::new();
        let (kept, gap, e_cut) = match cut {
            Some(cut) => {
                let kept_shell = self.truncate(&product, &eig, &cut, &mut clock)?;
                self.check_cancel()?;
                let step = SiteAddition {
                    scale: omega / self.chain.omega[n + 1],
                    hopping: self.chain.hopping[n] / self.chain.omega[n + 1],
                    onsite: self.chain.onsite[n + 1] / self.chain.omega[n + 1],
                    field: self.h_total / self.chain.omega[n + 1],
                };
                self.pending = Some(shell::add_site(&kept_shell, step, &self.dirs));
                self.times.add_site += lap(&mut clock);
                (cut.total, cut.gap, cut.e_max)
            }
            None => {
                let highest = eig
                    .iter()
                    .filter_map(|eb| eb.energies.last().copied())
                    .fold(0.0, f64::max);
                (states, None, highest)
            }
        };
        if let Some(g) = gap {
            self.min_gap = Some(self.min_gap.map_or(g, |m: f64| m.min(g)));
            // the cut rule avoids such gaps when it can; report the shells where it could not
            if g < truncation::WANTED_GAP {
                let w = format!(
                    "N = {n}: small gap at the truncation cut, Δ = {g:.3e} ω_N (derivatives scale like 1/Δ)"
                );
                warnings.push(w.clone());
                self.warnings.push(w);
            }
        }

        let (obs, grad, hess, obs_grad) = self.read_out(&f, &f_chain, t);
        self.tchi_history.push((t, obs.tchi_imp));
        self.last_obs = Some(obs.clone());
        self.next += 1;
        self.times.total += started.elapsed();
        Some(ShellRecord {
            kind: "shell",
            n,
            t,
            omega,
            kept,
            states,
            gap_cut: gap,
            e_cut,
            levels,
            obs,
            grad,
            hess,
            obs_grad,
            warnings,
        })
    }

    /// Subtract the ground energy and the mean first-order parts of the ground cluster, so
    /// that derivative parts stay of order one; accumulate the shift in physical units.
    /// Returns the number of ground-cluster states in every block.
    fn shift_to_ground(&mut self, eig: &mut [EigenBlock], omega: f64) -> Vec<usize> {
        let e0 = eig
            .iter()
            .filter_map(|eb| eb.energies.first().copied())
            .fold(f64::INFINITY, f64::min);
        let ground: Vec<usize> = eig
            .iter()
            .map(|eb| {
                eb.energies
                    .iter()
                    .take_while(|&&e| e - e0 <= DEGENERACY_TOL)
                    .count()
            })
            .collect();
        let mean = ground_mean(
            &ground,
            eig.iter().map(|eb| eb.b.as_slice()),
            self.dirs.first(),
        );
        for eb in eig.iter_mut() {
            eb.shift(e0, &mean);
        }
        let mut parts = mean;
        parts.resize(self.dirs.parts(), 0.0);
        self.shift.add_scaled(omega, e0, &parts);
        ground
    }

    /// Rotate the second-order parts (the kept rows, or the ground cluster at the last shell),
    /// shift them like the first-order ones, and return per block Σ_k g′(ωE_k) B^ij_kk over
    /// all states for every pair.
    fn rotate_pairs(
        &mut self,
        product: &ProductShell,
        eig: &mut [EigenBlock],
        cut: Option<&truncation::Cut>,
        ground: &[usize],
        omega: f64,
        t: f64,
    ) -> Option<Vec<Vec<f64>>> {
        let pairs = self.dirs.pairs().len();
        if pairs == 0 {
            return Some(vec![Vec::new(); eig.len()]);
        }
        let rows = cut.map_or(ground, |c| c.kept.as_slice());
        let dirs = &self.dirs;
        let indices: Vec<usize> = (0..eig.len()).collect();
        let eig_ref: &[EigenBlock] = eig;
        let rotated = map_largest_first_until(
            &indices,
            |&b| eig_ref[b].dim(),
            |&b| {
                let (eb, block) = (&eig_ref[b], &product.blocks[b]);
                let b_pairs = step::rotate_pairs(eb, block, dirs, rows[b]);
                let w = thermo::pair_weights(eb, omega, t);
                let sums = step::pair_traces(eb, &b_pairs, block, dirs, &w);
                (b_pairs, sums, w.iter().sum::<f64>())
            },
            self.cancel.as_deref(),
        )?;
        // the pair parts' shift: their mean over the ground cluster, like the first-order ones
        let mean = ground_mean(ground, rotated.iter().map(|(b, _, _)| b.as_slice()), pairs);
        let mut parts = vec![0.0; self.dirs.first()];
        parts.extend_from_slice(&mean);
        self.shift.add_scaled(omega, 0.0, &parts);
        let sums = rotated
            .into_iter()
            .zip(eig.iter_mut())
            .map(|((b_pairs, sums, w_total), eb)| {
                eb.b_pairs = b_pairs;
                eb.shift_pairs(&mean);
                // Σ_k w_k (B^ij_kk − s^ij)
                sums.iter()
                    .zip(&mean)
                    .map(|(s, m)| s - m * w_total)
                    .collect()
            })
            .collect();
        Some(sums)
    }

    /// The cut of this shell (or the frozen one).
    fn choose_cut(&self, eig: &[EigenBlock]) -> truncation::Cut {
        let nrg = &self.config.nrg;
        let energies: Vec<&[f64]> = eig.iter().map(|eb| eb.energies.as_slice()).collect();
        match self.frozen_kept.as_ref().and_then(|k| k.get(self.next)) {
            Some(&total) => truncation::cut_at(&energies, total),
            None => truncation::choose_cut(&energies, nrg.keep, nrg.e_cut, nrg.gap_window),
        }
    }

    /// Decouple, transform f†: everything shell N+1 needs.
    fn truncate(
        &mut self,
        product: &ProductShell,
        eig: &[EigenBlock],
        cut: &truncation::Cut,
        clock: &mut Instant,
    ) -> Option<KeptShell> {
        let dirs = &self.dirs;
        let with_kept: Vec<(&EigenBlock, usize)> =
            eig.iter().zip(cut.kept.iter().copied()).collect();
        let cancel = self.cancel.as_deref();
        let decoupled = map_largest_first_until(
            &with_kept,
            |(eb, _)| eb.dim(),
            |&(eb, k)| step::decouple(eb, k, dirs),
            cancel,
        )?;
        self.times.decouple += lap(clock);
        // kept blocks lose the empty ones; remember where each went
        let mut new_index = vec![None; eig.len()];
        let mut next = 0;
        for (b, &k) in cut.kept.iter().enumerate() {
            if k > 0 {
                new_index[b] = Some(next);
                next += 1;
            }
        }
        let live: Vec<_> = product
            .fdag
            .iter()
            .filter_map(|op| Some((op, new_index[op.left]?, new_index[op.right]?)))
            .collect();
        let fdag = map_largest_first_until(
            &live,
            |(op, _, _)| eig[op.left].dim() * eig[op.right].dim(),
            |&(op, l, r)| {
                step::transform_op(
                    op,
                    (&eig[op.left], &decoupled[op.left].1),
                    (&eig[op.right], &decoupled[op.right].1),
                    dirs,
                    l,
                    r,
                )
            },
            cancel,
        )?;
        self.times.operators += lap(clock);
        let blocks = decoupled
            .into_iter()
            .filter(|(kb, _)| !kb.energies.is_empty())
            .map(|(kb, _)| kb)
            .collect();
        Some(KeptShell {
            blocks,
            fdag,
            orbitals: product.orbitals,
        })
    }

    /// Single-particle levels of the bare chain, sites 0..=n (physical units), grown by one
    /// site per shell.
    fn bare_chain_levels(&mut self, n: usize) -> &[f64] {
        while self.bare.levels().len() <= n {
            self.bare.grow(&self.chain.onsite, &self.chain.hopping);
        }
        self.bare.levels()
    }

    /// Observables, gradient, Hessian and observable derivatives from the free energy.
    #[allow(clippy::type_complexity)]
    fn read_out(
        &self,
        f: &Jet,
        f_chain: &Ts,
        t: f64,
    ) -> (
        Observables,
        IndexMap<String, f64>,
        IndexMap<String, f64>,
        IndexMap<String, IndexMap<String, f64>>,
    ) {
        let f_imp: Ts = f.re - *f_chain;
        let o = self.obs_dirs;
        let obs = Observables {
            f_imp: f_imp.re,
            s_imp: -f_imp.first_t(),
            c_imp: -t * f_imp.second_t(),
            tchi_imp: -t * f_imp.second_h(),
            chi_loc: o.h_imp.map(|h| -f.second(h, h)),
            n_d: o.eps_d.map(|e| f.first(e).re),
            docc: o.u.map(|u| f.first(u).re),
            chi_c: o.eps_d.map(|e| -f.second(e, e)),
        };
        let mut grad = IndexMap::new();
        let mut hess = IndexMap::new();
        for (a, &(p, sp)) in self.sources.iter().enumerate() {
            let g = match sp {
                Source::Matrix(i) => f.first(i).re,
                Source::TotalField => f_imp.first_h(),
            };
            grad.insert(p.name().to_string(), g);
            for &(q, sq) in &self.sources[a..] {
                let h = match (sp, sq) {
                    (Source::Matrix(i), Source::Matrix(j)) => f.second(i, j),
                    (Source::Matrix(i), Source::TotalField)
                    | (Source::TotalField, Source::Matrix(i)) => f.first(i).first_h(),
                    (Source::TotalField, Source::TotalField) => f_imp.second_h(),
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
        for &(p, sp) in &self.sources {
            match sp {
                Source::Matrix(i) => {
                    let fi = f.first(i);
                    put("S_imp", p, Some(-fi.first_t()));
                    put("C_imp", p, Some(-t * fi.second_t()));
                    put("Tchi_imp", p, Some(-t * fi.second_h()));
                    put("n_d", p, o.eps_d.map(|e| f.second(e, i)));
                    put("docc", p, o.u.map(|u| f.second(u, i)));
                }
                Source::TotalField => {
                    put("S_imp", p, Some(-f_imp.mixed_th()));
                    put("n_d", p, o.eps_d.map(|e| f.first(e).first_h()));
                    put("docc", p, o.u.map(|u| f.first(u).first_h()));
                }
            }
        }
        (obs, grad, hess, obs_grad)
    }

    /// The final record.
    pub fn summary(&self, cancelled: bool) -> Summary {
        // Wilson's definition: T_K χ_imp(T_K) = 0.07, interpolated in ln T
        let t_k = self.tchi_history.windows(2).find_map(|w| {
            let ((t1, x1), (t2, x2)) = (w[0], w[1]);
            (x1 >= 0.07 && x2 < 0.07).then(|| {
                let s = (x1 - 0.07) / (x1 - x2);
                (t1.ln() + s * (t2.ln() - t1.ln())).exp()
            })
        });
        // the Fermi-liquid relation holds at zero field
        let zero_field = self.config.model.h == 0.0;
        let wilson_ratio = match (&self.last_obs, self.model.kind()) {
            (Some(o), ModelKind::Siam) if zero_field => match (o.chi_loc, o.chi_c) {
                (Some(s), Some(c)) => Some(8.0 * s / (4.0 * s + c)).filter(|r| r.is_finite()),
                _ => None,
            },
            _ => None,
        };
        Summary {
            kind: "done",
            status: if cancelled { "cancelled" } else { "complete" },
            shells: self.next,
            t_k,
            wilson_ratio,
            min_gap_cut: self.min_gap,
            warnings: self.warnings.clone(),
        }
    }

    /// Impose the total kept count of every shell (as recorded by another run) instead of
    /// the cut rule: finite differences must compare runs that truncate identically.
    pub fn freeze_kept_counts(&mut self, kept: Vec<usize>) {
        self.frozen_kept = Some(kept);
    }
}

impl Iterator for Run {
    type Item = ShellRecord;
    fn next(&mut self) -> Option<ShellRecord> {
        self.next_shell()
    }
}

/// Mean diagonal element over the ground cluster (`ground[b]` lowest states of block b) of
/// each of `parts` matrices per block.
fn ground_mean<'a>(
    ground: &[usize],
    blocks: impl Iterator<Item = &'a [faer::Mat<f64>]>,
    parts: usize,
) -> Vec<f64> {
    let mut mean = vec![0.0; parts];
    for (mats, &g) in blocks.zip(ground) {
        for (x, m) in mean.iter_mut().zip(mats) {
            *x += (0..g).map(|k| m[(k, k)]).sum::<f64>();
        }
    }
    let count: usize = ground.iter().sum();
    mean.iter_mut().for_each(|x| *x /= count as f64);
    mean
}

/// Time since `clock`, which is reset to now.
fn lap(clock: &mut Instant) -> Duration {
    let now = Instant::now();
    let d = now - *clock;
    *clock = now;
    d
}

/// Which derivative parts a run carries and what each is for.
struct Plan {
    dirs: Directions,
    sources: Vec<(Param, Source)>,
    obs_dirs: ObservableDirs,
}

/// Directions: the user's parameters first (their full Hessian), then what the impurity
/// observables need (first order in ε_d and U, the pairs (ε_d, θ) and (U, θ) for ∂n_d/∂θ and
/// ∂docc/∂θ, and (ε_d, ε_d), (h_imp, h_imp) for χ_c and χ_loc).
fn plan_directions(config: &RunConfig, model: &dyn ImpurityModel) -> Plan {
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
    let mut sources = Vec::new();
    for &p in &config.derive {
        if sources.iter().any(|&(q, _)| q == p) {
            continue;
        }
        let src = if p == Param::H && config.model.field == FieldKind::Total {
            Source::TotalField
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
        obs_dirs.h_imp = Some(add(Variable::HImp));
    }
    let user: Vec<usize> = sources
        .iter()
        .filter_map(|&(_, s)| match s {
            Source::Matrix(i) => Some(i),
            Source::TotalField => None,
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
    }
}

/// The model parameters that belong to the model kind, for the header.
fn model_fields(config: &RunConfig) -> IndexMap<String, serde_json::Value> {
    let m = &config.model;
    let mut out = IndexMap::new();
    out.insert("kind".to_string(), m.kind.name().into());
    let params: &[(&str, f64)] = match m.kind {
        ModelKind::Siam => &[("U", m.u), ("eps_d", m.eps_d), ("Gamma", m.gamma)],
        ModelKind::Kondo => &[("J", m.j), ("K", m.k)],
    };
    for &(k, v) in params {
        out.insert(k.to_string(), v.into());
    }
    out.insert("h".to_string(), m.h.into());
    out.insert("field".to_string(), m.field.name().into());
    out
}
