//! The FDM spectral function (value only): sum rules, the U = 0 resonant level against the exact
//! single-particle solution of the same finite chain, particle–hole symmetry and the Hubbard
//! peaks of the symmetric SIAM, and the `dnrg spectrum` contract.
//!
//! Small runs throughout: Λ = 3, 14–20 shells, keep 200–300.

mod common;

use common::sandbox::Sandbox;
use dnrg::free_chain::{eigenvalues, fermi, first_site_weights};
use dnrg::params::{FieldKind, Param, RunConfig};
use dnrg::spectral::{SpectralOptions, Spectrum, spectrum};

/// Exact poles (e_k, |ψ_k(d)|²) of the resonant level on the run's own chain (impurity + sites
/// 0..=N_max) with impurity level `eps`: the U = 0 spectral function of the finite chain, which
/// does not depend on T.
fn exact_poles(s: &Spectrum, eps: f64) -> Vec<(f64, f64)> {
    let c = &s.header.chain;
    let n = s.header.n_max;
    let mut diag = vec![eps];
    diag.extend_from_slice(&c.onsite[..=n]);
    let mut off = vec![c.v0.expect("SIAM")];
    off.extend_from_slice(&c.hopping[..n]);
    let full = eigenvalues(&diag, &off);
    let bare = eigenvalues(&c.onsite[..=n], &c.hopping[..n]);
    let w = first_site_weights(&full, &bare);
    full.into_iter().zip(w).collect()
}

/// max over 2T ≤ |ω| ≤ 1 of |A_σ − A_exact|, relative to max A_exact, both broadened with the
/// spectrum's own bins and kernel.
fn u0_deviation(s: &Spectrum, sigma: usize, eps: f64) -> f64 {
    let omega = comparison_grid(s);
    let exact = s.broaden_poles(&exact_poles(s, eps), &omega);
    let max = exact.iter().fold(0.0f64, |m, &a| m.max(a));
    omega
        .iter()
        .zip(&exact)
        .map(|(&w, &e)| (s.a(sigma, w) - e).abs() / max)
        .fold(0.0, f64::max)
}

/// The spectrum's frequencies with 2T ≤ |ω| ≤ 1.
fn comparison_grid(s: &Spectrum) -> Vec<f64> {
    let t = s.options.t;
    s.frequencies()
        .into_iter()
        .filter(|w| w.abs() >= 2.0 * t && w.abs() <= 1.0)
        .collect()
}

/// The same for ∂A_σ/∂ε_d (the spectrum's derived parameter 0): the exact poles' derivatives by
/// central differences of the chain in its impurity level (its one-particle levels are simple,
/// so poles keep their order; step 1e-6, error ~1e-12), binned as moments (∂W at Ω, W·∂Ω) and
/// broadened like the spectrum's, relative to max |∂A_exact|.
fn u0_derivative_deviation(s: &Spectrum, sigma: usize, eps: f64) -> f64 {
    let omega = comparison_grid(s);
    let d = 1e-6;
    let (up, down, at) = (
        exact_poles(s, eps + d),
        exact_poles(s, eps - d),
        exact_poles(s, eps),
    );
    let moments: Vec<(f64, f64, f64, f64)> = at
        .iter()
        .zip(up.iter().zip(&down))
        .map(|(&(e, w), (&(ep, wp), &(em, wm)))| {
            (e, w, (wp - wm) / (2.0 * d), w * (ep - em) / (2.0 * d))
        })
        .collect();
    let exact = s.broaden_poles_with_derivative(&moments, &omega);
    let max = exact.iter().fold(0.0f64, |m, &(_, a)| m.max(a.abs()));
    omega
        .iter()
        .zip(&exact)
        .map(|(&w, &(_, e))| (s.da(sigma, 0, w).unwrap() - e).abs() / max)
        .fold(0.0, f64::max)
}

/// Bound on |⟨n_dσ⟩_FDM − ⟨n_dσ⟩_exact| at U = 0, T = 1e-3: measured 2026-12-01 2.5e-6 (ε_d =
/// −0.05, keep 300), 4.6e-7 (field, keep 800), 1.5e-13 (ε_d = 0, fixed by symmetry); 4× the
/// worst (2026-12-02 at keep 600 for ε_d = −0.05: 1.9e-7).
const N_TOL: f64 = 1e-5;

fn worst_sum_rule(s: &Spectrum) -> f64 {
    s.sums
        .iter()
        .map(|x| (x.weight - 1.0).abs())
        .fold(s.trace_residual, f64::max)
}

fn with_impurity_field(mut c: RunConfig, h: f64) -> RunConfig {
    c.model.h = h;
    c.model.field = FieldKind::Impurity;
    c
}

#[test]
fn sum_rule_holds_to_round_off() {
    // Σ W = Tr ρ{d, d†} = 1 exactly for the complete basis, whatever the truncation: the residual
    // is round-off over ~1e6 poles. Measured 2026-12-01: worst 1.5e-12 (with the trace check
    // Tr R_{N−1} = Σ_{M≥N} w_M); bound 1e-11, 6× that. (Since the weights use C_N − C_{N_max}
    // summed from per-shell steps, 2026-12-02: 1.6e-13.)
    let t = 1e-3;
    let runs = [
        common::siam(0.0, -0.05, 0.1, 3.0, 200, t),
        common::siam(0.4, -0.1, 0.05, 3.0, 200, t),
        common::siam(0.6, -0.3, 0.06, 3.0, 200, 3e-5),
        with_impurity_field(common::siam(0.3, -0.15, 0.05, 3.0, 200, t), 0.01),
    ];
    for config in &runs {
        let s = spectrum(config, &SpectralOptions::at(config.nrg.t_min)).unwrap();
        let worst = worst_sum_rule(&s);
        println!(
            "U = {} ε = {}: |ΣW − 1| ≤ {worst:.1e}, n_d = {:.6} (spectral {:.6}), {:.2} s, {} MB stored",
            config.model.u,
            config.model.eps_d,
            s.n_d(),
            s.sums.iter().map(|x| x.occupation_spectral).sum::<f64>(),
            (s.times.forward + s.times.backward).as_secs_f64(),
            s.stored_bytes / 1_000_000
        );
        assert!(worst < 1e-11, "sum rule residual {worst:e}");
        // with U ≠ 0 the self-energy trick's F: Σ W_F = ⟨n_σ̄⟩ exactly, per spin (a field
        // makes the two differ, so a spin mix-up fails). Same bound as Σ W.
        assert_eq!(s.self_energy_trick(), config.model.u != 0.0);
        if s.self_energy_trick() {
            for i in 0..2 {
                let r = (s.sums[i].weight_f - s.sums[1 - i].occupation).abs();
                println!("  Σ W_F − ⟨n_σ̄⟩ (σ = {i}): {r:.1e}");
                assert!(r < 1e-11, "σ = {i}: Σ W_F − ⟨n_σ̄⟩ = {r:e}");
            }
        }
        // ∫A f dω and Tr ρ d†d differ only through the off-diagonal R_N (measured ≤ 6e-6 here);
        // 1e-4 still catches a wrong spin or side of the Fermi function (errors of order 1)
        let spectral: f64 = s.sums.iter().map(|x| x.occupation_spectral).sum();
        assert!(
            (spectral - s.n_d()).abs() < 1e-4,
            "{spectral} vs {}",
            s.n_d()
        );
    }
}

#[test]
fn resonant_level_matches_the_exact_finite_chain() {
    // U = 0: NRG's only error is truncation (the energy of |s, e⟩ taken as that of s). With
    // nothing truncated before the last shell the agreement is 2e-14 (keep 5000, 5 shells),
    // and keep 40, 80, 120 at T = 1e-2, 10 shells give 10.7%, 1.84%, 1.44%, as the design
    // note's independent prototype (11%, 1.8%, 1.4%). Measured 2026-12-01, T = 1e-3, 15 shells,
    // relative to max A for 2T ≤ |ω| ≤ 1: keep 300: 0.57% (ε = −0.05), 0.13% (ε = 0); with an
    // impurity field the ↑ spin is worse (1.1% at 300, 0.67% at 800), hence keep 800 there. The
    // error is not monotonic in keep (2.3% at 500, 0.54% at 600).
    // ∂A/∂ε_d carries the same truncation error, relative to max |∂A/∂ε_d| (the prototype:
    // 12%, 2.6%, 1.5% at keep 40, 80, 120), and the same non-monotonic keep dependence, worst
    // just above 2T: measured 2026-12-02 at ε = −0.05: 0.94%, 1.46%, 2.28%, 0.53% at keep 300,
    // 400, 500, 600; at ε = 0: 2.5%, 0.74%, 0.27%, 0.20% at 300, 600, 700, 800; with the field
    // at keep 800: 0.65% (↑), 0.38% (↓). Hence keep 600, 700, 800 below, where A errs by at
    // most 0.67% too. Asserted at the 2%: ≥ 3× the worst case of A and of ∂A/∂ε_d.
    let t = 1e-3;
    for (eps, h, keep) in [(-0.05, 0.0, 600), (0.0, 0.0, 700), (-0.05, 0.02, 800)] {
        let mut config = with_impurity_field(common::siam(0.0, eps, 0.1, 3.0, keep, t), h);
        config.derive = vec![Param::EpsD];
        let s = spectrum(&config, &SpectralOptions::at(t)).unwrap();
        // −h S_z on the impurity: ε_↑ = ε − h/2, ε_↓ = ε + h/2
        let up = u0_deviation(&s, 0, eps - h / 2.0);
        let down = u0_deviation(&s, 1, eps + h / 2.0);
        let d_up = u0_derivative_deviation(&s, 0, eps - h / 2.0);
        let d_down = u0_derivative_deviation(&s, 1, eps + h / 2.0);
        // the density matrix itself: ⟨n_dσ⟩ = Σ_k |ψ_k(d)|² f(e_k) on the same chain at T
        let n_exact = |e: f64| -> f64 {
            exact_poles(&s, e)
                .iter()
                .map(|&(ek, w)| w * fermi(ek, t))
                .sum()
        };
        let dn = (s.sums[0].occupation - n_exact(eps - h / 2.0))
            .abs()
            .max((s.sums[1].occupation - n_exact(eps + h / 2.0)).abs());
        println!(
            "ε = {eps}, h = {h}, keep {keep}: deviation ↑ {up:.2e}, ↓ {down:.2e}, |Δn_dσ| \
             {dn:.1e}; ∂A/∂ε_d ↑ {d_up:.2e}, ↓ {d_down:.2e}"
        );
        assert!(dn < N_TOL, "ε = {eps}, h = {h}: Δn = {dn:e}");
        assert!(up.max(down) < 0.02, "ε = {eps}, h = {h}: {up:e} / {down:e}");
        assert!(
            d_up.max(d_down) < 0.02,
            "ε = {eps}, h = {h}: ∂A/∂ε_d {d_up:e} / {d_down:e}"
        );
        // the same comparison with the spins swapped must fail when h ≠ 0: the test sees spins
        if h != 0.0 {
            let swapped = u0_deviation(&s, 0, eps + h / 2.0);
            assert!(
                swapped > 3.0 * up,
                "spin-swapped deviation {swapped:e} vs {up:e}"
            );
        }
    }
}

#[test]
fn symmetric_siam_is_particle_hole_symmetric_with_hubbard_peaks() {
    // U/Γ = 10, T_K ≈ 3e-3 (Haldane), T = 3e-5 ≪ T_K, 21 shells.
    let (u, gamma, t) = (0.6, 0.06, 3e-5);
    let config = common::siam(u, -u / 2.0, gamma, 3.0, 200, t);
    let s = spectrum(&config, &SpectralOptions::at(t)).unwrap();
    let omega = s.frequencies();
    let max = omega.iter().map(|&w| s.a(0, w)).fold(0.0, f64::max);
    let asym = omega
        .iter()
        .map(|&w| (s.a(0, w) - s.a(0, -w)).abs() / max)
        .fold(0.0, f64::max);
    // Q and −Q blocks are diagonalized separately, so A(ω) = A(−ω) holds to round-off only:
    // measured 2e-14 relative; bound 1e-12.
    assert!(asym < 1e-12, "A(ω) − A(−ω): {asym:e}");
    // ⟨n_d⟩ = 1 by symmetry; measured |n_d − 1| = 1.5e-12 (round-off), bound 1e-10
    assert!((s.n_d() - 1.0).abs() < 1e-10, "n_d = {}", s.n_d());
    // the Hubbard peak: the local maximum of A above the Kondo resonance's tail (ω > U/4).
    // Measured at 0.228 (U/2 = 0.3; |ln(ω/(U/2))| = 0.27: the Hubbard band is broad, Γ = U/10,
    // and the log-Gaussian of width b = 0.6 smears it asymmetrically). Loose bound 0.8, 3× that.
    let above: Vec<(f64, f64)> = omega
        .iter()
        .filter(|&&w| w > u / 4.0)
        .map(|&w| (w, s.a(0, w)))
        .collect();
    let peaks: Vec<f64> = above
        .windows(3)
        .filter(|x| x[1].1 > x[0].1 && x[1].1 > x[2].1)
        .map(|x| x[1].0)
        .collect();
    println!(
        "asym {asym:.1e}, n_d − 1 = {:.1e}, peaks {peaks:?}, πΓA(0) = {:.3}",
        s.n_d() - 1.0,
        std::f64::consts::PI * gamma * s.a(0, 0.0)
    );
    assert_eq!(peaks.len(), 1, "one Hubbard peak above U/4: {peaks:?}");
    assert!(
        (peaks[0] / (u / 2.0)).ln().abs() < 0.8,
        "Hubbard peak at {}",
        peaks[0]
    );
    // the self-energy trick's A: the Friedel value and the Hubbard peak
    let pts = s.evaluate(&omega);
    let a0 = pts.iter().find(|p| p.omega == 0.0).unwrap().a[0];
    let improved: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| p.omega > u / 4.0)
        .map(|p| (p.omega, p.a[0]))
        .collect();
    let peaks: Vec<f64> = improved
        .windows(3)
        .filter(|x| x[1].1 > x[0].1 && x[1].1 > x[2].1)
        .map(|x| x[1].0)
        .collect();
    let friedel = std::f64::consts::PI * gamma * a0;
    println!("with Σ = UF/G: πΓA(0) = {friedel:.5}, peaks {peaks:?}");
    // measured 2026-12-01: 1.0061 (raw FDM A: 0.696) at keep 200, T/T_K ≈ 1e-2; bound 2%
    // (3×). The 1% is asserted on the U = 0.4 case below (measured 5e-4 there). The
    // peak moves from 0.228 (raw) to 0.255, closer to U/2 = 0.3.
    assert!((friedel - 1.0).abs() < 0.02, "πΓA(0) = {friedel}");
    assert_eq!(peaks.len(), 1, "one Hubbard peak above U/4: {peaks:?}");
    assert!(
        (peaks[0] / (u / 2.0)).ln().abs() < 0.8,
        "Hubbard peak at {}",
        peaks[0]
    );
}

// ---- the CLI contract ------------------------------------------------------------------------

const SMALL: &[&str] = &[
    "resonant-level",
    "--set",
    "nrg.keep=100",
    "--set",
    "nrg.Lambda=3",
    "--set",
    "nrg.T_min=1e-3",
    "--quiet",
];

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn spectrum_jsonl_contract() {
    let sb = Sandbox::new();
    let out = sb.run(&[&["spectrum"], SMALL].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = lines(&out);
    let (head, rest) = recs.split_first().unwrap();
    let (summary, points) = rest.split_last().unwrap();
    assert_eq!(head["type"], "header");
    for key in [
        "model",
        "nrg",
        "T",
        "broadening",
        "grid",
        "self_energy_trick",
    ] {
        assert!(head.get(key).is_some(), "header lacks {key}");
    }
    assert_eq!(head["self_energy_trick"], false);
    assert_eq!(head["operator"], "d");
    assert_eq!(head["z_average"], 1);
    assert_eq!(head["T"], 1e-3);
    assert_eq!(head["broadening"]["b"], 0.6);
    assert_eq!(head["grid"]["points"], points.len());
    for p in points {
        assert_eq!(p["type"], "point");
        assert_eq!(p["A"], p["A_raw"], "no self-energy trick: A_raw = A");
        assert_eq!(p["Sigma_re"], 0.0, "U = 0: Σ = 0");
        assert_eq!(p["Sigma_im"], 0.0, "U = 0: Σ = 0");
        assert!(p["omega"].is_f64() && p["A"].as_f64().unwrap() >= 0.0);
        assert!(p.get("A_up").is_none(), "h = 0: no spin-resolved columns");
    }
    assert_eq!(summary["type"], "summary");
    for key in ["sum_rule", "n_d_spectral", "n_d", "piGammaA0", "friedel"] {
        assert!(summary[key].is_object() || summary[key].is_f64(), "{key}");
    }
    let residual = summary["sum_rule"]["up"]["residual"].as_f64().unwrap();
    assert!(residual.abs() < 1e-11, "{residual}");

    // a field: per-spin columns; CSV has the same columns
    let field = [
        &["spectrum"],
        SMALL,
        &["--set", "model.h=0.01", "--format", "csv"],
    ]
    .concat();
    let out = sb.run(&field);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("omega,A,A_raw,A_up,A_down,Sigma_re,Sigma_im")
    );

    // U ≠ 0: the self-energy trick by default, A ≠ A_raw, Σ written and Σ W_F reported;
    // --raw turns it off
    let interacting = [&["spectrum"], SMALL, &["--set", "model.U=0.2"]].concat();
    let out = sb.run(&interacting);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = lines(&out);
    assert_eq!(recs[0]["self_energy_trick"], true);
    assert!(recs[0]["kramers_kronig"].is_object());
    let points = &recs[1..recs.len() - 1];
    assert!(points.iter().any(|p| p["A"] != p["A_raw"]));
    assert!(
        points
            .iter()
            .any(|p| p["Sigma_re"].as_f64().unwrap() != 0.0)
    );
    let summary = recs.last().unwrap();
    let f = summary["sum_rule"]["F_up"]["residual"].as_f64().unwrap();
    assert!(f.abs() < 1e-11, "{f}");
    // z-averaging recorded in the header
    let averaged = [&interacting[..], &["--set", "nrg.z_average=2"]].concat();
    let recs = lines(&sb.run(&averaged));
    assert_eq!(recs[0]["z_average"], 2);
    assert_eq!(recs[0]["z_values"], serde_json::json!([0.5, 1.0]));
    let raw = [&interacting[..], &["--raw"]].concat();
    let recs = lines(&sb.run(&raw));
    assert_eq!(recs[0]["self_energy_trick"], false);
    for p in &recs[1..recs.len() - 1] {
        assert_eq!(p["A"], p["A_raw"]);
        assert_eq!(p["Sigma_re"], 0.0);
    }
}

#[test]
fn spectrum_derivatives_contract() {
    // --derive eps_d,U: every point has dA, d2A (keys "θ" and "θ,φ", θ before φ in the derive
    // order, as `dnrg run`'s hess), the same for A_raw and Σ; the summary has the sum rules of
    // the derivatives and ∂⟨n_d⟩; the values are those of a plain run.
    let sb = Sandbox::new();
    let base = [&["spectrum"], SMALL, &["--set", "model.U=0.2"]].concat();
    let plain = lines(&sb.run(&base));
    let out = sb.run(&[&base[..], &["--derive", "eps_d,U"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = lines(&out);
    assert_eq!(recs[0]["derive"], serde_json::json!(["eps_d", "U"]));
    assert_eq!(recs.len(), plain.len());
    let first = ["eps_d", "U"];
    let second = ["eps_d,eps_d", "eps_d,U", "U,U"];
    for (p, q) in recs[1..recs.len() - 1].iter().zip(&plain[1..]) {
        for key in ["A", "A_raw", "Sigma_re", "Sigma_im"] {
            assert_eq!(
                p[key], q[key],
                "{key}: a dual run's values are the plain run's"
            );
        }
        for (d1, d2) in [
            ("dA", "d2A"),
            ("dA_raw", "d2A_raw"),
            ("dSigma_re", "d2Sigma_re"),
            ("dSigma_im", "d2Sigma_im"),
        ] {
            for k in first {
                assert!(p[d1][k].is_f64(), "{d1}.{k} at ω = {}", p["omega"]);
            }
            for k in second {
                assert!(p[d2][k].is_f64(), "{d2}.{k} at ω = {}", p["omega"]);
            }
            assert_eq!(p[d1].as_object().unwrap().len(), 2);
            assert_eq!(p[d2].as_object().unwrap().len(), 3);
        }
        assert!(
            p.get("dA_up").is_none(),
            "h = 0, h not derived: spin averages only"
        );
    }
    // loose bounds: this is the contract (the sum rules' physics bounds are asserted in
    // tests/spectral_derivatives.rs); Γ = 0.01 here makes ∂²W ~ 1e4
    let summary = recs.last().unwrap();
    let rule = &summary["sum_rule"];
    assert!(rule["W"].as_f64().unwrap().abs() < 1e-11);
    for k in first {
        assert!(rule["dW"][k].as_f64().unwrap().abs() < 1e-9, "dW.{k}");
        assert!(rule["dW_F"][k].is_f64(), "dW_F.{k}");
        assert!(summary["dn_d"][k].is_f64(), "dn_d.{k}");
    }
    for k in second {
        assert!(rule["d2W"][k].as_f64().unwrap().abs() < 1e-6, "d2W.{k}");
        assert!(summary["d2n_d"][k].is_f64(), "d2n_d.{k}");
    }
    // CSV: the value columns in their places, then the derivative columns
    let out = sb.run(&[&base[..], &["--derive", "eps_d,U", "--format", "csv"]].concat());
    let csv = String::from_utf8(out.stdout).unwrap();
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(
        head[..5],
        ["omega", "A", "A_raw", "Sigma_re", "Sigma_im"],
        "{head:?}"
    );
    for col in [
        "dA_eps_d",
        "dA_U",
        "d2A_eps_d_eps_d",
        "d2A_eps_d_U",
        "d2A_U_U",
        "dA_raw_U",
        "d2Sigma_im_U_U",
    ] {
        assert!(head.contains(&col), "CSV lacks {col}: {head:?}");
    }
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').count() == head.len())
    );
    // h derived (impurity field, h = 0): spin-resolved, ∂A_↑/∂h = −∂A_↓/∂h, average 0
    let field = [
        &base[..],
        &["--set", "model.field=impurity", "--derive", "h"],
    ]
    .concat();
    let recs = lines(&sb.run(&field));
    for p in &recs[1..recs.len() - 1] {
        let (up, down) = (
            p["dA_up"]["h"].as_f64().unwrap(),
            p["dA_down"]["h"].as_f64().unwrap(),
        );
        assert_eq!(up, -down, "ω = {}", p["omega"]);
        assert_eq!(p["dA"]["h"], 0.0);
        assert_eq!(p["d2A_up"]["h,h"], p["d2A_down"]["h,h"]);
        assert_eq!(p["A_up"], p["A_down"]);
    }
    // the field on the total spin is not a derivative direction of spectra (yet): exit 2, why
    let total = [&base[..], &["--derive", "h"]].concat();
    let out = sb.run(&total);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("impurity"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn spectrum_bad_input_exits_2() {
    let sb = Sandbox::new();
    for extra in [
        &["--T", "0"][..],
        &["--T", "nan"],
        &["--T=-1"],
        &["--b", "0"],
        &["--bins-per-decade", "0"],
        &["--set", "model.kind=kondo", "--derive", "U"],
        &["--set", "nrg.keep=-3"],
        &["--set", "no.such=1"],
    ] {
        let out = sb.run(&[&["spectrum"], SMALL, extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("error"), "{extra:?}: {err}");
        if extra.contains(&"model.kind=kondo") {
            // the Kondo model has a T-matrix spectrum, but U is no parameter of it
            assert!(err.contains("kondo model"), "the refusal says why: {err}");
        }
        assert!(out.stdout.is_empty(), "{extra:?}: records written");
    }
    // --out: nothing left behind on failure, the file in place on success
    // z-averaging: 1…64, for `dnrg run` as for `dnrg spectrum`
    for nz in ["0", "65"] {
        let key = format!("nrg.z_average={nz}");
        let out = sb.run(&[&["spectrum"], SMALL, &["--set", &key]].concat());
        assert_eq!(out.status.code(), Some(2), "z_average = {nz}");
        let out = sb.run(&["run", "resonant-level", "--set", &key, "--quiet"]);
        assert_eq!(out.status.code(), Some(2), "run, z_average = {nz}");
    }
    let out = sb.run(&[
        "run",
        "resonant-level",
        "--set",
        "nrg.z_average=2",
        "--set",
        "nrg.T_min=1e-3",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let first = String::from_utf8_lossy(&out.stdout);
    let header: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("a header")).unwrap();
    assert_eq!(header["nrg"]["z_average"], 2);
    let target = sb.work().join("a.jsonl");
    let bad = [&["spectrum"], SMALL, &["--T", "0", "--out", "a.jsonl"]].concat();
    assert_eq!(sb.run(&bad).status.code(), Some(2));
    assert!(
        sb.files(&sb.work()).is_empty(),
        "{:?}",
        sb.files(&sb.work())
    );
    let good = [&["spectrum"], SMALL, &["--out", "a.jsonl"]].concat();
    assert!(sb.run(&good).status.success());
    assert!(target.exists());
}

// ---- the self-energy trick -------------------------------------------------------------------

#[test]
fn self_energy_trick_friedel_and_symmetry() {
    // Symmetric SIAM, U = 0.4, Γ = 0.1 (U/πΓ = 1.27, T_K ≈ 0.04), T = 5e-5 ≪ T_K: the design
    // note's §7(c) case, Λ = 3, keep 300, no z-averaging.
    let (u, gamma, t) = (0.4, 0.1, 5e-5);
    let config = common::siam(u, -u / 2.0, gamma, 3.0, 300, t);
    let s = spectrum(&config, &SpectralOptions::at(t)).unwrap();
    assert!(s.self_energy_trick(), "on by default when U ≠ 0");
    let omega = s.frequencies();
    let pts = s.evaluate(&omega);
    let pi_gamma = std::f64::consts::PI * gamma;
    let at0 = pts.iter().find(|p| p.omega == 0.0).unwrap();
    // Σ W_F = Tr ρ{d n̄, d†} = ⟨n_σ̄⟩ exactly (complete basis), like Σ W = 1
    let f_res = (0..2)
        .map(|i| (s.sums[i].weight_f - s.sums[1 - i].occupation).abs())
        .fold(0.0, f64::max);
    // particle–hole symmetry: Σ(ω) − U/2 = −(Σ(−ω) − U/2)* (Σ = U F/G carries the Hartree U/2)
    let asym = pts
        .iter()
        .zip(pts.iter().rev())
        .map(|(p, m)| {
            let (a, b) = (p.sigma[0], m.sigma[0]);
            (a.re + b.re - u).abs().max((a.im - b.im).abs())
        })
        .fold(0.0, f64::max);
    let max_sigma = pts.iter().map(|p| p.sigma[0].norm()).fold(0.0, f64::max);
    let worst_im = pts
        .iter()
        .filter(|p| p.omega.abs() < 1.0)
        .map(|p| p.sigma[0].im)
        .fold(f64::NEG_INFINITY, f64::max);
    let friedel = pi_gamma * at0.a[0];
    println!(
        "πΓA(0) = {friedel:.5} (raw {:.5}), |ΣW_F − ⟨n_σ̄⟩| = {f_res:.1e}, max Im Σ = \
         {worst_im:.2e}, ph asymmetry of Σ {asym:.1e} (max |Σ| {max_sigma:.2})",
        pi_gamma * at0.a_raw[0]
    );
    // measured 2026-12-01: 0.99951 (raw FDM A: 0.720); asserted at the 1%
    assert!((friedel - 1.0).abs() < 0.01, "πΓA(0) = {friedel}");
    // measured 4.0e-15; the bound of Σ W − 1
    assert!(f_res < 1e-11, "Σ W_F − ⟨n_σ̄⟩ = {f_res:e}");
    // Q and −Q blocks are diagonalized separately: round-off only. Measured 4.6e-15.
    assert!(asym < 1e-12, "Σ(ω) + Σ(−ω)* − U: {asym:e}");
    // causality: Im Σ ≤ 0. The broadened F and G are not exactly consistent, so F/G has tiny
    // positive wiggles near ω ~ 1e-3: measured max Im Σ = 1.1e-4 = 4.4e-4·max|Σ|; bound 2e-3
    // (4.5×). A wrong sign of the Kramers–Kronig part or of F would give O(0.1).
    assert!(
        worst_im < 2e-3 * max_sigma,
        "Im Σ = {worst_im:e} > 0 (max |Σ| = {max_sigma})"
    );
    // and the improved A is positive and particle–hole symmetric
    for (p, m) in pts.iter().zip(pts.iter().rev()) {
        assert!(p.a[0] > 0.0, "A({}) = {}", p.omega, p.a[0]);
        assert!((p.a[0] - m.a[0]).abs() < 1e-12 * friedel / pi_gamma);
    }
}

#[test]
fn without_the_trick_a_is_the_raw_fdm_a() {
    // U = 0: Σ = 0 and the trick is not applied (it would replace the discretized spectrum by
    // the continuum one); `self_energy_trick = false` (the CLI's --raw) at U ≠ 0 does the same.
    let t = 1e-3;
    let raw_opts = SpectralOptions {
        self_energy_trick: false,
        ..SpectralOptions::at(t)
    };
    for (config, opts) in [
        (
            common::siam(0.0, -0.05, 0.1, 3.0, 150, t),
            SpectralOptions::at(t),
        ),
        (common::siam(0.3, -0.1, 0.1, 3.0, 150, t), raw_opts),
    ] {
        let s = spectrum(&config, &opts).unwrap();
        assert!(!s.self_energy_trick());
        assert!(s.sums.iter().all(|x| x.weight_f == 0.0));
        for p in s.evaluate(&s.frequencies()) {
            assert_eq!(p.a, p.a_raw, "ω = {}", p.omega);
            assert_eq!(p.a[0], s.a(0, p.omega));
            assert!(p.sigma.iter().all(|z| z.re == 0.0 && z.im == 0.0));
        }
    }
}

// ---- z-averaging -----------------------------------------------------------------------------

#[test]
fn z_averaged_resonant_level_matches_the_continuum() {
    // U = 0, Žitko–Pruschke, Nz = 8: the discretization artefacts average out and πΓA(ω)
    // approaches the continuum G = 1/(ω − ε_d − Δ(ω)) of the flat band.
    let (eps, gamma, t) = (-0.05, 0.1, 1e-3);
    let mut config = common::siam(0.0, eps, gamma, 3.0, 300, t);
    config.nrg.discretization = dnrg::params::Discretization::ZitkoPruschke;
    config.nrg.z_average = 8;
    // b ≈ ln Λ / Nz = 0.137: the z-average fills in the discrete shells, so the kernel can be
    // much narrower than without it, and the log-Gaussian's own distortion of the Lorentzian
    // dominates otherwise. Measured 2026-12-01, max |πΓ(A − A_continuum)| for 10T < |ω| < 0.5:
    // b = 0.6: 11%, 0.4: 5.7%, 0.3: 3.5%, 0.2: 1.9%, 0.15: 1.36%, 0.1: 1.12% (keep 300, Λ = 3).
    // Not monotonic in keep or Λ: keep 500 gives 6.0% and Λ = 2 5.3% at b = 0.15 (open; the
    // U = 0 finite-chain test sees the same non-monotonic truncation error).
    let opts = SpectralOptions {
        b: 0.15,
        ..SpectralOptions::at(t)
    };
    let s = spectrum(&config, &opts).unwrap();
    assert_eq!(s.z_values.len(), 8);
    let pi_gamma = std::f64::consts::PI * gamma;
    let omega: Vec<f64> = s
        .frequencies()
        .into_iter()
        .filter(|w| w.abs() > 10.0 * t && w.abs() < 0.5)
        .collect();
    let worst = s
        .evaluate(&omega)
        .iter()
        .map(|p| {
            let g = (nalgebra::Complex::new(p.omega - eps, 0.0) - s.siam.hybridization(0, p.omega))
                .inv();
            let exact = -g.im / std::f64::consts::PI;
            (pi_gamma * (p.a[0] - exact)).abs()
        })
        .fold(0.0, f64::max);
    println!(
        "Nz = 8, ZP, b = {}: max |πΓ(A − A_continuum)| = {worst:.2e}, |ΣW − 1| = {:.1e}",
        opts.b,
        worst_sum_rule(&s)
    );
    assert!(worst_sum_rule(&s) < 1e-11);
    // 3× the measured 1.36% (which meets the 3% acceptance bound)
    assert!(worst < 0.041, "{worst:e}");
    // and the average does something: the z = 1 chain alone is much further off
    let mut single = config.clone();
    single.nrg.z_average = 1;
    let one = spectrum(&single, &opts).unwrap();
    let worst_one = omega
        .iter()
        .map(|&w| {
            let g = (nalgebra::Complex::new(w - eps, 0.0) - one.siam.hybridization(0, w)).inv();
            (pi_gamma * (one.a(0, w) + g.im / std::f64::consts::PI)).abs()
        })
        .fold(0.0, f64::max);
    println!("Nz = 1, same b: {worst_one:.2e}");
    assert!(worst_one > 2.0 * worst, "{worst_one:e} vs {worst:e}");
}

#[test]
fn z_average_is_independent_of_scheduling_and_keeps_friedel() {
    // Symmetric SIAM with the self-energy trick and Nz = 4 (z = ¼, ½, ¾, 1), computed on one
    // thread and on two: the same bins bit for bit (chains combined in z order). πΓA(0) = 1
    // as in the acceptance (trick + z-averaging).
    let (u, gamma, t) = (0.4, 0.1, 5e-5);
    let mut config = common::siam(u, -u / 2.0, gamma, 3.0, 150, t);
    config.nrg.z_average = 4;
    let opts = SpectralOptions::at(t);
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| spectrum(&config, &opts).unwrap())
    };
    let (a, b) = (on(1), on(2));
    assert_eq!(a.z_values, vec![0.25, 0.5, 0.75, 1.0]);
    assert_eq!(a.bins, b.bins);
    assert_eq!(a.bins_f, b.bins_f);
    assert!(worst_sum_rule(&a) < 1e-11);
    let f_res = (0..2)
        .map(|i| (a.sums[i].weight_f - a.sums[1 - i].occupation).abs())
        .fold(0.0, f64::max);
    assert!(f_res < 1e-11, "{f_res:e}");
    let p0 = a.evaluate(&[0.0])[0];
    let friedel = std::f64::consts::PI * gamma * p0.a[0];
    println!(
        "Nz = 4, keep 150: πΓA(0) = {friedel:.5} (raw {:.4})",
        std::f64::consts::PI * gamma * p0.a_raw[0]
    );
    // measured 2026-12-01: 0.99946 (raw FDM A: 0.701); the 1%, 18× that
    assert!((friedel - 1.0).abs() < 0.01, "πΓA(0) = {friedel}");
}
