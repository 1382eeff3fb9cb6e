//! Known fixed points and exact identities of the Anderson and Kondo models.

mod common;

use dnrg::params::Param;
use dnrg::record::ShellRecord;
use dnrg::solver::Run;
use std::f64::consts::LN_2;

const LN_4: f64 = 2.0 * LN_2;

/// The symmetric Anderson model in the Kondo regime of the issue: U = 0.1, Γ = 0.005, Λ = 2.5
/// (T_K ≈ 3e-6), down to T = 1e-9, with derivatives in ε_d, U and the total field. β̄ = 1 and
/// 400 kept states, the default preset's: at β̄ = 0.75 with 300 states the discarded states carry
/// ~1% of the next shell's Boltzmann weight and the run rightly warns.
fn kondo_regime() -> (Vec<ShellRecord>, dnrg::record::Summary) {
    let mut c = common::with_derive(
        common::siam(0.1, -0.05, 0.005, 2.5, 400, 1e-9),
        &[Param::EpsD, Param::U, Param::H],
    );
    c.nrg.beta_bar = 1.0;
    let mut run = Run::new(&c).unwrap();
    let records: Vec<ShellRecord> = run.by_ref().collect();
    (records, run.summary(false))
}

#[test]
fn symmetric_anderson_model_crosses_three_fixed_points() {
    let (r, summary) = kondo_regime();
    let first = &r[0];
    let last = r.last().unwrap();
    // free orbital at T ≈ 1.5 ≫ U: corrections of order U/T and Γ/T ≈ 0.07 to the *energies*
    // enter S and Tχ only quadratically
    assert!(
        (first.obs.s_imp - LN_4).abs() < 0.01,
        "S_imp = {}",
        first.obs.s_imp
    );
    // (measured: S 1.6e-3 below ln 4, Tχ 2.6e-3 above 1/8)
    assert!(
        (first.obs.tchi_imp - 0.125).abs() < 0.008,
        "Tχ = {}",
        first.obs.tchi_imp
    );
    // local moment, T_K ≪ T ≪ U: the plateau approaches ln 2 and 1/4 only logarithmically
    // (corrections ~ 1/ln(T/T_K) ≈ 0.1 at ρJ = 8Γ/πU = 0.13), so the closest shell is within 0.05
    let moment = r
        .iter()
        .min_by(|a, b| {
            (a.obs.s_imp - LN_2)
                .abs()
                .total_cmp(&(b.obs.s_imp - LN_2).abs())
        })
        .unwrap();
    assert!(
        moment.t < 1e-2 && moment.t > 1e-4,
        "plateau at T = {}",
        moment.t
    );
    assert!((moment.obs.s_imp - LN_2).abs() < 0.05);
    let chi_max = r.iter().map(|s| s.obs.tchi_imp).fold(0.0, f64::max);
    // log corrections lower the plateau by 0.035 (measured max 0.2145); 3× that still excludes
    // the free orbital's 1/8
    assert!((chi_max - 0.25).abs() < 0.11, "max Tχ = {chi_max}");
    // strong coupling: both vanish up to the even/odd discretization ripple (~5e-3 at Λ = 2.5)
    for s in &r[r.len() - 4..] {
        assert!(s.obs.s_imp.abs() < 0.01, "N = {}: S = {}", s.n, s.obs.s_imp);
        assert!(
            s.obs.tchi_imp.abs() < 0.002,
            "N = {}: Tχ = {}",
            s.n,
            s.obs.tchi_imp
        );
    }
    assert!(last.t < 1e-8);
    // Kondo scale: the Haldane estimate sqrt(UΓ/2) exp(−πU/8Γ + πΓ/2U) = 6.7e-6; Wilson's
    // definition differs by an O(1) factor
    let t_k = summary.t_k.expect("Tχ crosses 0.07");
    assert!(t_k > 1e-6 && t_k < 1e-5, "T_K = {t_k}");
}

#[test]
fn particle_hole_symmetry_and_odd_field_derivatives() {
    let (r, _) = kondo_regime();
    for s in &r {
        // ⟨n_d⟩ = 1 exactly at ε_d = −U/2; round-off of sums over ~1000 states
        let n_d = s.obs.n_d.unwrap();
        assert!(
            (n_d - 1.0).abs() < 1e-10,
            "N = {}: n_d − 1 = {:e}",
            s.n,
            n_d - 1.0
        );
        // odd derivatives in the field vanish at h = 0: exactly, since ±S_z spectra are mirror
        // images bit for bit
        assert_eq!(s.grad["h"], 0.0, "N = {}", s.n);
        assert_eq!(s.hess["eps_d,h"], 0.0);
        assert_eq!(s.hess["U,h"], 0.0);
        assert_eq!(s.obs_grad["S_imp"]["h"], 0.0);
        assert_eq!(s.obs_grad["n_d"]["h"], 0.0);
        // the members ±S_z of a multiplet respond oppositely to the field (the listing never
        // cuts a multiplet, so every mirror is there); (Q, S) runs list each multiplet once,
        // by its S_z = S member, whose slope is −S in the shell's energy unit: one ratio for
        // all (round-off of the unit's products: 1e-15; 1e-12 is far below any real mismatch)
        let unit = s
            .levels
            .iter()
            .find(|l| l.s.is_some() && l.sz > 0.0)
            .map(|l| l.de["h"][0] / -l.sz);
        for l in s.levels.iter().filter(|l| l.s.is_some()) {
            let slope = unit.unwrap_or(0.0) * -l.sz;
            assert!(
                (l.de["h"][0] - slope).abs() <= 1e-12 * slope.abs(),
                "N = {}: slope of (Q, S) = ({}, {}): {} vs {slope}",
                s.n,
                l.q,
                l.sz,
                l.de["h"][0]
            );
        }
        for l in s.levels.iter().filter(|l| l.sz != 0.0 && l.s.is_none()) {
            let m = s
                .levels
                .iter()
                .find(|m| m.q == l.q && m.sz == -l.sz && (m.e - l.e).abs() <= 1e-8)
                .unwrap_or_else(|| {
                    panic!("N = {}: no mirror of (Q, S_z) = ({}, {})", s.n, l.q, l.sz)
                });
            assert_eq!(l.e, m.e, "N = {}: ±S_z energies differ", s.n);
            assert_eq!(l.de["h"][0], -m.de["h"][0]);
        }
    }
}

#[test]
fn wilson_ratio_is_two_in_the_kondo_regime() {
    // R = 8χ_s/(4χ_s + χ_c) from the last shell (T ≈ 1e-9 ≪ T_K), both susceptibilities by AD.
    // Measured 1.99998; 10% is the tolerance (charge fluctuations give R < 2 by O(Γ/U)).
    let (_, summary) = kondo_regime();
    let r = summary.wilson_ratio.unwrap();
    assert!((r - 2.0).abs() < 0.2, "R = {r}");
}

#[test]
fn wilson_ratio_is_one_without_interaction() {
    // At U = 0 the spin species decouple, F = Σ_σ F_σ(ε_d ∓ h/2), so χ_c = 4χ_s and R = 1 at
    // every shell; only truncation (which acts on the many-body space, not per spin) breaks
    // this, by 2.8e-6 here. Asserted at 1e-4, far inside the 2%: it checks two
    // independent second derivatives against each other.
    let c = common::siam(0.0, 0.003, 0.01, 2.5, 200, 1e-8);
    let mut run = Run::new(&c).unwrap();
    let records: Vec<ShellRecord> = run.by_ref().collect();
    let r = run.summary(false).wilson_ratio.unwrap();
    assert!((r - 1.0).abs() < 1e-4, "R = {r}");
    // shell by shell at finite T the truncation error is larger (max 5e-4 at N = 12 here)
    for s in &records {
        let (chi_s, chi_c) = (s.obs.chi_loc.unwrap(), s.obs.chi_c.unwrap());
        let dev = 8.0 * chi_s / (4.0 * chi_s + chi_c) - 1.0;
        assert!(dev.abs() < 2e-3, "N = {}: R − 1 = {dev:e}", s.n);
    }
}

#[test]
fn kondo_model_goes_from_local_moment_to_strong_coupling() {
    let c = common::kondo(0.25, 2.5, 300, 1e-8);
    let records = common::run(&c);
    let first = &records[0];
    // at T ≈ 1.5 a weakly coupled spin: S = ln 2 up to O((J/T)²); Tχ = 1/4 up to the first-order
    // reduction ~J_phys/(4T)·… ≈ 0.1 relative (measured: S 0.0069 below ln 2, Tχ 0.226 with
    // J_phys = 2·ρJ·A_Λ = 0.53); bounds at 3× those deviations
    assert!(
        (first.obs.s_imp - LN_2).abs() < 0.021,
        "S = {}",
        first.obs.s_imp
    );
    assert!(
        (first.obs.tchi_imp - 0.25).abs() < 0.075,
        "Tχ = {}",
        first.obs.tchi_imp
    );
    for s in &records[records.len() - 4..] {
        assert!(
            s.obs.s_imp.abs() < 0.01 && s.obs.tchi_imp.abs() < 0.002,
            "N = {}",
            s.n
        );
    }
    // no charge observables for the Kondo model
    assert!(first.obs.n_d.is_none() && first.obs.docc.is_none());
}
