//! Truncation error in the Fermi-liquid regime (T < T_K/100), against the same run with 4× the
//! kept states: the truncated bare-chain subtraction must cancel part of it.

mod common;

use dnrg::params::{BareChain, RunConfig, SymmetryChoice, ThermoStates};
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
    // 1200 kept states (complete-basis thermodynamics, the default): truncated subtraction
    // ΔS = 5.8e-5, ΔTχ = 2.6e-6; exact subtraction 1.4e-4 and 5.4e-6. The rest comes from a
    // parity mismatch: at strong coupling the impurity run's spectrum is the bare chain's of the
    // *other* parity, truncated at another energy.
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
        truncated.0 < 1.8e-4 && truncated.1 < 7.7e-6,
        "{truncated:?}"
    );
    // the cancellation is real: measured factors 2.4 (S) and 2.1 (Tχ)
    assert!(
        exact.0 > 1.5 * truncated.0 && exact.1 > 1.5 * truncated.1,
        "{exact:?} vs {truncated:?}"
    );
}

#[test]
fn complete_basis_reduces_the_truncation_error() {
    // The same comparison with Wilson's partition function over the states of shell N only:
    // measured ΔS = 1.1e-4, ΔTχ = 4.4e-6, against 5.8e-5 and 2.6e-6 with the complete basis (the
    // discarded states of earlier shells put back with their environment degeneracy).
    let shell_only = |keep| {
        let mut c = symmetric(keep, BareChain::Truncated);
        c.nrg.thermo_states = ThermoStates::Shell;
        c
    };
    let mut run = dnrg::solver::Run::new(&shell_only(1200)).unwrap();
    let reference: Vec<ShellRecord> = run.by_ref().collect();
    let t_k = run.summary(false).t_k.expect("a Kondo crossover");
    let shell = deviation(&common::run(&shell_only(300)), &reference, t_k / 100.0);
    let complete_reference = common::run(&symmetric(1200, BareChain::Truncated));
    let complete = deviation(
        &common::run(&symmetric(300, BareChain::Truncated)),
        &complete_reference,
        t_k / 100.0,
    );
    println!("Fermi liquid, 300 vs 1200 kept: shell states {shell:?}, complete basis {complete:?}");
    // measured factors 1.9 (S) and 1.7 (Tχ); a wrong weight for the discarded states (a factor
    // of the environment degeneracy off either way) makes the complete basis worse, not better
    assert!(
        shell.0 > 1.3 * complete.0 && shell.1 > 1.3 * complete.1,
        "{shell:?} vs {complete:?}"
    );
}

/// Issue 7's acceptance: Λ = 2, U = 0.1, Γ = 0.01, keep 2000 against 8000 (≥ 500 and 4×), in
/// (Q, S) blocks, whose kept spaces are the (Q, S_z) ones (`keep` counts states, the cut never
/// splits a multiplet) at a fraction of the cost; largest |ΔS_imp| and |ΔTχ_imp| over the shells
/// below `t_max(reference)`.
fn acceptance(eps_d: f64, t_max: impl Fn(&[ShellRecord]) -> f64) -> (f64, f64) {
    let config = |keep| {
        let mut c = common::plain(common::siam(0.1, eps_d, 0.01, 2.0, keep, 1e-7));
        c.nrg.symmetry = SymmetryChoice::Qs;
        // the default β̄ (the helper pins 0.75, where T_N = ω_N/β̄ reaches further up the
        // spectrum: the same kept states then err ≈ 12× more)
        c.nrg.beta_bar = 1.0;
        c
    };
    let reference = common::run(&config(8000));
    let t = t_max(&reference);
    let d = deviation(&common::run(&config(2000)), &reference, t);
    println!("Fermi liquid ε_d = {eps_d}, 2000 vs 8000 kept, T < {t:.2e}: (ΔS, ΔTχ) = {d:?}");
    d
}

#[test]
fn symmetric_fermi_liquid_meets_the_accuracy_target_at_keep_2000() {
    // T_K = 2.1e-4 (Tχ_imp through 0.07 after the local-moment plateau), 9 shells below T_K/100.
    // Measured ΔS = 1.6e-5, ΔTχ = 5.4e-7 (keep 1000 against 4000: 1.5e-4 and 8.9e-6; the error
    // falls ≈ 9× per doubling of the kept states). Bounds: the 5e-5 for S (3.0× the
    // measured value) and 3.1× the measured value for Tχ (the issue asks 1e-5).
    let (s, tchi) = acceptance(-0.05, |_| 2.1e-4 / 100.0);
    assert!(s < 5e-5 && tchi < 1.7e-6, "ΔS = {s:e}, ΔTχ = {tchi:e}");
}

#[test]
fn asymmetric_fermi_liquid_meets_the_accuracy_target_at_keep_2000() {
    // ε_d = −0.02: no local moment; T* = 7.3e-4 where Tχ_imp falls through 0.07, read from the
    // reference run. Measured ΔS = 1.3e-5, ΔTχ = 4.3e-7; bounds as in the symmetric case.
    let t_star = |r: &[ShellRecord]| {
        r.iter()
            .find(|x| x.obs.tchi_imp < 0.07)
            .expect("a crossover")
            .t
    };
    let (s, tchi) = acceptance(-0.02, |r| t_star(r) / 100.0);
    assert!(s < 4e-5 && tchi < 1.3e-6, "ΔS = {s:e}, ΔTχ = {tchi:e}");
}
