//! Helpers shared by the physics tests.
#![allow(dead_code)]

pub mod figures;
pub mod sandbox;

use dnrg::params::{
    Discretization, FieldKind, ModelKind, ModelParams, NrgParams, OutputParams, Param, RunConfig,
};
use dnrg::record::ShellRecord;
use dnrg::solver::Run;

/// A SIAM run configuration.
pub fn siam(u: f64, eps_d: f64, gamma: f64, lambda: f64, keep: usize, t_min: f64) -> RunConfig {
    RunConfig {
        model: ModelParams {
            kind: ModelKind::Siam,
            u,
            eps_d,
            gamma,
            h: 0.0,
            field: FieldKind::Total,
            ..ModelParams::default()
        },
        // β̄ pinned: the fixed-point tolerances were measured with it
        nrg: NrgParams {
            lambda,
            discretization: Discretization::Wilson,
            keep,
            t_min,
            beta_bar: 0.75,
            ..NrgParams::default()
        },
        output: OutputParams::default(),
        derive: Vec::new(),
    }
}

/// Kondo-model configuration.
pub fn kondo(j: f64, lambda: f64, keep: usize, t_min: f64) -> RunConfig {
    let mut c = siam(0.0, 0.0, 0.0, lambda, keep, t_min);
    c.model.kind = ModelKind::Kondo;
    c.model.j = j;
    c
}

/// All shells of a run.
pub fn run(config: &RunConfig) -> Vec<ShellRecord> {
    Run::new(config).expect("valid parameters").collect()
}

/// All shells with the kept counts frozen to `kept` (for finite differences).
pub fn run_frozen(config: &RunConfig, kept: &[usize]) -> Vec<ShellRecord> {
    let mut r = Run::new(config).expect("valid parameters");
    r.freeze_kept_counts(kept.to_vec());
    r.collect()
}

pub fn with_derive(mut c: RunConfig, d: &[Param]) -> RunConfig {
    c.derive = d.to_vec();
    c
}

/// A plain run: no derivatives at all.
pub fn plain(mut c: RunConfig) -> RunConfig {
    c.derive.clear();
    c.output.impurity_observables = false;
    c
}
