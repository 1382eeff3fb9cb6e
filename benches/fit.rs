//! `cargo bench --bench fit`: runs a fit needs with the exact Jacobian (Levenberg–Marquardt,
//! one derivative run per iteration) against a derivative-free Nelder–Mead on the same
//! problems, stopped when it is as close to the LM optimum as LM's own stop rule (1e-3
//! standard errors) and, looser, 0.1 standard errors. Nelder–Mead is given every benefit: it
//! is stopped by an oracle that knows the answer, and its runs carry no derivatives.
//!
//! Problems (issue 10): ⟨n_d⟩ by ε_d, and (ε_d, Γ) from a Tχ_imp(T) curve, both with targets
//! made at another keep and twist z; mixed-valence preset, Λ = 3, 150 kept, T_min = 1e-6.

use dnrg::workflow::fit::{self, FitSpec};
use std::path::Path;
use std::time::Instant;

const SMALL: &str = "\"nrg.keep\" = 150\n\"nrg.Lambda\" = 3.0\n\"nrg.T_min\" = 1e-6\n";
const TARGET: &str =
    "\"nrg.keep\" = 250\n\"nrg.Lambda\" = 3.0\n\"nrg.T_min\" = 1e-6\n\"nrg.z\" = 0.7\n";

fn spec(dir: &Path, name: &str, text: &str) -> FitSpec {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    fit::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn compare(name: &str, s: &FitSpec) {
    let t0 = Instant::now();
    let lm = fit::levenberg_marquardt(s, &mut |_| {}).unwrap();
    let lm_time = t0.elapsed().as_secs_f64();
    for factor in [1e-3, 0.1] {
        let tol: Vec<f64> = lm.std_err.iter().map(|e| factor * e).collect();
        let start = s.start();
        let step: Vec<f64> = start.iter().map(|x| 0.25 * x.abs().max(1e-3)).collect();
        let t0 = Instant::now();
        let (x, _, runs) = fit::nelder_mead(
            |x| {
                let inside = x
                    .iter()
                    .zip(&s.free)
                    .all(|(v, f)| *v >= f.min && *v <= f.max);
                if !inside {
                    return f64::INFINITY;
                }
                s.evaluate(x, false).map_or(f64::INFINITY, |e| e.cost)
            },
            &start,
            &step,
            400,
            |x, _| {
                x.iter()
                    .zip(&lm.theta)
                    .zip(&tol)
                    .all(|((a, b), t)| (a - b).abs() <= *t)
            },
        );
        let reached = x
            .iter()
            .zip(&lm.theta)
            .zip(&tol)
            .all(|((a, b), t)| (a - b).abs() <= *t);
        println!(
            "{name:<28} tol {factor:>5} se | LM {:>2} derivative runs {:>6.2} s | Nelder–Mead {:>4} runs{} {:>6.2} s",
            lm.runs,
            lm_time,
            runs,
            if reached { "" } else { " (not reached)" },
            t0.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let dir = tempfile::TempDir::new().unwrap();
    let d = dir.path();
    // 1. n_d by eps_d
    let eps_true = -0.0197;
    let probe = spec(
        d,
        "probe.toml",
        &format!(
            "preset = \"mixed-valence\"\n[set]\n{TARGET}[free]\n\"model.eps_d\" = {{ start = {eps_true} }}\n\
             [[target]]\nobservable = \"n_d\"\nvalue = 0.0\n"
        ),
    );
    let n_target = probe.evaluate(&[eps_true], false).unwrap().residuals[0];
    let nd = spec(
        d,
        "nd.toml",
        &format!(
            "preset = \"mixed-valence\"\n[set]\n{SMALL}[free]\n\"model.eps_d\" = {{ start = -0.01, min = -0.5, max = 0.5 }}\n\
             [[target]]\nobservable = \"n_d\"\nvalue = {n_target:?}\nsigma = 0.001\n"
        ),
    );
    compare("n_d = 0.8 by eps_d", &nd);

    // 2. (eps_d, Gamma) from a Tchi_imp curve
    let curve = spec(
        d,
        "curve.toml",
        &format!(
            "preset = \"mixed-valence\"\n[set]\n{TARGET}[free]\n\"model.eps_d\" = {{ start = -0.01 }}\n\
             \"model.Gamma\" = {{ start = 0.01 }}\n[[target]]\nobservable = \"n_d\"\nvalue = 0.0\n"
        ),
    )
    .evaluate(&[-0.01, 0.01], false)
    .unwrap();
    let mut csv = String::from("T,value,sigma\n");
    for sh in curve
        .shells
        .iter()
        .filter(|sh| (1e-5..=0.1).contains(&sh.t))
    {
        csv.push_str(&format!("{:?},{:?},0.002\n", sh.t, sh.obs.tchi_imp));
    }
    std::fs::write(d.join("chi.csv"), csv).unwrap();
    let chi = spec(
        d,
        "chi.toml",
        &format!(
            "preset = \"mixed-valence\"\n[set]\n{SMALL}[free]\n\
             \"model.eps_d\" = {{ start = -0.015, min = -0.5, max = 0.5 }}\n\
             \"model.Gamma\" = {{ start = 0.013, min = 0.001, max = 0.1 }}\n\
             [[target]]\nobservable = \"Tchi_imp\"\ncurve = \"chi.csv\"\n"
        ),
    );
    compare("(eps_d, Gamma) from Tchi(T)", &chi);
}
