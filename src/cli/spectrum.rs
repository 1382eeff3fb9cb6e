//! `dnrg spectrum`: the FDM spectral function of the impurity level at a temperature T (for the
//! Kondo model the T-matrix's, see [`t_matrix_summary`]), with its derivatives in the derived
//! parameters (`--derive`, or the preset's `derive` list). The header's `"operator"` says which
//! (`"d"` or `"T-matrix"`); the T-matrix's Σ fields are null (CSV: NaN).
//!
//! Records (JSON Lines; names are a contract: extend, never rename):
//! `{"type":"header",…}` with the resolved parameters, T, the broadening, the grid and `derive`;
//! one `{"type":"point","omega":…,"A":…,"A_raw":…,"Sigma_re":…,"Sigma_im":…}` per frequency (plus
//! `"A_up"`, `"A_down"` when spin-resolved: h ≠ 0 or h derived); `{"type":"summary",
//! "sum_rule":{…},"n_d_spectral":…,"n_d":…,"piGammaA0":…,"friedel":…}`. With the self-energy
//! trick (the default when U ≠ 0; `--raw` turns it off) A is the improved spectral function and
//! A_raw the FDM one; without it A = A_raw and Σ = 0. `sum_rule` then also has `F_up`, `F_down`:
//! Σ W_F against ⟨n_σ̄⟩.
//!
//! Derivatives (spin averages, like A): `"dA":{"θ":…}`, `"d2A":{"θ,φ":…}` (θ before φ in the
//! derive order, as `dnrg run`'s `hess`), and the same for the raw A (`dA_raw`, `d2A_raw`) and Σ
//! (`dSigma_re`, `dSigma_im`, `d2Sigma_re`, `d2Sigma_im`); per spin `dA_up`, `dA_down`, `d2A_up`,
//! `d2A_down` when spin-resolved (∂A_σ/∂h is odd in σ: its average is 0 at h = 0). The summary's
//! `sum_rule` adds the largest residuals over the spins: `"W"` (Σ W − 1), `"dW":{"θ":…}` and
//! `"d2W":{"θ,φ":…}` (Σ ∂W and Σ ∂²W, exactly 0), with the trick `"dW_F"`, `"d2W_F"`
//! (Σ ∂W_F − ∂⟨n_σ̄⟩); the summary also has `"dn_d":{"θ":…}`, `"d2n_d":{"θ,φ":…}` from the
//! density matrix.
//!
//! CSV has the point columns only: `omega,A,A_raw[,A_up,A_down],Sigma_re,Sigma_im`, then per
//! derivative `dA_θ`, `d2A_θ_φ`, `dA_raw_θ`, `d2A_raw_θ_φ`, `dSigma_re_θ`, `dSigma_im_θ`,
//! `d2Sigma_re_θ_φ`, `d2Sigma_im_θ_φ` and, spin-resolved, `dA_up_θ`, `dA_down_θ`, `d2A_up_θ_φ`,
//! `d2A_down_θ_φ` (the earlier columns keep their places). With `--out FILE` nothing is written
//! unless the spectrum is complete (the same temporary file as `dnrg run`).

use super::run::{Interrupt, Sink};
use super::{CliError, PresetArgs};
use clap::Args;
use dnrg::output::Format;
use dnrg::spectral::{
    PointParts, SpectralOperator, SpectralOptions, SpectralPoint, Spectrum,
    spectrum_cancellable as compute,
};
use serde_json::{Value, json};
use std::f64::consts::PI;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SpectrumArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    /// Temperature of the density matrix [default: the preset's nrg.T_min]
    #[arg(long = "T", value_name = "T")]
    pub t: Option<f64>,
    /// Width b of the log-Gaussian kernel
    #[arg(long, value_name = "B", default_value_t = SpectralOptions::at(1.0).b)]
    pub b: f64,
    /// Logarithmic bins per decade for the poles
    #[arg(long, value_name = "N", default_value_t = SpectralOptions::at(1.0).bins_per_decade)]
    pub bins_per_decade: usize,
    /// Output frequencies per decade (each sign)
    #[arg(long, value_name = "N", default_value_t = SpectralOptions::at(1.0).points_per_decade)]
    pub points_per_decade: usize,
    /// No self-energy trick: A is the raw FDM spectral function (the trick is on by default
    /// when U ≠ 0)
    #[arg(long)]
    pub raw: bool,
    /// Output format: jsonl (header, points, summary) or csv (the points)
    #[arg(long, value_name = "jsonl|csv", default_value = "jsonl")]
    pub format: Format,
    /// Write to FILE instead of stdout (only a complete spectrum is written)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// No progress output on stderr
    #[arg(long)]
    pub quiet: bool,
}

pub fn spectrum(args: SpectrumArgs) -> Result<ExitCode, CliError> {
    let preset = args.preset.load()?;
    let config = &preset.config;
    dnrg::estimate::check_spectrum(config)
        .map_err(|e| CliError::new(format!("{}: {e}", preset.name)))?;
    let mut opts = SpectralOptions::at(args.t.unwrap_or(config.nrg.t_min));
    opts.b = args.b;
    opts.bins_per_decade = args.bins_per_decade;
    opts.points_per_decade = args.points_per_decade;
    opts.self_energy_trick = !args.raw;
    if args.out.is_none() {
        super::check_stdout()?;
    }
    let mut sink = Sink::open(args.out.as_deref())?;
    // a signal cancels the computation (or exits after the grace period, removing the
    // temporary file); nothing is written either way
    let interrupt = Interrupt::install(sink.temp_path(), args.quiet);
    if !args.quiet {
        eprintln!("spectrum: {} at T = {:e}", preset.name, opts.t);
    }
    let s = compute(config, &opts, interrupt.flag())
        .map_err(|e| CliError::new(format!("{}: {e}", preset.name)))?;
    let (Some(s), None) = (s, interrupt.received()) else {
        let signal = interrupt.received().unwrap_or(super::signals::SIGINT);
        if !args.quiet {
            eprintln!("interrupted; nothing was written");
        }
        return Ok(ExitCode::from(super::signals::exit_code(signal)));
    };
    let result = {
        let mut out = io::BufWriter::new(sink.writer());
        write(&mut out, &s, &preset.name, args.format).and_then(|()| out.flush())
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe && sink.is_stdout() => {
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(CliError::new(format!("writing {}: {e}", sink.name()))),
    }
    sink.commit()?;
    if !args.quiet {
        let rules = s.sum_rule_residuals();
        let first = s.parts().first();
        let worst = |r: &[f64]| r.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let derivatives = if s.parts().parts() > 0 && !rules.weight_parts.is_empty() {
            format!(
                ", |Σ∂W| ≤ {:.1e}, |Σ∂²W| ≤ {:.1e}",
                worst(&rules.weight_parts[..first]),
                worst(&rules.weight_parts[first..])
            )
        } else {
            String::new()
        };
        let spilled = if s.spilled_bytes > 0 {
            format!(
                ", {} of per-shell data spilled to disk",
                dnrg::files::fmt_bytes(s.spilled_bytes)
            )
        } else {
            String::new()
        };
        eprintln!(
            "spectrum: {} shells, |ΣW − {}| = {:.1e}{derivatives}, {:.2} s{spilled}",
            s.header.n_max + 1,
            match s.operator {
                SpectralOperator::ImpurityLevel => "1",
                SpectralOperator::TMatrix => "⟨{O, O†}⟩",
            },
            rules.weight,
            (s.times.forward + s.times.backward).as_secs_f64()
        );
        if opts.t < s.omega_last() {
            eprintln!(
                "warning: T = {:e} is below the last shell's scale ω_N = {:e}: lower nrg.T_min",
                opts.t,
                s.omega_last()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the spectra of the two spins differ (a field), or their derivatives do (h derived),
/// so that both are written.
fn spin_resolved(s: &Spectrum) -> bool {
    let field = s
        .header
        .model
        .get("h")
        .and_then(Value::as_f64)
        .is_some_and(|h| h != 0.0);
    field || s.derive.contains(&dnrg::params::Param::H)
}

/// The names of the derivative parts: θ for the first-order ones, "θ,φ" for the pairs (in the
/// layout of [`Spectrum::parts`]), and the CSV form θ, θ_φ.
fn part_names(s: &Spectrum) -> Vec<(String, String, bool)> {
    let dirs = s.parts();
    let name = |i: usize| s.derive[i].name();
    let mut out: Vec<(String, String, bool)> = (0..dirs.first())
        .map(|i| (name(i).to_string(), name(i).to_string(), false))
        .collect();
    for &(i, j) in dirs.pairs() {
        out.push((
            format!("{},{}", name(i), name(j)),
            format!("{}_{}", name(i), name(j)),
            true,
        ));
    }
    out
}

/// The derivative quantities of a point, in output order: (JSON/CSV prefix of first and second
/// order, the value of part x).
#[allow(clippy::type_complexity)]
fn derivative_columns(
    resolved: bool,
) -> Vec<(
    &'static str,
    &'static str,
    Box<dyn Fn(&PointParts, usize) -> f64>,
)> {
    let avg = |x: [f64; 2]| 0.5 * (x[0] + x[1]);
    let mut cols: Vec<(
        &'static str,
        &'static str,
        Box<dyn Fn(&PointParts, usize) -> f64>,
    )> = vec![
        ("dA", "d2A", Box::new(move |d: &PointParts, x| avg(d.a[x]))),
        (
            "dA_raw",
            "d2A_raw",
            Box::new(move |d: &PointParts, x| avg(d.a_raw[x])),
        ),
        (
            "dSigma_re",
            "d2Sigma_re",
            Box::new(move |d: &PointParts, x| avg(d.sigma[x].map(|z| z.re))),
        ),
        (
            "dSigma_im",
            "d2Sigma_im",
            Box::new(move |d: &PointParts, x| avg(d.sigma[x].map(|z| z.im))),
        ),
    ];
    if resolved {
        cols.push(("dA_up", "d2A_up", Box::new(|d: &PointParts, x| d.a[x][0])));
        cols.push((
            "dA_down",
            "d2A_down",
            Box::new(|d: &PointParts, x| d.a[x][1]),
        ));
    }
    cols
}

fn write(out: &mut dyn Write, s: &Spectrum, preset: &str, format: Format) -> io::Result<()> {
    let resolved = spin_resolved(s);
    let omega = s.frequencies();
    let points: Vec<(SpectralPoint, PointParts)> = s.evaluate_with_parts(&omega);
    // spin averages (Σ too: with h ≠ 0 the per-spin A's are the columns to read)
    let avg = |x: [f64; 2]| 0.5 * (x[0] + x[1]);
    let names = part_names(s);
    let columns = derivative_columns(resolved);
    // the T-matrix has no self-energy: its Σ fields are null (JSON) and NaN (CSV)
    let t_matrix = s.operator == SpectralOperator::TMatrix;
    let sigma = |v: f64| if t_matrix { Value::Null } else { json!(v) };
    let sigma_csv = |v: f64| if t_matrix { f64::NAN } else { v };
    match format {
        Format::Csv => {
            let cols = if resolved { ",A_up,A_down" } else { "" };
            // Σ's columns come last among the values, the derivatives after them: the earlier
            // columns keep their places
            write!(out, "omega,A,A_raw{cols},Sigma_re,Sigma_im")?;
            for (first, second, _) in &columns {
                for (_, csv, pair) in &names {
                    write!(out, ",{}_{csv}", if *pair { second } else { first })?;
                }
            }
            writeln!(out)?;
            for (p, d) in &points {
                let (a, raw) = (avg(p.a), avg(p.a_raw));
                let (sre, sim) = (
                    sigma_csv(avg(p.sigma.map(|z| z.re))),
                    sigma_csv(avg(p.sigma.map(|z| z.im))),
                );
                let w = p.omega;
                write!(out, "{w:e},{a:e},{raw:e}")?;
                if resolved {
                    write!(out, ",{:e},{:e}", p.a[0], p.a[1])?;
                }
                write!(out, ",{sre:e},{sim:e}")?;
                for (first, _, value) in &columns {
                    for x in 0..names.len() {
                        let v = value(d, x);
                        let v = if first.starts_with("dSigma") {
                            sigma_csv(v)
                        } else {
                            v
                        };
                        write!(out, ",{v:e}")?;
                    }
                }
                writeln!(out)?;
            }
        }
        Format::Jsonl => {
            writeln!(out, "{}", header(s, preset, omega.len(), resolved))?;
            for (p, d) in &points {
                let mut r = json!({
                    "type": "point",
                    "omega": p.omega,
                    "A": avg(p.a),
                    "A_raw": avg(p.a_raw),
                    "Sigma_re": sigma(avg(p.sigma.map(|z| z.re))),
                    "Sigma_im": sigma(avg(p.sigma.map(|z| z.im))),
                });
                if resolved {
                    r["A_up"] = json!(p.a[0]);
                    r["A_down"] = json!(p.a[1]);
                }
                if !names.is_empty() {
                    for (first, second, value) in &columns {
                        let mut d1 = serde_json::Map::new();
                        let mut d2 = serde_json::Map::new();
                        let has_sigma = !first.starts_with("dSigma");
                        for (x, (key, _, pair)) in names.iter().enumerate() {
                            let target = if *pair { &mut d2 } else { &mut d1 };
                            let v = value(d, x);
                            let v = if has_sigma { json!(v) } else { sigma(v) };
                            target.insert(key.clone(), v);
                        }
                        r[*first] = Value::Object(d1);
                        r[*second] = Value::Object(d2);
                    }
                }
                writeln!(out, "{r}")?;
            }
            let zero = points
                .iter()
                .find(|(p, _)| p.omega == 0.0)
                .map(|(p, _)| avg(p.a));
            let summary = match s.operator {
                SpectralOperator::ImpurityLevel => summary(s, zero.unwrap_or(f64::NAN)),
                SpectralOperator::TMatrix => t_matrix_summary(s, &points),
            };
            writeln!(out, "{summary}")?;
        }
    }
    Ok(())
}

fn header(s: &Spectrum, preset: &str, points: usize, resolved: bool) -> Value {
    let o = &s.options;
    let mut h = serde_json::to_value(&s.header).expect("header serializes");
    let map = h.as_object_mut().expect("header is an object");
    // the run's output options do not apply; `derive` lists the parameters of dA, d2A, …
    map.remove("output");
    map.insert(
        "derive".into(),
        json!(s.derive.iter().map(|p| p.name()).collect::<Vec<_>>()),
    );
    map.insert("preset".into(), json!(preset));
    map.insert("T".into(), json!(o.t));
    map.insert(
        "broadening".into(),
        json!({
            "kernel": "log-gaussian with a linear-gaussian crossover in the pole position",
            "b": o.b,
            "omega0": s.kernel.omega0,
            "gamma": s.kernel.gamma,
            "bins_per_decade": o.bins_per_decade,
            "bin_min": o.bin_floor * o.t.min(s.omega_last()),
            "bin_max": o.bin_ceiling,
        }),
    );
    let omega = s.frequencies();
    map.insert(
        "grid".into(),
        json!({
            "points": points,
            "points_per_decade": o.points_per_decade,
            "omega_min": omega.iter().copied().filter(|w| *w > 0.0).fold(f64::INFINITY, f64::min),
            "omega_max": omega.last().copied().unwrap_or(0.0),
        }),
    );
    map.insert("spin_resolved".into(), json!(resolved));
    map.insert("operator".into(), json!(s.operator.name()));
    if s.operator == SpectralOperator::TMatrix {
        map.insert(
            "normalization".into(),
            json!({
                "O": "[f_0σ, H_imp]/sqrt(A_Lambda) = ((J/2)(S·σ f_0)_σ + K f_0σ)/sqrt(A_Lambda)",
                "A": "−Im T/π, T = ⟨⟨O_σ; O_σ†⟩⟩",
                "piRhoT": "−πρ_0 Im T = π²ρ_0 A, ρ_0 = 1/2 (unitarity: 1)",
                "rho0": RHO0,
            }),
        );
    }
    map.insert("self_energy_trick".into(), json!(s.self_energy_trick()));
    if s.self_energy_trick() {
        map.insert(
            "kramers_kronig".into(),
            json!({
                "method": "piecewise-linear principal value on a logarithmic grid",
                "points_per_decade": dnrg::spectral::KK_POINTS_PER_DECADE,
            }),
        );
    }
    map.insert("z_average".into(), json!(s.z_values.len()));
    if s.z_values.len() > 1 {
        // the chains z_i = i/Nz, i = 1…Nz; A, A_raw and F are averaged before Σ is formed
        map.insert("z_values".into(), json!(s.z_values));
    }
    h
}

/// `a0`: A(0) as written in the points (improved when the trick is on).
fn summary(s: &Spectrum, a0: f64) -> Value {
    let gamma = s
        .header
        .model
        .get("Gamma")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let n_d = s.n_d();
    let spin = |i: usize| {
        json!({
            "weight": s.sums[i].weight,
            "residual": s.sums[i].weight - 1.0,
        })
    };
    // Σ W_F = ⟨n_σ̄⟩: the other spin's occupation from the density matrix
    let spin_f = |i: usize| {
        json!({
            "weight": s.sums[i].weight_f,
            "residual": s.sums[i].weight_f - s.sums[1 - i].occupation,
        })
    };
    let mut sum_rule = json!({"up": spin(0), "down": spin(1), "trace_residual": s.trace_residual});
    if s.self_energy_trick() {
        sum_rule["F_up"] = spin_f(0);
        sum_rule["F_down"] = spin_f(1);
    }
    // the derivatives' sum rules: largest residual over the spins, per part
    let rules = s.sum_rule_residuals();
    sum_rule["W"] = json!(rules.weight);
    let names = part_names(s);
    let by_order = |values: &[f64]| {
        let (mut d1, mut d2) = (serde_json::Map::new(), serde_json::Map::new());
        for ((key, _, pair), v) in names.iter().zip(values) {
            let target = if *pair { &mut d2 } else { &mut d1 };
            target.insert(key.clone(), json!(v));
        }
        (Value::Object(d1), Value::Object(d2))
    };
    let mut derivatives = serde_json::Map::new();
    if !names.is_empty() {
        let (dw, d2w) = by_order(&rules.weight_parts);
        sum_rule["dW"] = dw;
        sum_rule["d2W"] = d2w;
        if let Some(f) = rules.weight_f_parts.as_ref() {
            let (dw, d2w) = by_order(f);
            sum_rule["dW_F"] = dw;
            sum_rule["d2W_F"] = d2w;
        }
        let (dn, d2n) = by_order(&s.n_d_parts());
        derivatives.insert("dn_d".into(), dn);
        derivatives.insert("d2n_d".into(), d2n);
    }
    let mut out = json!({
        "type": "summary",
        "sum_rule": sum_rule,
        "piGammaA0_raw": PI * gamma * 0.5 * (s.a(0, 0.0) + s.a(1, 0.0)),
        "n_d_spectral": s.sums.iter().map(|x| x.occupation_spectral).sum::<f64>(),
        "n_d": n_d,
        "n_d_source": "FDM density matrix",
        "piGammaA0": PI * gamma * a0,
        "friedel": (PI * n_d / 2.0).sin().powi(2),
        "shell_weights": s.shell_weights,
        "stored_bytes": s.stored_bytes,
        "spilled_bytes": s.spilled_bytes,
    });
    let map = out.as_object_mut().expect("summary is an object");
    map.extend(derivatives);
    out
}

/// ρ_0 = 1/(2D) of the flat band (D = 1): −πρ_0 Im T = π²ρ_0 A_T.
const RHO0: f64 = 0.5;

/// The Kondo model's summary: the sum rule Σ W = ⟨{O_σ, O_σ†}⟩ per spin (the right-hand side from
/// the density matrix on shell 0, not from the poles), and the unitarity value −πρ_0 Im T at
/// low frequency: `piRhoT0`, the mean of π²ρ_0 A_T over the points with 10T ≤ |ω| ≤ 100T (1 at
/// T ≪ T_K), and `piRhoT_at_0`, the value at ω = 0 itself (the raw FDM A there carries a
/// broadening artifact of ~30%, as the SIAM's `piGammaA0_raw`).
fn t_matrix_summary(s: &Spectrum, points: &[(SpectralPoint, PointParts)]) -> Value {
    let spin = |i: usize| {
        json!({
            "weight": s.sums[i].weight,
            "expected": s.expected_weight[i],
            "residual": s.sums[i].weight - s.expected_weight[i],
        })
    };
    let rules = s.sum_rule_residuals();
    let sum_rule = json!({
        "up": spin(0),
        "down": spin(1),
        "trace_residual": s.trace_residual,
        "W": rules.weight,
        "expected_source": "Tr ρ{O_σ, O_σ†} on shell 0 (FDM density matrix)",
    });
    let t = s.options.t;
    let pi_rho = |a: [f64; 2]| PI * PI * RHO0 * 0.5 * (a[0] + a[1]);
    let low: Vec<f64> = points
        .iter()
        .filter(|(p, _)| p.omega.abs() >= 10.0 * t && p.omega.abs() <= 100.0 * t)
        .map(|(p, _)| pi_rho(p.a))
        .collect();
    let mean = if low.is_empty() {
        f64::NAN
    } else {
        low.iter().sum::<f64>() / low.len() as f64
    };
    json!({
        "type": "summary",
        "sum_rule": sum_rule,
        "piRhoT0": mean,
        "piRhoT0_window": [10.0 * t, 100.0 * t],
        "piRhoT_at_0": pi_rho([s.a(0, 0.0), s.a(1, 0.0)]),
        "shell_weights": s.shell_weights,
        "stored_bytes": s.stored_bytes,
    })
}
