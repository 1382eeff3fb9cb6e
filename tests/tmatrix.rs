//! The Kondo model's T-matrix spectral function A_T(ω) = −Im T_σ(ω)/π, T_σ = ⟨⟨O_σ; O_σ†⟩⟩ with
//! O_σ = [f_0σ, H_imp]/√A_Λ = (J/2)(S·σ f_0)_σ/√A_Λ + K f_0σ/√A_Λ, by the same FDM machinery as
//! the SIAM's A_d: unitarity at T ≪ T_K, the sum rule against the thermodynamics, the
//! perturbative regime T ≫ T_K, particle–hole symmetry at K = 0, and ∂A_T/∂J, ∂A_T/∂K against
//! finite differences at frozen kept counts.
//!
//! Convention: ρ_0 = 1/(2D) = ½ (flat band, D = 1); the model's J = ρJ, so J_phys = 2ρJ·A_Λ.

mod common;

use common::sandbox::Sandbox;
use dnrg::params::{Param, RunConfig};
use dnrg::spectral::{
    Probe, SpectralOperator, SpectralOptions, Spectrum, spectrum, spectrum_probed,
};
use std::f64::consts::PI;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// ρ_0 = 1/(2D) of the flat band, D = 1.
const RHO0: f64 = 0.5;

fn kondo(j: f64, lambda: f64, keep: usize, t: f64) -> RunConfig {
    common::plain(common::kondo(j, lambda, keep, t))
}

/// −πρ_0 Im T(ω) = π²ρ_0 A_T(ω) of spin σ.
fn unitarity(s: &Spectrum, sigma: usize, omega: f64) -> f64 {
    PI * PI * RHO0 * s.a(sigma, omega)
}

#[test]
fn unitarity_limit_at_low_temperature() {
    // ρJ = 0.3 (T_K ~ 2e-2), T = 1e-6, Λ = 3, keep 300, Nz = 2: −πρ_0 Im T(ω) over
    // 10T ≤ |ω| ≤ 1e-3 (≪ T_K) must be 1: the phase shift π/2 of the screened spin. Without
    // the 1/√A_Λ it would read A_Λ = 1.099. (Λ = 2.5, keep 200, Nz = 4: worst 5.3e-3; keep 150:
    // 5.2e-2, truncation.)
    let t = 1e-6;
    let mut c = kondo(0.3, 3.0, 300, t);
    c.nrg.z_average = 2;
    let s = spectrum(&c, &SpectralOptions::at(t)).unwrap();
    assert_eq!(s.operator, SpectralOperator::TMatrix);
    assert!(!s.self_energy_trick());
    let window: Vec<f64> = s
        .frequencies()
        .into_iter()
        .filter(|w| w.abs() >= 10.0 * t && w.abs() <= 1e-3)
        .collect();
    let values: Vec<f64> = window.iter().map(|&w| unitarity(&s, 0, w)).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let worst = values.iter().fold(0.0f64, |m, v| m.max((v - 1.0).abs()));
    println!(
        "Nz = 2: mean −πρ_0 Im T = {mean:.5}, worst |· − 1| = {worst:.2e} over {} points, \
         at ω = 0: {:.4}",
        values.len(),
        unitarity(&s, 0, 0.0)
    );
    // measured 2026-12-01: worst 1.1e-3; bound 5e-3 (4.6×)
    assert!(worst < 5e-3, "worst {worst}");
    assert!((mean - 1.0).abs() < 5e-3, "mean {mean}");
}

#[test]
fn sum_rule_matches_the_thermodynamics() {
    // Σ W = Tr ρ{O_σ, O_σ†}. Exactly (round-off) against its local expectation value on shell 0
    // (the summary's right-hand side), and independently from the thermodynamics: at h = 0,
    //   {O_↑, O_↑†} + {O_↓, O_↓†} = (J²/4)(3/2 − 4 S·s_0) + 2K² (+ J K (S^z − S^z) = 0)
    // per A_Λ, so ΣW_σ = (J²(3/16 − ½⟨S·s_0⟩) + K²)/A_Λ with ⟨S·s_0⟩ = (∂F/∂ρJ)/(2A_Λ)
    // (Hellmann–Feynman), ∂F/∂ρJ the run's exact derivative at T = T_N.
    for (j, k) in [(0.3, 0.0), (0.25, 0.1)] {
        let mut c = common::kondo(j, 3.0, 120, 1e-6);
        c.model.k = k;
        c.derive = vec![Param::J];
        let records = common::run(&c);
        for n in [8, 14, 20] {
            let rec = &records[n];
            let mut plain = common::plain(c.clone());
            plain.nrg.t_min = rec.t;
            let s = spectrum(&plain, &SpectralOptions::at(rec.t)).unwrap();
            let a = s.header.chain.a_lambda;
            let (jp, kp) = (2.0 * j * a, 2.0 * k * a);
            let s_dot_s = rec.grad["J"] / (2.0 * a);
            let thermo = (jp * jp * (3.0 / 16.0 - 0.5 * s_dot_s) + kp * kp) / a;
            let w = s.sums[0].weight;
            let exact = (w - s.expected_weight[0]).abs() / w;
            let independent = (w - thermo).abs() / w;
            println!(
                "ρJ = {j} ρK = {k} T = {:.2e}: ΣW = {w:.8}, ⟨{{O,O†}}⟩ = {:.8} ({exact:.1e}), \
                 thermo {thermo:.8} ({independent:.1e}), ⟨S·s_0⟩ = {s_dot_s:.5}",
                rec.t, s.expected_weight[0]
            );
            // round-off over ~1e5 poles: measured ≤ 3e-14; 1e-12
            assert!(exact < 1e-12, "{exact:e}");
            assert_eq!(s.sums[0].weight, s.sums[1].weight);
            // conventional NRG thermodynamics (shell N alone, truncated) vs the full density
            // matrix: measured 2026-12-01 ≤ 1.7e-4 (relative); bound 1e-3 (6×)
            assert!(independent < 1e-3, "{independent:e}");
        }
    }
}

#[test]
fn perturbative_regime_follows_born_with_poor_mans_scaling() {
    // ρJ = 0.1 (T_K ~ 1e-5) at T = 1e-2 ≫ T_K: second-order Born, with ⟨S·s_0⟩ ≈ 0 and the
    // weight 3J²/16 spread like f_0's ρ_0, −πρ_0 Im T ≈ (3π²/16)(ρJ)², with the leading-log
    // running coupling ρJ(ω) = ρJ/(1 − ρJ ln(D/|ω|)) (poor man's scaling, d(ρJ)/d ln D = −(ρJ)²
    // for H = J S·s_0): small (≈ 0.02–0.05 ≪ 1) and featureless, rising as |ω| falls towards
    // T. Bare Born would be off by 2.6× at |ω| = 2T.
    let (j, t) = (0.1, 1e-2);
    let s = spectrum(&kondo(j, 3.0, 100, t), &SpectralOptions::at(t)).unwrap();
    let ratios: Vec<f64> = s
        .frequencies()
        .into_iter()
        .filter(|w| w.abs() >= 2.0 * t && w.abs() <= 0.5)
        .map(|w| {
            let running = j / (1.0 - j * (1.0 / w.abs()).ln());
            unitarity(&s, 0, w) / (3.0 * PI * PI / 16.0 * running * running)
        })
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let worst = ratios.iter().fold(0.0f64, |m, r| m.max((r - 1.0).abs()));
    let peak = s
        .frequencies()
        .iter()
        .map(|&w| unitarity(&s, 0, w))
        .fold(0.0f64, f64::max);
    println!(
        "T ≫ T_K: ratio to scaled Born: mean {mean:.4}, worst |· − 1| {worst:.3}; max {peak:.4}"
    );
    // measured 2026-12-01: mean 0.92, worst 0.175 (Λ = 3 discretization wiggles, no
    // z-averaging); bounds 0.15 on the mean (to 1, 2×) and 0.5 pointwise (2.9×); the whole
    // spectrum stays below 0.1 (measured max 0.05)
    assert!((mean - 1.0).abs() < 0.15, "mean {mean}");
    assert!(worst < 0.5, "worst {worst}");
    assert!(peak < 0.1, "max {peak}");
}

#[test]
fn particle_hole_symmetric_at_zero_potential_scattering() {
    // K = 0: the Kondo model is particle–hole symmetric, so A_T(ω) = A_T(−ω); K ≠ 0 breaks it.
    let t = 1e-4;
    let asym = |k: f64| {
        let mut c = kondo(0.25, 3.0, 100, t);
        c.model.k = k;
        let s = spectrum(&c, &SpectralOptions::at(t)).unwrap();
        let max = s
            .frequencies()
            .iter()
            .map(|&w| s.a(0, w))
            .fold(0.0f64, f64::max);
        s.frequencies()
            .iter()
            .map(|&w| (s.a(0, w) - s.a(0, -w)).abs() / max)
            .fold(0.0f64, f64::max)
    };
    let (sym, broken) = (asym(0.0), asym(0.1));
    println!("max |A(ω) − A(−ω)|/max A: K = 0 {sym:.1e}, K = 0.1 {broken:.1e}");
    // measured 2026-12-01: 8.6e-15 (round-off: the (Q, S_z) ↔ (−Q, S_z) blocks mirror each
    // other) and 0.30; bounds 1e-12 and 0.03 (10× below)
    assert!(sym < 1e-12, "{sym:e}");
    assert!(broken > 3e-2, "{broken:e}");
}

const T: f64 = 1e-2;

/// 16 log-spaced |ω| per sign in [2T, 1].
fn omegas() -> Vec<f64> {
    let n = 16;
    let pos: Vec<f64> = (0..n)
        .map(|i| 2.0 * T * (1.0 / (2.0 * T)).powf(i as f64 / (n - 1) as f64))
        .collect();
    pos.iter()
        .rev()
        .map(|w| -w)
        .chain(pos.iter().copied())
        .collect()
}

/// A_T of both spins at each ω, and per ω its parts (per part, both spins).
type Values = Vec<[f64; 2]>;
type Parts = Vec<Vec<[f64; 2]>>;

/// A_T of both spins and its parts at `omega`, every pole broadened without bins.
fn unbinned(
    config: &RunConfig,
    kept: Option<&[usize]>,
    omega: &[f64],
) -> (Spectrum, Values, Parts) {
    let probe = Probe {
        frozen_kept: kept.map(<[usize]>::to_vec),
        unbinned: Some(omega.to_vec()),
        ..Probe::default()
    };
    let s = spectrum_probed(
        config,
        &SpectralOptions::at(T),
        &probe,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
    .unwrap();
    let pts = s.evaluate_unbinned().unwrap();
    let at = |w: f64| pts.iter().find(|(p, _)| p.omega == w).unwrap().clone();
    let values = omega.iter().map(|&w| at(w).0.a).collect();
    let parts = omega.iter().map(|&w| at(w).1.a).collect();
    (s, values, parts)
}

#[test]
fn derivatives_in_j_and_k_match_finite_differences() {
    // ρJ = 0.25, ρK = 0.05 (no symmetry to hide a sign), Λ = 3, keep 60, 12 shells, T = 1e-2:
    // ∂A_T and ∂²A_T (O_σ depends on J and K explicitly, the states implicitly) against
    // central differences of unbinned A_T at frozen kept counts (step 1e-5; second order from
    // the AD gradient at ±δ, ±2δ), errors relative to max_ω A_T.
    let omega = omegas();
    let mut base = common::kondo(0.25, 3.0, 60, 6e-3);
    base.model.k = 0.05;
    let params = [Param::J, Param::K];
    let mut dual = base.clone();
    dual.derive = params.to_vec();
    let (s, a, parts) = unbinned(&dual, None, &omega);
    let kept = s.kept.clone();
    let max = a.iter().fold(0.0f64, |m, v| m.max(v[0].abs()));
    let plain = common::plain(base.clone());
    // a dual run's (binned) values are a plain run's, bit for bit
    let opts = SpectralOptions::at(T);
    let (p, d) = (
        spectrum(&plain, &opts).unwrap(),
        spectrum(&dual, &opts).unwrap(),
    );
    assert_eq!(p.bins, d.bins);
    assert_eq!(p.sums, d.sums);
    let shifted = |c: &RunConfig, p: Param, d: f64| {
        let mut c = c.clone();
        let v = c.model.get(p);
        c.model.set(p, v + d);
        c
    };
    let step = 1e-5;
    let (mut worst1, mut worst2) = (0.0f64, [[0.0f64; 2]; 2]);
    for (i, &p) in params.iter().enumerate() {
        let (_, up, _) = unbinned(&shifted(&plain, p, step), Some(&kept), &omega);
        let (_, down, _) = unbinned(&shifted(&plain, p, -step), Some(&kept), &omega);
        // the AD gradient at θ ± δ, ± 2δ: the 4-point stencil errs by δ⁴∂⁵A/30
        let g: Vec<Parts> = [2.0, 1.0, -1.0, -2.0]
            .iter()
            .map(|&k| unbinned(&shifted(&dual, p, k * step), Some(&kept), &omega).2)
            .collect();
        for k in 0..omega.len() {
            for sg in 0..2 {
                let fd = (up[k][sg] - down[k][sg]) / (2.0 * step);
                let e = (parts[k][i][sg] - fd).abs() / max;
                worst1 = worst1.max(e);
                for jj in 0..params.len() {
                    let pair = s.pair_part(i, jj).unwrap();
                    let v = |m: usize| g[m][k][jj][sg];
                    let fd2 = (-v(0) + 8.0 * v(1) - 8.0 * v(2) + v(3)) / (12.0 * step);
                    worst2[i][jj] = worst2[i][jj].max((parts[k][pair][sg] - fd2).abs() / max);
                }
            }
        }
    }
    println!("second order per pair (J, K): {worst2:?}");
    let worst2 = worst2.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    println!("∂A_T vs FD: {worst1:.1e}, ∂²A_T vs FD of ∂A_T: {worst2:.1e} (max A_T {max:.3e})");
    // measured 2026-12-01: first order 3.6e-8 (the central difference's δ² truncation),
    // second order ≤ 8.6e-9 (a 2-point stencil gave 2.1e-5: truncation); bound 1e-6 (the
    // issue's, as for the SIAM; ≥ 28×)
    assert!(worst1 < 1e-6, "{worst1:e}");
    assert!(worst2 < 1e-6, "{worst2:e}");
}

// ---- the CLI contract ------------------------------------------------------------------------

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn spectrum_of_the_kondo_preset_writes_the_t_matrix() {
    // `dnrg spectrum kondo-model` (ρJ = 0.2, T_K ~ 3e-3, Λ = 2.5) at T = 1e-6, keep 250, with
    // ∂/∂J, ∂/∂K
    let sb = Sandbox::new();
    let args = [
        "spectrum",
        "kondo-model",
        "--set",
        "nrg.keep=250",
        "--set",
        "nrg.T_min=1e-6",
        "--derive",
        "J,K",
        "--quiet",
    ];
    let out = sb.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = lines(&out);
    let (head, rest) = recs.split_first().unwrap();
    let (summary, points) = rest.split_last().unwrap();
    assert_eq!(head["type"], "header");
    assert_eq!(head["operator"], "T-matrix");
    assert_eq!(head["normalization"]["rho0"], RHO0);
    assert_eq!(head["self_energy_trick"], false);
    assert_eq!(head["derive"], serde_json::json!(["J", "K"]));
    for p in points {
        assert_eq!(p["type"], "point");
        assert_eq!(
            p["A"], p["A_raw"],
            "no self-energy for the T-matrix: A_raw = A"
        );
        assert!(p["Sigma_re"].is_null() && p["Sigma_im"].is_null(), "{p}");
        assert!(p["A"].as_f64().unwrap() >= 0.0);
        for key in ["J", "K"] {
            assert!(p["dA"][key].is_f64() && p["dA_raw"][key].is_f64(), "{p}");
            assert!(p["dSigma_re"][key].is_null(), "{p}");
        }
        assert!(p["d2A"]["J,K"].is_f64(), "{p}");
    }
    assert_eq!(summary["type"], "summary");
    let up = &summary["sum_rule"]["up"];
    let (w, expected) = (
        up["weight"].as_f64().unwrap(),
        up["expected"].as_f64().unwrap(),
    );
    // ΣW against Tr ρ{O, O†}: round-off, measured 1.4e-15; bound 1e-12
    assert!((w - expected).abs() < 1e-12, "{w} vs {expected}");
    assert!(summary["sum_rule"]["W"].as_f64().unwrap() < 1e-12);
    // unitarity: the mean of −πρ_0 Im T over 10T ≤ |ω| ≤ 100T; measured 2026-12-01 0.9970
    // (no z-averaging; keep 400: 0.990, keep 150: 0.949, truncation); bound 2% (6.6×)
    let unitarity = summary["piRhoT0"].as_f64().unwrap();
    println!(
        "piRhoT0 = {unitarity}, at ω = 0: {}",
        summary["piRhoT_at_0"]
    );
    assert!((unitarity - 1.0).abs() < 0.02, "{unitarity}");
    assert!(summary.get("n_d").is_none() && summary.get("piGammaA0").is_none());
}
