//! Exact derivatives of the FDM spectral function (issue 9, item 3): against central finite
//! differences of runs that truncate identically (kept counts frozen), on unbinned poles for
//! |ω| > T; a dual run's values against a plain run's, bit for bit; the sum rules of the
//! derivatives on every run. (∂A/∂ε_d at U = 0 against the exact finite chain sits next to A's
//! comparison in tests/spectral.rs.)
//!
//! Small runs: Λ = 3, 60 kept states, 12 shells, T = 1e-2, the design note's §7 setting.

mod common;

use dnrg::params::{FieldKind, Param, RunConfig, SymmetryChoice};
use dnrg::spectral::{
    DdSkip, PointParts, Probe, SpectralOptions, SpectralPoint, Spectrum, spectrum, spectrum_probed,
};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const T: f64 = 1e-2;

/// Asymmetric SIAM, U/πΓ = 1.3, the field on the impurity (h = 0, derived at h = 0).
fn base() -> RunConfig {
    let mut c = common::siam(0.4, -0.15, 0.1, 3.0, 60, 6e-3);
    c.model.field = FieldKind::Impurity;
    c
}

const ALL: [Param; 4] = [Param::EpsD, Param::U, Param::Gamma, Param::H];

fn compute(config: &RunConfig, probe: &Probe) -> Spectrum {
    probed(config, T, probe)
}

fn probed(config: &RunConfig, t: f64, probe: &Probe) -> Spectrum {
    spectrum_probed(
        config,
        &SpectralOptions::at(t),
        probe,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
    .unwrap()
}

/// 16 log-spaced |ω| per sign in [2T, 1]: where the comparison is made.
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

/// Where every pole is broadened without bins: a coarse Kramers–Kronig grid (10 points per
/// decade from 1e-5, below every pole that carries weight, to 100, both signs, and 0) with the
/// comparison's ω in it. The self-energy trick then runs on this grid: its derivatives are
/// compared for the same algorithm, whatever the grid.
fn grid(omega: &[f64]) -> Vec<f64> {
    let (lo, hi, per_decade) = (1e-5f64, 100.0f64, 10.0);
    let steps = ((hi / lo).log10() * per_decade).ceil() as usize;
    let mut g: Vec<f64> = (0..=steps)
        .map(|i| lo * (hi / lo).powf(i as f64 / steps as f64))
        .flat_map(|x| [x, -x])
        .chain([0.0])
        .chain(omega.iter().copied())
        .collect();
    g.sort_by(f64::total_cmp);
    g.dedup();
    g
}

type Points = Vec<(SpectralPoint, PointParts)>;

/// The unbinned points at `omega` of a run of `config` (kept counts frozen to `kept`).
fn points(config: &RunConfig, kept: Option<&[usize]>, omega: &[f64]) -> (Spectrum, Points) {
    let probe = Probe {
        frozen_kept: kept.map(<[usize]>::to_vec),
        unbinned: Some(grid(omega)),
        ..Probe::default()
    };
    let s = compute(config, &probe);
    let all = s.evaluate_unbinned().unwrap();
    let at: Points = omega
        .iter()
        .map(|w| all.iter().find(|(p, _)| p.omega == *w).unwrap().clone())
        .collect();
    (s, at)
}

fn shifted(c: &RunConfig, p: Param, d: f64) -> RunConfig {
    let mut c = c.clone();
    let v = c.model.get(p);
    c.model.set(p, v + d);
    c
}

/// The quantities compared, per spin: A, A_raw, Re Σ, Im Σ (value, part x).
fn quantities(p: &SpectralPoint, d: &PointParts, x: Option<usize>) -> [[f64; 2]; 4] {
    match x {
        None => [p.a, p.a_raw, p.sigma.map(|z| z.re), p.sigma.map(|z| z.im)],
        Some(x) => [
            d.a[x],
            d.a_raw[x],
            d.sigma[x].map(|z| z.re),
            d.sigma[x].map(|z| z.im),
        ],
    }
}

const NAMES: [&str; 4] = ["A", "A_raw", "Re Σ", "Im Σ"];

#[test]
fn derivatives_match_finite_differences() {
    let omega = omegas();
    let mut dual = base();
    dual.derive = ALL.to_vec();
    let (s, ad) = points(&dual, None, &omega);
    assert!(s.self_energy_trick());
    let kept = s.kept.clone();
    // errors relative to max_ω |A| (A and A_raw alike, the scale of the spectrum) and max_ω |Σ|
    let max = |q: usize| {
        ad.iter()
            .map(|(p, d)| {
                let v = quantities(p, d, None)[q];
                v[0].abs().max(v[1].abs())
            })
            .fold(0.0, f64::max)
    };
    let a_max = max(0).max(max(1));
    let scale = [a_max, a_max, max(2).max(max(3)), max(2).max(max(3))];
    let mut plain = base();
    plain.derive.clear();
    // worst relative error per quantity, first and second order
    let mut worst = [[0.0f64; 4]; 2];
    for (i, &p) in ALL.iter().enumerate() {
        // Steps: central differences err by δ²·∂³A/6 (first order), the 4-point stencil of the
        // AD gradient by δ⁴·∂⁵A/30 (second order), and both by the round-off of what they
        // difference over δ. Γ = 0.1 is the smallest scale, hence its smaller steps. Measured:
        // 2-point stencils of the gradient at 1e-5 erred by 2e-7 (truncation); the 4-point one
        // in h gave 4.7e-5, 1.2e-6, 9.4e-8, 1.9e-7 at 3e-5, 1e-5, 5e-6, 3e-6 for the improved A
        // (truncation, then round-off of ∂A/∂h, which grows like Λ^(N/2) in rescaled units).
        let (d1, d2) = match p {
            Param::Gamma => (1e-6, 3e-6),
            Param::H => (3e-6, 5e-6),
            _ => (3e-6, 1e-5),
        };
        let run = |c: RunConfig| points(&c, Some(&kept), &omega).1;
        let (up, down) = (run(shifted(&plain, p, d1)), run(shifted(&plain, p, -d1)));
        let g: Vec<Points> = [2.0, 1.0, -1.0, -2.0]
            .iter()
            .map(|&k| run(shifted(&dual, p, k * d2)))
            .collect();
        for k in 0..omega.len() {
            let exact = |x| quantities(&ad[k].0, &ad[k].1, Some(x));
            let (u, dn) = (
                quantities(&up[k].0, &up[k].1, None),
                quantities(&down[k].0, &down[k].1, None),
            );
            let first = exact(i);
            for q in 0..4 {
                for sigma in 0..2 {
                    let fd = (u[q][sigma] - dn[q][sigma]) / (2.0 * d1);
                    let e = (fd - first[q][sigma]).abs() / scale[q];
                    worst[0][q] = worst[0][q].max(e);
                }
            }
            for j in 0..ALL.len() {
                let pair = exact(s.pair_part(i, j).unwrap());
                let gj: Vec<[[f64; 2]; 4]> = g
                    .iter()
                    .map(|r| quantities(&r[k].0, &r[k].1, Some(j)))
                    .collect();
                for q in 0..4 {
                    for sigma in 0..2 {
                        let v = |m: usize| gj[m][q][sigma];
                        let fd = (-v(0) + 8.0 * v(1) - 8.0 * v(2) + v(3)) / (12.0 * d2);
                        let e = (fd - pair[q][sigma]).abs() / scale[q];
                        worst[1][q] = worst[1][q].max(e);
                    }
                }
            }
        }
    }
    for (order, w) in worst.iter().enumerate() {
        let text: Vec<String> = NAMES
            .iter()
            .zip(w)
            .map(|(n, e)| format!("∂{}{n} {e:.1e}", if order == 1 { "²" } else { "" }))
            .collect();
        println!("order {}: {}", order + 1, text.join(", "));
    }
    // Measured 2026-12-02 (ε_d, U, Γ, h at h = 0, both spins, relative to max|A| or max|Σ|):
    // first order ≤ 2.0e-8 (A_raw), second ≤ 1.2e-7 (A_raw, ∂²/∂h²). Bound: the 1e-6,
    // ≥ 8× those.
    for (order, w) in worst.iter().enumerate() {
        for (q, e) in w.iter().enumerate() {
            assert!(*e < 1e-6, "order {}, {}: {e:e}", order + 1, NAMES[q]);
        }
    }
}

#[test]
fn a_dual_run_has_the_plain_values_bit_for_bit() {
    // The value part never depends on the derivative parts (same products in the same order),
    // with the self-energy trick and the spin mirror (h = 0, h derived) and without (h ≠ 0),
    // in (Q, S_z) blocks; and in (Q, S) blocks (h = 0, the SU(2)-scalar parameters). The blocks
    // are pinned: `auto` picks (Q, S_z) only for a run differentiated in h.
    for (h, symmetry, derive) in [
        (0.0, SymmetryChoice::Qsz, &ALL[..]),
        (0.02, SymmetryChoice::Qsz, &ALL[..]),
        (0.0, SymmetryChoice::Qs, &ALL[..3]),
    ] {
        let mut plain = base();
        plain.model.h = h;
        plain.nrg.symmetry = symmetry;
        let mut dual = plain.clone();
        dual.derive = derive.to_vec();
        let opts = SpectralOptions::at(T);
        let (a, b) = (
            spectrum(&plain, &opts).unwrap(),
            spectrum(&dual, &opts).unwrap(),
        );
        assert_eq!(a.bins, b.bins, "h = {h}: bins of A");
        assert_eq!(a.bins_f, b.bins_f, "h = {h}: bins of F");
        assert_eq!(a.sums, b.sums, "h = {h}: sums");
        assert_eq!(a.shell_weights, b.shell_weights);
        let omega = a.frequencies();
        let (pa, pb) = (a.evaluate(&omega), b.evaluate_with_parts(&omega));
        for (x, (y, _)) in pa.iter().zip(&pb) {
            assert_eq!(x, y, "h = {h}, ω = {}", x.omega);
        }
        assert!(b.moments.is_some() && a.moments.is_none());
    }
}

#[test]
fn sum_rules_of_the_derivatives_hold_to_round_off() {
    // Σ W = 1 for every parameter value, so Σ ∂W = Σ ∂²W = 0 exactly; with the trick
    // Σ W_F = ⟨n_σ̄⟩ and so Σ ∂W_F = ∂⟨n_σ̄⟩; Tr R^x_{N−1} = Σ_{M≥N} ∂w_M in the sweep. Residuals
    // are round-off in sums of terms as large as Σ|∂W| (inter-cluster poles cancel in pairs),
    // so they are stated relative to it.
    let runs = [
        (base(), T),
        (common::siam(0.0, -0.05, 0.1, 3.0, 100, 1e-3), 1e-3),
        (
            {
                let mut c = common::siam(0.6, -0.3, 0.06, 3.0, 100, 3e-5);
                c.model.field = FieldKind::Impurity;
                c
            },
            3e-5,
        ),
        (
            {
                let mut c = base();
                c.model.h = 0.01;
                c
            },
            T,
        ),
    ];
    let mut worst = [0.0f64; 5];
    for (mut config, t) in runs {
        let params: Vec<Param> = if config.model.field == FieldKind::Impurity {
            ALL.to_vec()
        } else {
            vec![Param::EpsD, Param::U, Param::Gamma]
        };
        config.derive = params;
        let s = spectrum(&config, &SpectralOptions::at(t)).unwrap();
        let r = s.sum_rule_residuals();
        let first = s.parts().first();
        let relative = |x: usize| {
            let abs = s.sum_parts[0].weight_abs[x].max(s.sum_parts[1].weight_abs[x]);
            r.weight_parts[x] / abs
        };
        let d1 = (0..first).map(relative).fold(0.0, f64::max);
        let d2 = (first..s.parts().parts()).map(relative).fold(0.0, f64::max);
        // Tr R^x_{N−1} − Σ_{M≥N} ∂w_M against Σ_N |∂w_N|, the largest of the parts of the same
        // order (w_N's parts carry ℰ/T, up to 1e4 here; odd parts in h vanish at h = 0)
        let size = |x: usize| -> f64 { s.shell_weight_parts.iter().map(|w| w[x].abs()).sum() };
        let parts = s.parts().parts();
        let scale1 = (0..first).map(size).fold(0.0, f64::max);
        let scale2 = (first..parts).map(size).fold(0.0, f64::max);
        let trace = (0..parts)
            .map(|x| s.trace_residual_parts[x] / if x < first { scale1 } else { scale2 })
            .fold(0.0, f64::max);
        let f = r
            .weight_f_parts
            .as_ref()
            .map_or(0.0, |v| v.iter().fold(0.0f64, |a, &b| a.max(b)));
        println!(
            "U = {}, ε_d = {}, h = {}: |ΣW − 1| {:.1e}, |Σ∂W|/Σ|∂W| {d1:.1e}, |Σ∂²W|/Σ|∂²W| \
             {d2:.1e}, |Σ∂W_F − ∂n| {f:.1e}, trace parts {trace:.1e}",
            config.model.u, config.model.eps_d, config.model.h, r.weight
        );
        for (w, v) in worst.iter_mut().zip([r.weight, d1, d2, f, trace]) {
            *w = w.max(v);
        }
    }
    // Measured 2026-12-02: |ΣW − 1| ≤ 9.2e-14; |Σ∂W| ≤ 5.6e-15 and |Σ∂²W| ≤ 2.3e-15 of Σ|∂W| and
    // Σ|∂²W|; |Σ∂W_F − ∂⟨n_σ̄⟩| ≤ 2.3e-10 (absolute; ∂n ~ 1–100); the sweep's trace of R^x
    // ≤ 5.1e-11 of Σ|∂w_N|. The last two are worst at T = 3e-5, where ∂ℰ/T ~ 1e4 makes w_N's
    // parts differences of large numbers. Bounds ≥ 4× those: round-off of sums over ~1e5 poles.
    assert!(worst[0] < 1e-12, "ΣW − 1: {:e}", worst[0]);
    assert!(worst[1] < 1e-13, "Σ∂W: {:e}", worst[1]);
    assert!(worst[2] < 1e-13, "Σ∂²W: {:e}", worst[2]);
    assert!(worst[4] < 2e-10, "Tr R^x: {:e}", worst[4]);
    assert!(worst[3] < 1e-9, "Σ∂W_F − ∂⟨n_σ̄⟩: {:e}", worst[3]);
}

/// A longer chain than `base`'s, so that most shells lie far above T.
fn long_chain() -> (RunConfig, f64) {
    let t = 1e-5;
    let mut c = common::siam(0.4, -0.15, 0.1, 3.0, 60, t);
    c.model.field = FieldKind::Impurity;
    c.derive = ALL.to_vec();
    (c, t)
}

/// The long chain's spectrum with the DD sectors left out as `dd_skip` says.
fn with_skip(dd_skip: DdSkip) -> Spectrum {
    let (config, t) = long_chain();
    let probe = Probe {
        dd_skip,
        ..Probe::default()
    };
    probed(&config, t, &probe)
}

#[test]
fn shells_far_above_t_leave_out_their_discarded_sector_without_changing_the_spectrum() {
    // Shells whose discarded states weigh below e^{−200} at T set ρ^D to 0 and never form the DD
    // blocks of the operators' parts; their share of the sweep takes only the kept columns of
    // U e^S. Against the same run with every shell whole, each quantity and each of its parts
    // relative to its own maximum over ω.
    let run = |dd_skip| {
        let s = with_skip(dd_skip);
        let omega = s.frequencies();
        s.evaluate_with_parts(&omega)
    };
    let (skip, whole) = (run(DdSkip::Auto), run(DdSkip::Never));
    let parts = skip[0].1.a.len();
    let mut worst = 0.0f64;
    for x in std::iter::once(None).chain((0..parts).map(Some)) {
        for q in 0..4 {
            let of = |pts: &Points, k: usize| quantities(&pts[k].0, &pts[k].1, x)[q];
            let max = (0..whole.len())
                .flat_map(|k| of(&whole, k))
                .fold(0.0f64, |m, v| m.max(v.abs()));
            if max == 0.0 {
                // a part that vanishes identically must vanish with the skip too (a relative
                // error 0/0 would be dropped by max)
                let skipped = (0..skip.len()).flat_map(|k| of(&skip, k));
                assert!(
                    skipped.into_iter().all(|v| v == 0.0),
                    "part {x:?}, quantity {q}"
                );
                continue;
            }
            for k in 0..whole.len() {
                for sigma in 0..2 {
                    let e = (of(&skip, k)[sigma] - of(&whole, k)[sigma]).abs() / max;
                    worst = worst.max(e);
                }
            }
        }
    }
    println!("skipping the DD sector: worst relative change {worst:.1e}");
    // Measured 2026-12-02: 2.0e-14, with 15 of the 23 shells skipped (the dropped weights are
    // below e^{−200}; what differs is the round-off of the kept-column sweep). Bound 1e-12: 50×
    // that, and far below the 1e-6 of the finite-difference checks.
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn a_failed_skip_bound_runs_the_chain_again_whole() {
    // Skipping the DD sector of every shell but the last breaks the bound once Z is known: the
    // chain is run again with every shell whole, so the result is that run's, bit for bit.
    let (forced, whole) = (with_skip(DdSkip::AllButLast), with_skip(DdSkip::Never));
    assert_eq!(forced.bins, whole.bins);
    assert_eq!(forced.moments, whole.moments);
    assert_eq!(forced.sums, whole.sums);
}
