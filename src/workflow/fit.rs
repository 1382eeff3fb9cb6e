//! Fits of Hamiltonian parameters to targets, driven by the exact Jacobian of one derivative
//! run per iteration.
//!
//! ```toml
//! preset = "mixed-valence"             # name or path (relative to this file)
//! [set]                                # fixed overrides
//! "nrg.keep" = 200
//! [free]                               # model parameters that can be differentiated
//! "model.eps_d" = { start = -0.02, min = -0.5, max = 0.5 }
//! [[target]]                           # an observable at a temperature
//! observable = "n_d"                   # n_d, docc, S_imp, Tchi_imp, C_imp, F_imp
//! T = "last"                           # or a temperature (interpolated in ln T between shells)
//! value = 0.8
//! sigma = 0.001                        # default 1; residual = weight·(model − value)/sigma
//! [[target]]                           # a curve: CSV lines T,value[,sigma] ('#' comments,
//! observable = "Tchi_imp"              # an optional header line); the run is interpolated
//! curve = "chi.csv"                    # in ln T to each T of the file
//! sigma = 0.01                         # for lines without their own sigma
//! [[target]]
//! observable = "T_K"                   # Wilson's Kondo temperature, compared in ln T_K:
//! value = 1e-4                         # sigma is then relative
//! sigma = 0.05
//! [options]
//! max_runs = 30                        # derivative runs at most
//! xtol = 1e-3                          # stop when the next step is below xtol standard errors
//! ```
//!
//! Each evaluation is one run that differentiates with respect to the free parameters: its
//! `obs_grad` (and `grad` for F_imp) gives ∂X/∂θ at every shell, so the Jacobian costs no extra
//! runs. Shell temperatures do not depend on the model parameters, so interpolation in ln T
//! commutes with the derivative. χ_loc has no exact derivative in the records and is refused.
//!
//! The minimizer is Levenberg–Marquardt with Marquardt's diagonal scaling (a dozen lines on
//! nalgebra; the crates we looked at want a residual trait object per problem and do not
//! report the covariance): solve (JᵀJ + λ·diag JᵀJ) δ = −Jᵀr, clamp θ + δ to the bounds, accept
//! if χ² drops (λ /= 10) else retry with λ *= 10. It stops without a further run when the next
//! step is below `xtol` standard errors in every parameter. Standard errors are
//! √diag (JᵀJ)⁻¹ at the result (the sigmas taken as the true noise).

use super::{WorkflowError, preset_argument};
use crate::params::{Param, RunConfig};
use crate::preset::{self, Override};
use crate::record::{Header, ShellRecord, Summary};
use crate::solver::records;
use nalgebra::{DMatrix, DVector};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use toml::{Table, Value};

const TOP_KEYS: &[&str] = &["preset", "description", "set", "free", "target", "options"];
const TARGET_KEYS: &[&str] = &["observable", "T", "value", "sigma", "weight", "curve"];
/// Observables with exact first derivatives in the shell records.
pub const FIT_OBSERVABLES: &[&str] = &["n_d", "docc", "S_imp", "Tchi_imp", "C_imp", "F_imp"];

/// A free parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Free {
    /// Dotted key, e.g. `model.eps_d`.
    pub key: String,
    pub param: Param,
    pub start: f64,
    pub min: f64,
    pub max: f64,
}

/// Where an observable is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Last,
    T(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    Observable {
        name: String,
        at: At,
        value: f64,
        sigma: f64,
    },
    KondoT {
        value: f64,
        sigma: f64,
    },
    Curve {
        name: String,
        file: PathBuf,
        /// (T, value, sigma, line number)
        points: Vec<(f64, f64, f64, usize)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub kind: TargetKind,
    pub weight: f64,
    /// `target[i]` in messages.
    pub label: String,
}

/// A parsed fit file.
#[derive(Debug, Clone)]
pub struct FitSpec {
    pub file: PathBuf,
    pub preset: String,
    preset_arg: String,
    set: Vec<Override>,
    pub free: Vec<Free>,
    pub targets: Vec<Target>,
    pub max_runs: usize,
    pub xtol: f64,
    /// Parameters given directly (the explorer's), instead of the preset and `set`.
    base: Option<Box<RunConfig>>,
    /// Set from another thread to stop the fit (checked by every run between its stages).
    cancel: Option<Arc<AtomicBool>>,
}

/// One evaluation: residuals and Jacobian from one derivative run, and the run itself.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub theta: Vec<f64>,
    pub residuals: Vec<f64>,
    /// Rows: residuals; columns: free parameters.
    pub jacobian: Vec<Vec<f64>>,
    pub cost: f64,
    pub header: Header,
    pub shells: Vec<ShellRecord>,
    pub summary: Summary,
}

/// One line of the iteration table.
#[derive(Debug, Clone, PartialEq)]
pub struct Iteration {
    /// Runs used so far (this one included).
    pub runs: usize,
    pub theta: Vec<f64>,
    /// χ² = Σ r² at `theta`.
    pub cost: f64,
    pub lambda: f64,
    pub accepted: bool,
}

#[derive(Debug, Clone)]
pub struct FitResult {
    pub theta: Vec<f64>,
    pub std_err: Vec<f64>,
    pub cost: f64,
    /// Degrees of freedom: residuals − free parameters.
    pub dof: isize,
    pub runs: usize,
    pub converged: bool,
    pub reason: String,
    pub best: Evaluation,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(x) => Some(*x),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// Read a fit file.
pub fn load(path: &Path) -> Result<FitSpec, WorkflowError> {
    parse(path, &super::read_spec(path)?)
}

pub fn parse(path: &Path, text: &str) -> Result<FitSpec, WorkflowError> {
    let file = path.display().to_string();
    let (table, preset) = super::spec_table(&file, text, TOP_KEYS)?;
    let bad = |key: &str, reason: String| WorkflowError::key(&file, key, reason);
    let sub = |name: &str| -> Result<Table, WorkflowError> {
        match table.get(name) {
            None => Ok(Table::new()),
            Some(Value::Table(t)) => Ok(t.clone()),
            Some(other) => Err(bad(
                name,
                format!("expected a table [{name}], found {}", other.type_str()),
            )),
        }
    };
    let set = sub("set")?
        .iter()
        .map(|(k, v)| Override::flag(&format!("{file}: [set] {k}"), k, v.clone()))
        .collect();

    let mut free = Vec::new();
    for (key, spec) in &sub("free")? {
        let fkey = format!("free.{key}");
        let param = key
            .strip_prefix("model.")
            .and_then(Param::from_name)
            .ok_or_else(|| {
                bad(
                    &fkey,
                    "free parameters are model parameters that can be differentiated: \
                     model.eps_d, model.U, model.Gamma, model.h, model.J, model.K"
                        .into(),
                )
            })?;
        let Value::Table(t) = spec else {
            return Err(bad(
                &fkey,
                "expected { start = x, min = a, max = b }".into(),
            ));
        };
        for k in t.keys() {
            if !["start", "min", "max"].contains(&k.as_str()) {
                return Err(bad(
                    &format!("{fkey}.{k}"),
                    "unknown key (valid: start, min, max)".into(),
                ));
            }
        }
        let get = |k: &str, default: Option<f64>| -> Result<f64, WorkflowError> {
            match t.get(k) {
                Some(v) => number(v).filter(|x| x.is_finite()).ok_or_else(|| {
                    bad(
                        &format!("{fkey}.{k}"),
                        format!("expected a finite number, found {v}"),
                    )
                }),
                None => default.ok_or_else(|| bad(&format!("{fkey}.{k}"), "missing".into())),
            }
        };
        let start = get("start", None)?;
        let (min, max) = (
            get("min", Some(f64::NEG_INFINITY))?,
            get("max", Some(f64::INFINITY))?,
        );
        if !(min <= start && start <= max) {
            return Err(bad(
                &fkey,
                format!("need min ≤ start ≤ max, found {min} ≤ {start} ≤ {max}"),
            ));
        }
        free.push(Free {
            key: key.clone(),
            param,
            start,
            min,
            max,
        });
    }
    if free.is_empty() {
        return Err(bad(
            "free",
            "no free parameters: add e.g. \"model.eps_d\" = { start = -0.02 } under [free]".into(),
        ));
    }

    let mut targets = Vec::new();
    let list = match table.get("target") {
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(bad(
                "target",
                format!("expected [[target]] tables, found {}", other.type_str()),
            ));
        }
        None => return Err(bad("target", "no targets: add a [[target]] table".into())),
    };
    for (i, t) in list.iter().enumerate() {
        let label = format!("target[{i}]");
        let Value::Table(t) = t else {
            return Err(bad(&label, "expected a table".into()));
        };
        let key = |k: &str| format!("{label}.{k}");
        for k in t.keys() {
            if !TARGET_KEYS.contains(&k.as_str()) {
                return Err(bad(
                    &key(k),
                    format!("unknown key (valid: {})", TARGET_KEYS.join(", ")),
                ));
            }
        }
        let num = |k: &str| -> Result<Option<f64>, WorkflowError> {
            t.get(k)
                .map(|v| {
                    number(v)
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad(&key(k), format!("expected a number, found {v}")))
                })
                .transpose()
        };
        let weight = num("weight")?.unwrap_or(1.0);
        let sigma = num("sigma")?;
        if let Some(s) = sigma {
            if s <= 0.0 {
                return Err(bad(&key("sigma"), format!("must be positive, found {s}")));
            }
        }
        let name = match t.get("observable") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(bad(
                    &key("observable"),
                    format!("expected a name, found {other}"),
                ));
            }
            None => return Err(bad(&key("observable"), "missing".into())),
        };
        let kind = if name == "T_K" {
            if t.contains_key("curve") || t.contains_key("T") {
                return Err(bad(
                    &label,
                    "a T_K target takes only value, sigma and weight".into(),
                ));
            }
            let value = num("value")?.ok_or_else(|| bad(&key("value"), "missing".into()))?;
            if value <= 0.0 {
                return Err(bad(&key("value"), "T_K must be positive".into()));
            }
            TargetKind::KondoT {
                value,
                sigma: sigma.unwrap_or(1.0),
            }
        } else {
            if !FIT_OBSERVABLES.contains(&name.as_str()) {
                let why = if name == "chi_loc" {
                    "chi_loc has no exact derivative in the records (obs_grad); fit Tchi_imp instead".to_string()
                } else {
                    format!(
                        "unknown observable (valid: {}, T_K)",
                        FIT_OBSERVABLES.join(", ")
                    )
                };
                return Err(bad(&key("observable"), format!("'{name}': {why}")));
            }
            match t.get("curve") {
                Some(Value::String(csv)) => {
                    if t.contains_key("value") || t.contains_key("T") {
                        return Err(bad(&label, "a curve target takes its T and values from the CSV file; remove value and T".into()));
                    }
                    let csv_path = match path.parent() {
                        Some(dir) if Path::new(csv).is_relative() => dir.join(csv),
                        _ => PathBuf::from(csv),
                    };
                    let points = read_curve(&csv_path, sigma)?;
                    TargetKind::Curve {
                        name,
                        file: csv_path,
                        points,
                    }
                }
                Some(other) => {
                    return Err(bad(
                        &key("curve"),
                        format!("expected a CSV file name, found {other}"),
                    ));
                }
                None => {
                    let at = match t.get("T") {
                        None => At::Last,
                        Some(Value::String(s)) if s == "last" => At::Last,
                        Some(v) => match number(v) {
                            Some(x) if x > 0.0 && x.is_finite() => At::T(x),
                            _ => {
                                return Err(bad(
                                    &key("T"),
                                    format!(
                                        "expected \"last\" or a positive temperature, found {v}"
                                    ),
                                ));
                            }
                        },
                    };
                    let value =
                        num("value")?.ok_or_else(|| bad(&key("value"), "missing".into()))?;
                    TargetKind::Observable {
                        name,
                        at,
                        value,
                        sigma: sigma.unwrap_or(1.0),
                    }
                }
            }
        };
        targets.push(Target {
            kind,
            weight,
            label,
        });
    }

    let options = sub("options")?;
    let mut max_runs = 30;
    let mut xtol = 1e-3;
    for (k, v) in &options {
        match k.as_str() {
            "max_runs" => match v {
                Value::Integer(n) if *n >= 1 && *n <= 10_000 => max_runs = *n as usize,
                _ => {
                    return Err(bad(
                        "options.max_runs",
                        format!("expected an integer from 1 to 10000, found {v}"),
                    ));
                }
            },
            "xtol" => match number(v) {
                Some(x) if x > 0.0 => xtol = x,
                _ => {
                    return Err(bad(
                        "options.xtol",
                        format!("expected a positive number, found {v}"),
                    ));
                }
            },
            _ => {
                return Err(bad(
                    &format!("options.{k}"),
                    "unknown key (valid: max_runs, xtol)".into(),
                ));
            }
        }
    }
    let spec = FitSpec {
        file: path.to_path_buf(),
        preset_arg: preset_argument(path, &preset),
        preset,
        set,
        free,
        targets,
        max_runs,
        xtol,
        base: None,
        cancel: None,
    };
    // resolve once now, so that bad keys and values are reported before any run
    spec.config(&spec.start(), true)?;
    Ok(spec)
}

/// `T,value[,sigma]` lines; `#` comments and a non-numeric first line are skipped.
fn read_curve(
    path: &Path,
    default_sigma: Option<f64>,
) -> Result<Vec<(f64, f64, f64, usize)>, WorkflowError> {
    let text = crate::files::read_limited(path, crate::files::MAX_INPUT_BYTES)
        .map_err(|e| WorkflowError::file(path, format!("cannot read: {e}")))?;
    let mut points = Vec::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Option<Vec<f64>> = cells.iter().map(|c| c.parse::<f64>().ok()).collect();
        let bad = |reason: &str| WorkflowError::file(path, format!("line {}: {reason}", n + 1));
        let Some(values) = parsed else {
            if first {
                first = false;
                continue; // a header line
            }
            return Err(bad("expected numbers T,value[,sigma]"));
        };
        first = false;
        let (t, v, s) = match values[..] {
            [t, v, s] => (t, v, s),
            [t, v] => (
                t,
                v,
                default_sigma.ok_or_else(|| bad("no sigma column and no sigma in the target"))?,
            ),
            _ => return Err(bad("expected 2 or 3 columns: T,value[,sigma]")),
        };
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if !positive(t) || !positive(s) || !v.is_finite() {
            return Err(bad("T and sigma must be positive, value finite"));
        }
        points.push((t, v, s, n + 1));
    }
    if points.is_empty() {
        return Err(WorkflowError::file(path, "no data lines"));
    }
    Ok(points)
}

/// Value and derivatives of observable `name` at one shell.
fn shell_obs(s: &ShellRecord, name: &str, params: &[Param]) -> Option<(f64, Vec<f64>)> {
    let value = if name == "F_imp" {
        Some(s.obs.f_imp)
    } else {
        s.obs.entries().into_iter().find(|(n, _)| *n == name)?.1
    }?;
    let grads = params
        .iter()
        .map(|p| {
            if name == "F_imp" {
                s.grad.get(p.name()).copied()
            } else {
                s.obs_grad.get(name)?.get(p.name()).copied()
            }
        })
        .collect::<Option<Vec<f64>>>()?;
    Some((value, grads))
}

/// `shell_obs` at temperature t, linear in ln T between neighbouring shells.
fn obs_at(
    shells: &[ShellRecord],
    name: &str,
    params: &[Param],
    t: f64,
) -> Result<(f64, Vec<f64>), String> {
    let (hi, lo) = (
        shells.first().map_or(f64::NAN, |s| s.t),
        shells.last().map_or(f64::NAN, |s| s.t),
    );
    let k = (0..shells.len())
        .find(|&k| {
            shells[k].t == t || (k + 1 < shells.len() && shells[k].t > t && t > shells[k + 1].t)
        })
        .ok_or_else(|| {
            format!("T = {t:e} is outside the run's shell temperatures [{lo:e}, {hi:e}]")
        })?;
    let missing = || format!("{name} (or its derivative) is not computed by this run");
    let a = shell_obs(&shells[k], name, params).ok_or_else(missing)?;
    if shells[k].t == t {
        return Ok(a);
    }
    let b = shell_obs(&shells[k + 1], name, params).ok_or_else(missing)?;
    let s = (shells[k].t.ln() - t.ln()) / (shells[k].t.ln() - shells[k + 1].t.ln());
    Ok((
        a.0 + s * (b.0 - a.0),
        a.1.iter().zip(&b.1).map(|(x, y)| x + s * (y - x)).collect(),
    ))
}

/// ln T_K (Wilson: T χ_imp(T_K) = 0.07, interpolated in ln T as in the run summary) and its
/// derivatives, from Tχ_imp and ∂Tχ_imp/∂θ of the two shells around the first crossing.
fn ln_kondo_t(shells: &[ShellRecord], params: &[Param]) -> Option<(f64, Vec<f64>)> {
    const C: f64 = 0.07;
    let k = (0..shells.len().saturating_sub(1))
        .find(|&k| shells[k].obs.tchi_imp >= C && shells[k + 1].obs.tchi_imp < C)?;
    let (a, b) = (
        shell_obs(&shells[k], "Tchi_imp", params)?,
        shell_obs(&shells[k + 1], "Tchi_imp", params)?,
    );
    let (x1, x2) = (a.0, b.0);
    let (l1, l2) = (shells[k].t.ln(), shells[k + 1].t.ln());
    let s = (x1 - C) / (x1 - x2);
    let grads =
        a.1.iter()
            .zip(&b.1)
            .map(|(d1, d2)| {
                let ds = (d1 * (x1 - x2) - (x1 - C) * (d1 - d2)) / ((x1 - x2) * (x1 - x2));
                ds * (l2 - l1)
            })
            .collect();
    Some((l1 + s * (l2 - l1), grads))
}

impl FitSpec {
    /// A fit of `base` (complete parameters, e.g. the explorer's) instead of a fit file: the
    /// free parameters are set on a copy of it. `origin` names it in messages.
    pub fn from_config(
        origin: &str,
        base: RunConfig,
        free: Vec<Free>,
        targets: Vec<Target>,
        max_runs: usize,
        xtol: f64,
    ) -> FitSpec {
        FitSpec {
            file: PathBuf::from(origin),
            preset: origin.to_string(),
            preset_arg: String::new(),
            set: Vec::new(),
            free,
            targets,
            max_runs,
            xtol,
            base: Some(Box::new(base)),
            cancel: None,
        }
    }

    /// Stop the fit when `flag` is set: the run in progress stops between its stages, and
    /// [`levenberg_marquardt`] returns [`FitSpec::cancelled_error`].
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> FitSpec {
        self.cancel = Some(flag);
        self
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    fn cancelled_error(&self) -> WorkflowError {
        WorkflowError::file(&self.file, "fit cancelled")
    }

    pub fn start(&self) -> Vec<f64> {
        self.free.iter().map(|f| f.start).collect()
    }

    pub fn params(&self) -> Vec<Param> {
        self.free.iter().map(|f| f.param).collect()
    }

    /// The run at `theta`; with `derivatives`, differentiating with respect to the free
    /// parameters (otherwise none: what a derivative-free method would run).
    pub fn config(&self, theta: &[f64], derivatives: bool) -> Result<RunConfig, WorkflowError> {
        if let Some(base) = &self.base {
            let mut config = (**base).clone();
            for (f, x) in self.free.iter().zip(theta) {
                config.model.set(f.param, *x);
            }
            config.derive = if derivatives {
                self.params()
            } else {
                Vec::new()
            };
            config.output.impurity_observables = true;
            return Ok(config);
        }
        let file = self.file.display().to_string();
        let mut overrides = self.set.clone();
        for (f, x) in self.free.iter().zip(theta) {
            overrides.push(Override::flag(
                &format!("{file}: [free] {}", f.key),
                &f.key,
                Value::Float(*x),
            ));
        }
        let names: Vec<Value> = if derivatives {
            self.free
                .iter()
                .map(|f| Value::String(f.param.name().into()))
                .collect()
        } else {
            Vec::new()
        };
        overrides.push(Override::flag(
            &format!("{file}: [free]"),
            "derive",
            Value::Array(names),
        ));
        overrides.push(Override::flag(
            &format!("{file}: targets"),
            "output.impurity_observables",
            true,
        ));
        Ok(preset::load(&self.preset_arg, &overrides)?.config)
    }

    /// Run at `theta` and compare with the targets. With `derivatives = false` the Jacobian is
    /// left empty.
    pub fn evaluate(&self, theta: &[f64], derivatives: bool) -> Result<Evaluation, WorkflowError> {
        let config = self.config(theta, derivatives)?;
        // one chain or the z-average (`nrg.z_average`): its derivatives are exact averages
        let flag = self.cancel.clone().unwrap_or_default();
        let mut run = records(&config, Arc::clone(&flag)).map_err(|e| {
            WorkflowError::key(&self.file.display().to_string(), "free", e.to_string())
        })?;
        let mut header = run.header().clone();
        header.preset = Some(self.preset.clone());
        let shells: Vec<ShellRecord> = run.by_ref().collect();
        if flag.load(Ordering::SeqCst) || self.is_cancelled() {
            return Err(self.cancelled_error());
        }
        let summary = run.summary(false);
        let params = if derivatives {
            self.params()
        } else {
            Vec::new()
        };
        let mut residuals = Vec::new();
        let mut jacobian = Vec::new();
        let file = self.file.display().to_string();
        let fail = |t: &Target, reason: String| WorkflowError::key(&file, &t.label, reason);
        let mut push = |value: f64, grads: &[f64], target: f64, sigma: f64, weight: f64| {
            let w = weight / sigma;
            residuals.push(w * (value - target));
            if derivatives {
                jacobian.push(grads.iter().map(|g| w * g).collect::<Vec<f64>>());
            }
        };
        for t in &self.targets {
            match &t.kind {
                TargetKind::Observable {
                    name,
                    at,
                    value,
                    sigma,
                } => {
                    let temp = match at {
                        At::Last => shells.last().map_or(f64::NAN, |s| s.t),
                        At::T(x) => *x,
                    };
                    let (v, g) = obs_at(&shells, name, &params, temp).map_err(|e| fail(t, e))?;
                    push(v, &g, *value, *sigma, t.weight);
                }
                TargetKind::KondoT { value, sigma } => {
                    let (v, g) = ln_kondo_t(&shells, &params).ok_or_else(|| {
                        fail(
                            t,
                            format!("T_K not reached at θ = {theta:?}: T χ_imp never crosses 0.07"),
                        )
                    })?;
                    push(v, &g, value.ln(), *sigma, t.weight);
                }
                TargetKind::Curve {
                    name,
                    file: csv,
                    points,
                } => {
                    for &(temp, value, sigma, line) in points {
                        let (v, g) = obs_at(&shells, name, &params, temp)
                            .map_err(|e| fail(t, format!("{} line {line}: {e}", csv.display())))?;
                        push(v, &g, value, sigma, t.weight);
                    }
                }
            }
        }
        let cost = residuals.iter().map(|r| r * r).sum();
        Ok(Evaluation {
            theta: theta.to_vec(),
            residuals,
            jacobian,
            cost,
            header,
            shells,
            summary,
        })
    }

    fn clamp(&self, theta: &mut [f64]) {
        for (x, f) in theta.iter_mut().zip(&self.free) {
            *x = x.clamp(f.min, f.max);
        }
    }
}

/// JᵀJ and Jᵀr.
fn normal_equations(e: &Evaluation, n: usize) -> (DMatrix<f64>, DVector<f64>) {
    let m = e.residuals.len();
    let j = DMatrix::from_fn(m, n, |i, k| e.jacobian[i][k]);
    let r = DVector::from_column_slice(&e.residuals);
    (j.transpose() * &j, j.transpose() * r)
}

/// √diag (JᵀJ)⁻¹ (infinite where JᵀJ is singular).
pub fn standard_errors(e: &Evaluation) -> Vec<f64> {
    let n = e.theta.len();
    let (a, _) = normal_equations(e, n);
    match a.try_inverse() {
        Some(inv) => (0..n).map(|i| inv[(i, i)].max(0.0).sqrt()).collect(),
        None => vec![f64::INFINITY; n],
    }
}

/// Levenberg–Marquardt from the start values (see the module documentation). `on_iteration` is
/// called after every run. With a cancel flag ([`FitSpec::with_cancel_flag`]) set, it stops
/// within the current run and returns an error saying "fit cancelled".
pub fn levenberg_marquardt(
    spec: &FitSpec,
    on_iteration: &mut dyn FnMut(&Iteration),
) -> Result<FitResult, WorkflowError> {
    let n = spec.free.len();
    let mut theta = spec.start();
    spec.clamp(&mut theta);
    let mut best = spec.evaluate(&theta, true)?;
    let mut runs = 1;
    let mut lambda = 1e-3;
    on_iteration(&Iteration {
        runs,
        theta: theta.clone(),
        cost: best.cost,
        lambda,
        accepted: true,
    });
    let (converged, reason) = loop {
        let (a, g) = normal_equations(&best, n);
        let se = standard_errors(&best);
        let scale: Vec<f64> = (0..n).map(|i| a[(i, i)].max(1e-300)).collect();
        let mut damped = a.clone();
        for i in 0..n {
            damped[(i, i)] += lambda * scale[i];
        }
        let Some(step) = damped.lu().solve(&(-&g)) else {
            break (false, "singular normal equations".to_string());
        };
        let mut trial: Vec<f64> = theta.iter().zip(step.iter()).map(|(x, d)| x + d).collect();
        spec.clamp(&mut trial);
        let small = (0..n).all(|i| (trial[i] - theta[i]).abs() <= spec.xtol * se[i]);
        if small {
            break (
                true,
                format!("next step below {} standard errors", spec.xtol),
            );
        }
        if runs >= spec.max_runs {
            break (false, format!("max_runs = {} reached", spec.max_runs));
        }
        // a trial where a target cannot be evaluated (e.g. T_K not reached) is a rejected step
        let candidate = spec.evaluate(&trial, true);
        if spec.is_cancelled() {
            return Err(spec.cancelled_error());
        }
        runs += 1;
        let candidate_cost = candidate.as_ref().map_or(f64::INFINITY, |c| c.cost);
        let accepted = candidate_cost < best.cost;
        if let (true, Ok(candidate)) = (accepted, candidate) {
            theta = trial;
            best = candidate;
            lambda = (lambda / 10.0).max(1e-12);
        } else {
            lambda *= 10.0;
        }
        on_iteration(&Iteration {
            runs,
            theta: if accepted {
                theta.clone()
            } else {
                trial_theta(&theta, &step, spec)
            },
            cost: candidate_cost,
            lambda,
            accepted,
        });
        if lambda > 1e12 {
            break (false, "no step lowers χ² (λ grew beyond 1e12)".into());
        }
    };
    let std_err = standard_errors(&best);
    Ok(FitResult {
        theta: best.theta.clone(),
        std_err,
        cost: best.cost,
        dof: best.residuals.len() as isize - n as isize,
        runs,
        converged,
        reason,
        best,
    })
}

fn trial_theta(theta: &[f64], step: &DVector<f64>, spec: &FitSpec) -> Vec<f64> {
    let mut t: Vec<f64> = theta.iter().zip(step.iter()).map(|(x, d)| x + d).collect();
    spec.clamp(&mut t);
    t
}

/// Nelder–Mead simplex minimization of `f` from `x0` with initial steps `step` (standard
/// coefficients 1, 2, ½, ½). Stops when `done(best x, best f)` says so or after `max_evals`
/// evaluations; returns (best x, best f, evaluations). For comparison with
/// [`levenberg_marquardt`] (the benchmark counts its runs).
pub fn nelder_mead(
    mut f: impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: &[f64],
    max_evals: usize,
    mut done: impl FnMut(&[f64], f64) -> bool,
) -> (Vec<f64>, f64, usize) {
    let n = x0.len();
    let mut evals = 0;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        f(x)
    };
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    let v = eval(x0, &mut evals);
    simplex.push((x0.to_vec(), v));
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += step[i];
        let v = eval(&x, &mut evals);
        simplex.push((x, v));
    }
    loop {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if done(&simplex[0].0, simplex[0].1) || evals >= max_evals {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|k| simplex[..n].iter().map(|(x, _)| x[k]).sum::<f64>() / n as f64)
            .collect();
        let worst = simplex[n].clone();
        let along = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|k| centroid[k] + t * (worst.0[k] - centroid[k]))
                .collect()
        };
        let xr = along(-1.0);
        let fr = eval(&xr, &mut evals);
        if fr < simplex[0].1 {
            let xe = along(-2.0);
            let fe = eval(&xe, &mut evals);
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < worst.1 {
                let x = along(-0.5);
                let v = eval(&x, &mut evals);
                (x, v)
            } else {
                let x = along(0.5);
                let v = eval(&x, &mut evals);
                (x, v)
            };
            if fc < worst.1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                let best = simplex[0].0.clone();
                for item in simplex.iter_mut().skip(1) {
                    let x: Vec<f64> = (0..n)
                        .map(|k| best[k] + 0.5 * (item.0[k] - best[k]))
                        .collect();
                    let v = eval(&x, &mut evals);
                    *item = (x, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    (simplex[0].0.clone(), simplex[0].1, evals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_the_minimum_of_a_quadratic() {
        let (x, fx, evals) = nelder_mead(
            |x| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2),
            &[0.0, 0.0],
            &[0.5, 0.5],
            2000,
            |_, f| f < 1e-14,
        );
        assert!(
            fx < 1e-14 && (x[0] - 1.0).abs() < 1e-6 && (x[1] + 2.0).abs() < 1e-6,
            "{x:?} {fx} {evals}"
        );
    }
}
