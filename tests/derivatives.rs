//! Automatic derivatives against finite differences of plain NRG runs that truncate exactly
//! like the base run (kept counts frozen shell by shell).

mod common;

use dnrg::params::{FieldKind, Param, RunConfig};
use dnrg::record::ShellRecord;

/// An asymmetric Anderson model (mixed-valence side of the Kondo regime). Λ = 3 with 150 kept
/// states keeps the runs quick; the field is applied to the impurity only.
fn base() -> RunConfig {
    let mut c = common::siam(0.05, -0.012, 0.007, 3.0, 150, 1e-8);
    c.model.field = FieldKind::Impurity;
    c.nrg.beta_bar = 1.0;
    c
}

/// Parameters whose rescaled level sensitivities stay of order 1/Γ at all shells, so that one
/// finite-difference step serves every shell.
const PARAMS: [Param; 3] = [Param::EpsD, Param::U, Param::Gamma];

/// Every shell of a plain run at parameters shifted by `steps`, truncated like the base run.
fn plain_run(kept: &[usize], steps: &[(Param, f64)]) -> Vec<ShellRecord> {
    let mut c = common::plain(base());
    for &(p, d) in steps {
        let v = c.model.get(p);
        c.model.set(p, v + d);
    }
    common::run_frozen(&c, kept)
}

/// F_imp of every shell of such a run.
fn f_imp(kept: &[usize], steps: &[(Param, f64)]) -> Vec<f64> {
    plain_run(kept, steps).iter().map(|r| r.obs.f_imp).collect()
}

#[test]
fn gradient_and_hessian_match_finite_differences() {
    let dual: Vec<ShellRecord> = common::run(&common::with_derive(base(), &PARAMS));
    let kept: Vec<usize> = dual.iter().map(|r| r.kept).collect();
    let min_gap = dual
        .iter()
        .filter_map(|r| r.gap_cut)
        .fold(f64::INFINITY, f64::min);
    println!(
        "{} shells, smallest gap at the cut {min_gap:.3}",
        dual.len()
    );
    // Step: small enough that no level crosses the cut (|dE/dθ|·δ/ω_N ≪ Δ_cut), large
    // enough that round-off (~1e-15 in F) stays below 1e-9 of the derivatives.
    let d = 5e-5;
    let mut worst_first: f64 = 0.0;
    let mut worst_second: f64 = 0.0;
    for (a, &p) in PARAMS.iter().enumerate() {
        let f = |k: f64| f_imp(&kept, &[(p, k * d)]);
        let (m2, m1, p1, p2) = (f(-2.0), f(-1.0), f(1.0), f(2.0));
        let f0 = f_imp(&kept, &[]);
        for (n, r) in dual.iter().enumerate() {
            // fourth-order stencils: truncation error ~δ⁴ f⁽⁵⁾ ≪ 1e-9
            let fd1 = (m2[n] - 8.0 * m1[n] + 8.0 * p1[n] - p2[n]) / (12.0 * d);
            let fd2 =
                (-m2[n] + 16.0 * m1[n] - 30.0 * f0[n] + 16.0 * p1[n] - p2[n]) / (12.0 * d * d);
            let g = r.grad[p.name()];
            let h = r.hess[&format!("{0},{0}", p.name())];
            let e1 = (g - fd1).abs() / g.abs().max(1e-3);
            let e2 = (h - fd2).abs() / h.abs().max(1e-1);
            worst_first = worst_first.max(e1);
            worst_second = worst_second.max(e2);
            assert!(e1 < 1e-6, "N = {n}, ∂F/∂{p}: AD {g} vs FD {fd1}");
            // measured worst 4.5e-5 (the stencil's δ² f⁽⁴⁾ term at the smallest gaps): 3×
            assert!(e2 < 1.5e-4, "N = {n}, ∂²F/∂{p}²: AD {h} vs FD {fd2}");
        }
        for &q in &PARAMS[a + 1..] {
            let g = |sp: f64, sq: f64| f_imp(&kept, &[(p, sp * d), (q, sq * d)]);
            let (pp, pm, mp, mm) = (g(1.0, 1.0), g(1.0, -1.0), g(-1.0, 1.0), g(-1.0, -1.0));
            for (n, r) in dual.iter().enumerate() {
                // second-order cross stencil: error ~δ² f⁽⁴⁾ ≈ 1e-6 relative here
                let fd = (pp[n] - pm[n] - mp[n] + mm[n]) / (4.0 * d * d);
                let h = r.hess[&format!("{},{}", p.name(), q.name())];
                let e = (h - fd).abs() / h.abs().max(1e-1);
                worst_second = worst_second.max(e);
                assert!(e < 1.5e-4, "N = {n}, ∂²F/∂{p}∂{q}: AD {h} vs FD {fd}");
            }
        }
    }
    println!(
        "worst relative error: first derivatives {worst_first:.1e}, second {worst_second:.1e}"
    );
}

#[test]
fn field_curvature_matches_differenced_gradient() {
    // The rescaled sensitivity of a level to the impurity field is S_z/ω_N, which grows like
    // Λ^(N/2): a fixed step would push levels across the cut at low T. So shell N uses its own
    // step δ_N = 5e-3·ω_N and differences the (exact, first-order) AD gradient rather than F
    // (design note §6). Measured errors: ~1e-6 at high T from the step, rising to ~2e-5 at
    // the lowest T from the round-off of the gradient (absolute ~1e-13: the field's rescaled
    // derivative parts grow like Λ^(N/2)); a step of 1e-4·ω_N makes that 4e-4.
    let mut c = common::plain(base());
    c.derive = vec![Param::H];
    let base_run = dnrg::solver::Run::new(&c).unwrap();
    let omega = base_run.header().chain.omega.clone();
    let dual: Vec<ShellRecord> = base_run.collect();
    let kept: Vec<usize> = dual.iter().map(|r| r.kept).collect();
    let mut worst: f64 = 0.0;
    for (n, r) in dual.iter().enumerate() {
        let d = 5e-3 * omega[n];
        let grad_at = |h: f64| {
            let mut ch = c.clone();
            ch.model.h = h;
            let mut run = dnrg::solver::Run::new(&ch).unwrap();
            run.freeze_kept_counts(kept.clone());
            run.nth(n).unwrap().grad["h"]
        };
        let fd = (grad_at(d) - grad_at(-d)) / (2.0 * d);
        let ad = r.hess["h,h"];
        let e = (ad - fd).abs() / ad.abs();
        worst = worst.max(e);
        assert!(e < 1e-4, "N = {n}: ∂²F/∂h² AD {ad} vs FD {fd}");
        // odd derivatives vanish at h = 0
        assert!(
            r.grad["h"].abs() < 1e-12 * ad.abs().max(1.0),
            "N = {n}: ∂F/∂h = {}",
            r.grad["h"]
        );
    }
    println!("worst relative error of ∂²F/∂h²: {worst:.1e}");
}

#[test]
fn level_sensitivities_match_finite_differences() {
    let dual: Vec<ShellRecord> = common::run(&common::with_derive(base(), &PARAMS));
    let kept: Vec<usize> = dual.iter().map(|r| r.kept).collect();
    let d = 5e-5;
    // a level is identified by its block and its rank among the listed levels of that block
    let find = |r: &ShellRecord, q: i32, sz: f64, rank: usize| {
        r.levels
            .iter()
            .filter(|l| l.q == q && l.sz == sz)
            .nth(rank)
            .map(|l| l.e)
    };
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for &p in &PARAMS {
        let runs: Vec<Vec<ShellRecord>> = [-2.0, -1.0, 1.0, 2.0]
            .iter()
            .map(|&k| plain_run(&kept, &[(p, k * d)]))
            .collect();
        for (n, r) in dual.iter().enumerate() {
            for (i, l) in r.levels.iter().enumerate() {
                // isolated levels only: a neighbour within 1e-3 could swap rank under the step
                let isolated = l.deg == 1
                    && r.levels.iter().enumerate().all(|(j, m)| {
                        j == i || m.q != l.q || m.sz != l.sz || (m.e - l.e).abs() > 1e-3
                    });
                if !isolated || i + 1 == r.levels.len() {
                    continue;
                }
                let rank = r.levels[..i]
                    .iter()
                    .filter(|m| m.q == l.q && m.sz == l.sz)
                    .count();
                // (the highest listed levels may leave the list of the shifted runs)
                let Some(e) = runs
                    .iter()
                    .map(|run| find(&run[n], l.q, l.sz, rank))
                    .collect::<Option<Vec<f64>>>()
                else {
                    continue;
                };
                // fourth-order stencil; round-off of rescaled energies (~1e-13) over δ ≈ 3e-9
                let fd = (e[0] - 8.0 * e[1] + 8.0 * e[2] - e[3]) / (12.0 * d);
                let ad = l.de[p.name()][0];
                let err = (ad - fd).abs() / ad.abs().max(1.0);
                worst = worst.max(err);
                // 3× the measured worst 8.4e-7 (sensitivities reach 1/Γ ≈ 150 and the
                // stencil's error grows with powers of it)
                assert!(
                    err < 2.6e-6,
                    "N = {n}, level {i} (Q={}, Sz={}): dE/d{p} AD {ad} vs FD {fd}",
                    l.q,
                    l.sz
                );
                checked += 1;
            }
        }
    }
    println!("{checked} level sensitivities checked, worst relative error {worst:.1e}");
    assert!(checked > 300);
}

#[test]
fn complete_basis_derivatives_match_finite_differences() {
    // Heavy truncation (Λ = 2, 100 kept, β̄ = 0.75), where the discarded states of earlier shells
    // carry much of each shell's partition function: their second-order terms are computed per
    // pair with one parameter and through shared Gram matrices with three; both must match
    // differences of plain runs truncated alike.
    let config = |derive: &[Param]| {
        let mut c = common::siam(0.05, -0.012, 0.007, 2.0, 100, 1e-6);
        c.nrg.beta_bar = 0.75;
        common::with_derive(c, derive)
    };
    let d = 5e-5;
    for derive in [&PARAMS[..1], &PARAMS[..]] {
        let dual = common::run(&config(derive));
        let kept: Vec<usize> = dual.iter().map(|r| r.kept).collect();
        let mut shell_only = config(derive);
        shell_only.nrg.thermo_states = dnrg::params::ThermoStates::Shell;
        let wilson = common::run_frozen(&shell_only, &kept);
        let f = |steps: &[(Param, f64)]| -> Vec<f64> {
            let mut c = common::plain(config(&[]));
            for &(p, s) in steps {
                let v = c.model.get(p);
                c.model.set(p, v + s);
            }
            common::run_frozen(&c, &kept)
                .iter()
                .map(|r| r.obs.f_imp)
                .collect()
        };
        let f0 = f(&[]);
        let mut worst: f64 = 0.0;
        let mut largest_effect: f64 = 0.0;
        for &p in derive {
            let (m2, m1, p1, p2) = (
                f(&[(p, -2.0 * d)]),
                f(&[(p, -d)]),
                f(&[(p, d)]),
                f(&[(p, 2.0 * d)]),
            );
            let key = format!("{0},{0}", p.name());
            for (n, r) in dual.iter().enumerate() {
                let fd2 =
                    (-m2[n] + 16.0 * m1[n] - 30.0 * f0[n] + 16.0 * p1[n] - p2[n]) / (12.0 * d * d);
                let h = r.hess[&key];
                let e = (h - fd2).abs() / h.abs().max(1e-1);
                worst = worst.max(e);
                // measured worst 1.1e-6 (one parameter) and 6.3e-6 (three): 3×
                assert!(
                    e < 2e-5,
                    "N = {n}, ∂²F/∂{p}²: AD {h} vs FD {fd2} ({derive:?})"
                );
                let effect = (h - wilson[n].hess[&key]).abs() / h.abs().max(1e-1);
                largest_effect = largest_effect.max(effect);
            }
        }
        println!(
            "{derive:?}: worst relative error {worst:.1e}; the complete basis moves ∂²F by up to {largest_effect:.1e}"
        );
        // the check is sensitive: the discarded states' terms are far above the tolerance
        assert!(largest_effect > 100.0 * 2e-5, "{largest_effect}");
    }
}
