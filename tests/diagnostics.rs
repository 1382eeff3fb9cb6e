//! Honest diagnostics: broken runs say so, sane ones stay quiet, and whole-run results appear
//! only where their definitions apply.

mod common;

use dnrg::params::Param;
use dnrg::preset::{self, PresetStore};
use dnrg::record::ShellRecord;
use dnrg::solver::Run;

fn run_with_summary(c: &dnrg::params::RunConfig) -> (Vec<ShellRecord>, dnrg::record::Summary) {
    let mut run = Run::new(c).unwrap();
    let records: Vec<ShellRecord> = run.by_ref().collect();
    (records, run.summary(false))
}

#[test]
fn no_shipped_preset_warns() {
    let dir = tempfile::tempdir().unwrap();
    let store = PresetStore::with_config_dir(dir.path());
    for name in preset::shipped_names() {
        let p = store.load(name, &[]).unwrap();
        let (records, summary) = run_with_summary(&p.config);
        let shell_warnings: Vec<&String> = records.iter().flat_map(|r| &r.warnings).collect();
        assert!(shell_warnings.is_empty(), "{name}: {shell_warnings:?}");
        assert!(
            summary.warnings.is_empty(),
            "{name}: {:?}",
            summary.warnings
        );
    }
}

#[test]
fn unconverged_runs_warn() {
    // The cases: Λ = 1.05 with 100 states gave S_imp = −41, 10 kept states docc = −0.52,
    // all silently. The discarded states carry 0.26 and 0.28 of the next shell's weight there.
    let mut fine_grid = common::siam(0.1, -0.05, 0.005, 1.05, 100, 1e-3);
    fine_grid.nrg.beta_bar = 1.0;
    let mut few = common::with_derive(common::siam(0.1, -0.05, 0.005, 2.5, 10, 1e-8), &[Param::U]);
    few.nrg.beta_bar = 1.0;
    for (what, c) in [("Λ = 1.05", fine_grid), ("10 states", few)] {
        let (records, summary) = run_with_summary(&c);
        let truncation = records
            .iter()
            .flat_map(|r| &r.warnings)
            .filter(|w| w.contains("truncation too aggressive"))
            .count();
        assert!(truncation > 0, "{what}: no truncation warning");
        assert!(
            summary.warnings.iter().any(|w| w.contains("not converged")),
            "{what}: {:?}",
            summary.warnings
        );
        assert!(
            summary.t_k.is_none() && summary.wilson_ratio.is_none(),
            "{what}"
        );
    }
}

#[test]
fn kondo_temperature_needs_a_local_moment_and_the_wilson_ratio_a_fermi_liquid() {
    // Mixed valence: Tχ_imp falls through 0.07 without any local-moment regime: no T_K.
    let mv = common::siam(0.1, -0.01, 0.01, 2.5, 300, 1e-8);
    let (_, summary) = run_with_summary(&mv);
    assert!(summary.t_k.is_none());
    assert!(summary.t_k_reason.unwrap().contains("local-moment"));
    // …but a Fermi liquid: the Wilson ratio is reported (between 1 and 2)
    let r = summary
        .wilson_ratio
        .expect("T_min is far below the crossover");
    assert!(r > 1.0 && r < 2.0, "R = {r}");
    // A run that stops at T = 0.1 ≫ T_K has neither (it used to report R = 1.02).
    let high = common::siam(0.1, -0.05, 0.005, 2.5, 200, 0.1);
    let (_, summary) = run_with_summary(&high);
    assert!(summary.t_k.is_none() && summary.wilson_ratio.is_none());
    assert!(summary.wilson_ratio_reason.is_some());
}

#[test]
fn tiny_hybridization_gives_finite_correct_values() {
    // Γ from 1e-210 down to the smallest double: χ_loc, χ_c, n_d, docc were null (0·∞ in the
    // second derivative of √Γ leaked into every direction). At Γ → 0 the impurity is a free
    // moment: n_d = 1 at the symmetric point, docc and χ_c vanish like Γ, and Tχ_loc → 1/4.
    for gamma in [1e-210, 1e-300, 5e-324] {
        let mut c = common::siam(0.1, -0.05, gamma, 3.0, 150, 1e-6);
        c.nrg.beta_bar = 1.0;
        let r = common::run(&c);
        let last = r.last().unwrap();
        let o = &last.obs;
        assert_eq!(o.n_d, Some(1.0), "Γ = {gamma}");
        // docc ~ Γ/U: 1e-30 at Γ = 1e-210 already, exactly tiny
        assert!(o.docc.unwrap().abs() < 1e-20 && o.chi_c.unwrap().abs() < 1e-20);
        // local Curie law of a free spin: T χ_loc = 1/4 (e^(−U/2T) corrections only)
        assert!(
            (last.t * o.chi_loc.unwrap() - 0.25).abs() < 1e-9,
            "Γ = {gamma}"
        );
    }
}

#[test]
fn gamma_derivatives_are_refused_below_their_accuracy_bound() {
    let c = common::with_derive(
        common::siam(0.1, -0.05, 1e-9, 3.0, 100, 1e-4),
        &[Param::Gamma],
    );
    let e = Run::new(&c).err().expect("refused");
    assert_eq!(e.key, "model.Gamma");
    assert!(e.reason.contains("1e-8"), "{}", e.reason);
    // and at the bound the derivatives are those of the smooth Γ → 0 limit: ∂F/∂Γ at Γ = 1e-8
    // and 1e-6 differ by O(Γ) (measured 3e-6 relative, Λ = 3, 150 kept)
    let at = |g: f64| {
        let c = common::with_derive(common::siam(0.1, -0.03, g, 3.0, 150, 1e-6), &[Param::Gamma]);
        common::run(&c).last().unwrap().grad["Gamma"]
    };
    let (small, smaller) = (at(1e-6), at(1e-8));
    assert!(
        (small - smaller).abs() < 3e-5 * small.abs(),
        "{small} vs {smaller}"
    );
}

#[test]
fn impurity_field_derivatives_are_flagged_below_their_precision_floor() {
    // χ_loc loses precision below T ≈ 1e-40 (README, known limits): those shells say so, and the
    // Wilson ratio comes from the lowest shell above the floor (here still deep in the Fermi
    // liquid: R = 2 within the charge-fluctuation correction of the symmetric model)
    let mut c = common::siam(0.1, -0.05, 0.01, 4.0, 100, 1e-50);
    c.nrg.beta_bar = 1.0;
    let (records, summary) = run_with_summary(&c);
    let flagged = |r: &ShellRecord| r.warnings.iter().any(|w| w.contains("lose precision"));
    for r in &records {
        assert_eq!(
            flagged(r),
            r.t < dnrg::diagnostics::IMPURITY_FIELD_FLOOR,
            "N = {}",
            r.n
        );
    }
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("lose precision"))
    );
    let r = summary
        .wilson_ratio
        .expect("a shell above the floor and below T_K/100");
    assert!((r - 2.0).abs() < 0.2, "R = {r}");
}
