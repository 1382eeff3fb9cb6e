//! Truncation error in the Fermi-liquid regime (T < T_K/100), against the same run with 4× the
//! kept states: the truncated bare-chain subtraction must cancel part of it.

mod common;

use dnrg::params::{BareChain, RunConfig};
use dnrg::record::ShellRecord;

fn symmetric(keep: usize, bare: BareChain) -> RunConfig {
    let mut c = common::plain(common::siam(0.1, -0.05, 0.01, 2.5, keep, 1e-9));
    c.nrg.beta_bar = 1.0;
    c.nrg.bare_chain = bare;
    c
}

/// Largest |ΔS_imp| and |ΔTχ_imp| between two runs over the shells below `t_max`.
fn deviation(a: &[ShellRecord], b: &[ShellRecord], t_max: f64) -> (f64, f64) {
    a.iter()
        .zip(b)
        .filter(|(x, _)| x.t < t_max)
        .fold((0.0, 0.0), |(s, c), (x, y)| {
            (
                f64::max(s, (x.obs.s_imp - y.obs.s_imp).abs()),
                f64::max(c, (x.obs.tchi_imp - y.obs.tchi_imp).abs()),
            )
        })
}

#[test]
fn truncated_bare_chain_cancels_part_of_the_truncation_error() {
    // U = 0.1, Γ = 0.01, Λ = 2.5: T_K = 2.1e-4, 18 shells below T_K/100. Measured with 300 vs
    // 1200 kept states: truncated subtraction ΔS = 1.1e-4, ΔTχ = 4.4e-6; exact subtraction
    // 2.7e-4 and 9.2e-6. The rest comes from a parity mismatch: at strong coupling the impurity
    // run's spectrum is the bare chain's of the *other* parity, truncated at another energy.
    let mut run = dnrg::solver::Run::new(&symmetric(1200, BareChain::Truncated)).unwrap();
    let reference: Vec<ShellRecord> = run.by_ref().collect();
    let t_k = run.summary(false).t_k.expect("a Kondo crossover");
    let exact_reference = common::run(&symmetric(1200, BareChain::Exact));
    let truncated = deviation(
        &common::run(&symmetric(300, BareChain::Truncated)),
        &reference,
        t_k / 100.0,
    );
    let exact = deviation(
        &common::run(&symmetric(300, BareChain::Exact)),
        &exact_reference,
        t_k / 100.0,
    );
    println!("Fermi liquid, 300 vs 1200 kept: truncated {truncated:?}, exact {exact:?}");
    // 3× the measured worst case
    assert!(
        truncated.0 < 3.3e-4 && truncated.1 < 1.4e-5,
        "{truncated:?}"
    );
    // the cancellation is real: measured factors 2.5 (S) and 2.1 (Tχ)
    assert!(
        exact.0 > 1.5 * truncated.0 && exact.1 > 1.5 * truncated.1,
        "{exact:?} vs {truncated:?}"
    );
}
