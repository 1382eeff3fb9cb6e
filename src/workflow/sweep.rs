//! Sweep files and sweep directories.
//!
//! ```toml
//! preset = "kondo-symmetric"          # a preset name, or a path (relative to this file)
//! derive = ["eps_d", "U"]             # optional: replaces the preset's list
//! combine = "product"                 # or "zip" (all axes of equal length); default product
//! description = "U scan"              # optional, free text
//! [set]                               # fixed overrides, applied before the axes
//! "nrg.keep" = 300
//! [axes]                              # in file order; the first axis varies slowest
//! "model.U" = [0.05, 0.1, 0.2]                    # explicit values (any TOML scalars)
//! "model.Gamma" = { log = [0.002, 0.02], n = 4 }  # n values, geometric, both ends included
//! "nrg.z" = { lin = [0.25, 1.0], n = 4 }          # n values, arithmetic, both ends included
//! ```
//!
//! Keys under `[set]` and `[axes]` are the dotted preset keys (`model.U`, `nrg.keep`, …). Each
//! point is the preset with `[set]`, then its axis values, then `derive` applied, and goes
//! through the preset loader, so an unknown key or an out-of-range value is reported like in a
//! preset, with the sweep file and the key as its origin.

use super::{WorkflowError, preset_argument, toml_to_json};
use crate::params::RunConfig;
use crate::preset::{self, LoadedPreset, Override};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Top-level keys of a sweep file.
const TOP_KEYS: &[&str] = &["preset", "derive", "combine", "description", "set", "axes"];

/// Name of the manifest in a sweep directory.
pub const MANIFEST: &str = "sweep.json";
/// Subdirectory of the point files.
pub const POINTS: &str = "points";

/// How the axes are combined into points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Every combination; the first axis varies slowest.
    Product,
    /// The i-th values of all axes together (all axes must have the same length).
    Zip,
}

/// One point of a sweep: the swept values and the run they resolve to.
#[derive(Debug, Clone)]
pub struct Point {
    pub index: usize,
    /// (dotted key, value) for every axis, in axis order.
    pub values: Vec<(String, Value)>,
    pub preset: LoadedPreset,
}

impl Point {
    /// The swept values as a JSON object (the `params` of the point record and the manifest).
    pub fn params(&self) -> IndexMap<String, serde_json::Value> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect()
    }

    /// Rough relative cost of the run, for load balancing only: shells × keep^1.9 (the
    /// measured growth of a shell's time) × the number of derivative parts carried.
    pub fn cost(&self) -> f64 {
        cost(&self.preset.config)
    }

    /// `model.U=0.1 model.Gamma=0.002`, for progress lines and messages.
    pub fn label(&self) -> String {
        if self.values.is_empty() {
            return "(no axes)".into();
        }
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// See [`Point::cost`].
pub fn cost(config: &RunConfig) -> f64 {
    let shells = crate::chain::last_shell(&config.nrg).min(crate::params::MAX_SHELLS) + 1;
    let first = config.derive.len()
        + if config.output.impurity_observables {
            3
        } else {
            0
        };
    let parts = 1 + first + first * (first + 1) / 4;
    shells as f64 * (config.nrg.keep as f64).powf(1.9) * parts as f64
}

/// A resolved sweep: every point checked and ready to run.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep file as given (for messages).
    pub file: PathBuf,
    /// The preset as written in the sweep file (a path there is relative to the file).
    pub preset: String,
    pub description: String,
    /// Axis keys in order.
    pub axes: Vec<String>,
    pub points: Vec<Point>,
    /// SHA-256 of the resolved points (parameters of every run and the swept values): two
    /// sweep files that resolve to the same runs have the same hash, whatever their layout.
    pub hash: String,
}

/// Read and resolve a sweep file.
pub fn load(path: &Path) -> Result<Sweep, WorkflowError> {
    parse(path, &super::read_spec(path)?)
}

/// Resolve the text of a sweep file; `path` names it in messages and anchors relative presets.
pub fn parse(path: &Path, text: &str) -> Result<Sweep, WorkflowError> {
    let file = path.display().to_string();
    let (table, preset_name) = super::spec_table(&file, text, TOP_KEYS)?;
    let bad = |key: &str, reason: String| WorkflowError::key(&file, key, reason);
    let preset_arg = preset_argument(path, &preset_name);
    let description = match table.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(
                "description",
                format!("expected a string, found {}", other.type_str()),
            ));
        }
    };
    let combine = match table.get("combine") {
        None => Combine::Product,
        Some(Value::String(s)) if s == "product" => Combine::Product,
        Some(Value::String(s)) if s == "zip" => Combine::Zip,
        Some(other) => {
            return Err(bad(
                "combine",
                format!("expected \"product\" or \"zip\", found {other}"),
            ));
        }
    };
    let derive = match table.get("derive") {
        None => None,
        Some(Value::Array(items)) => {
            let mut names = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => names.push(Value::String(s.clone())),
                    other => {
                        return Err(bad(
                            "derive",
                            format!("expected a list of parameter names, found {other}"),
                        ));
                    }
                }
            }
            Some(Value::Array(names))
        }
        Some(other) => {
            return Err(bad(
                "derive",
                format!(
                    "expected a list of parameter names, found {}",
                    other.type_str()
                ),
            ));
        }
    };
    let set = section(&table, "set", &file)?;
    let mut fixed = Vec::new();
    for (key, value) in set {
        fixed.push(Override::flag(
            &format!("{file}: [set] {key}"),
            key,
            value.clone(),
        ));
    }
    let axes_table = section(&table, "axes", &file)?;
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, spec) in axes_table {
        let values = axis_values(spec).map_err(|reason| bad(&format!("axes.{key}"), reason))?;
        if values.is_empty() {
            return Err(bad(&format!("axes.{key}"), "no values".into()));
        }
        if set.contains_key(key) {
            return Err(bad(
                &format!("axes.{key}"),
                "also fixed under [set]; remove one of them".into(),
            ));
        }
        axes.push((key.clone(), values));
    }

    let combos = combinations(&axes, combine).map_err(|(key, reason)| bad(&key, reason))?;
    let mut points = Vec::with_capacity(combos.len());
    for (index, values) in combos.into_iter().enumerate() {
        let mut overrides = fixed.clone();
        for (key, value) in &values {
            overrides.push(Override::flag(
                &format!("{file}: [axes] {key} = {value}"),
                key,
                value.clone(),
            ));
        }
        if let Some(list) = &derive {
            overrides.push(Override::flag(
                &format!("{file}: derive"),
                "derive",
                list.clone(),
            ));
        }
        let mut preset = preset::load(&preset_arg, &overrides)?;
        // recorded as written in the sweep file, so that the hash and the headers do not
        // depend on the directory the sweep was started from
        preset.name = preset_name.clone();
        points.push(Point {
            index,
            values,
            preset,
        });
    }
    let hash = hash_points(&points);
    Ok(Sweep {
        file: path.to_path_buf(),
        preset: preset_name,
        description,
        axes: axes.into_iter().map(|(k, _)| k).collect(),
        points,
        hash,
    })
}

fn section<'a>(table: &'a Table, name: &str, file: &str) -> Result<&'a Table, WorkflowError> {
    static EMPTY: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    match table.get(name) {
        None => Ok(EMPTY.get_or_init(Table::new)),
        Some(Value::Table(t)) => Ok(t),
        Some(other) => Err(WorkflowError::key(
            file,
            name,
            format!(
                "expected a table [{name}] of dotted keys such as \"model.U\", found {}",
                other.type_str()
            ),
        )),
    }
}

/// The values of one axis: an explicit list, `{ log = [a, b], n = k }` or `{ lin = [a, b], n = k }`.
fn axis_values(spec: &Value) -> Result<Vec<Value>, String> {
    match spec {
        Value::Array(items) => {
            for item in items {
                if matches!(item, Value::Array(_) | Value::Table(_)) {
                    return Err(format!("expected a list of values, found the entry {item}"));
                }
            }
            Ok(items.clone())
        }
        Value::Table(t) => {
            let kind = match (t.get("log"), t.get("lin")) {
                (Some(_), Some(_)) => return Err("give either log or lin, not both".into()),
                (Some(_), None) => "log",
                (None, Some(_)) => "lin",
                (None, None) => {
                    return Err(
                        "expected a list, { log = [a, b], n = k } or { lin = [a, b], n = k }"
                            .into(),
                    );
                }
            };
            for key in t.keys() {
                if key != kind && key != "n" {
                    return Err(format!("unknown key '{key}' in a range (valid: {kind}, n)"));
                }
            }
            let ends = match &t[kind] {
                Value::Array(e) if e.len() == 2 => e,
                other => return Err(format!("{kind}: expected [first, last], found {other}")),
            };
            let number = |v: &Value| match v {
                Value::Float(x) => Ok(*x),
                Value::Integer(i) => Ok(*i as f64),
                other => Err(format!("{kind}: expected numbers, found {other}")),
            };
            let (a, b) = (number(&ends[0])?, number(&ends[1])?);
            if !a.is_finite() || !b.is_finite() {
                return Err(format!("{kind}: the ends must be finite numbers"));
            }
            let n = match t.get("n") {
                Some(Value::Integer(n)) if *n >= 1 && *n <= 100_000 => *n as usize,
                Some(other) => {
                    return Err(format!(
                        "n: expected an integer from 1 to 100000, found {other}"
                    ));
                }
                None => return Err("n: missing (the number of values)".into()),
            };
            if kind == "log" && (a <= 0.0 || b <= 0.0) {
                return Err(format!("log: both ends must be positive, found [{a}, {b}]"));
            }
            Ok((0..n)
                .map(|i| {
                    // both ends exactly as written
                    let x = if i == 0 {
                        a
                    } else if i == n - 1 {
                        b
                    } else {
                        let s = i as f64 / (n - 1) as f64;
                        if kind == "log" {
                            (a.ln() + s * (b.ln() - a.ln())).exp()
                        } else {
                            a + s * (b - a)
                        }
                    };
                    Value::Float(x)
                })
                .collect())
        }
        other => Err(format!(
            "expected a list, {{ log = [a, b], n = k }} or {{ lin = [a, b], n = k }}, found {}",
            other.type_str()
        )),
    }
}

type Combo = Vec<(String, Value)>;

fn combinations(
    axes: &[(String, Vec<Value>)],
    combine: Combine,
) -> Result<Vec<Combo>, (String, String)> {
    match combine {
        Combine::Product => {
            let mut combos: Vec<Combo> = vec![Vec::new()];
            for (key, values) in axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((key.clone(), v.clone()));
                            c
                        })
                    })
                    .collect();
                if combos.len() > 1_000_000 {
                    return Err(("axes".into(), "more than 1000000 points".into()));
                }
            }
            Ok(combos)
        }
        Combine::Zip => {
            let Some((first_key, first)) = axes.first() else {
                return Ok(vec![Vec::new()]);
            };
            for (key, values) in axes {
                if values.len() != first.len() {
                    return Err((
                        format!("axes.{key}"),
                        format!(
                            "combine = \"zip\" needs axes of equal length: {} values, but {first_key} has {}",
                            values.len(),
                            first.len()
                        ),
                    ));
                }
            }
            Ok((0..first.len())
                .map(|i| {
                    axes.iter()
                        .map(|(k, v)| (k.clone(), v[i].clone()))
                        .collect()
                })
                .collect())
        }
    }
}

#[derive(Serialize)]
struct HashedPoint<'a> {
    params: IndexMap<String, serde_json::Value>,
    preset: &'a str,
    description: &'a str,
    config: &'a RunConfig,
}

fn hash_points(points: &[Point]) -> String {
    let hashed: Vec<HashedPoint> = points
        .iter()
        .map(|p| HashedPoint {
            params: p.params(),
            preset: &p.preset.name,
            description: &p.preset.description,
            config: &p.preset.config,
        })
        .collect();
    let json = serde_json::to_string(&(1, hashed)).expect("serializable");
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest `sweep.json` of a sweep directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always "sweep".
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub hash: String,
    pub preset: String,
    #[serde(default)]
    pub description: String,
    pub axes: Vec<String>,
    pub points: Vec<ManifestPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestPoint {
    pub index: usize,
    /// File name under `points/`.
    pub file: String,
    pub params: IndexMap<String, serde_json::Value>,
}

impl Sweep {
    /// Width of the point numbers in file names (at least 4 digits).
    fn width(&self) -> usize {
        self.points.len().saturating_sub(1).to_string().len().max(4)
    }

    /// File name of point `index` under `points/`, e.g. `p0007.jsonl`.
    pub fn point_file(&self, index: usize) -> String {
        format!("p{index:0width$}.jsonl", width = self.width())
    }

    pub fn manifest(&self) -> Manifest {
        Manifest {
            kind: "sweep".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hash: self.hash.clone(),
            preset: self.preset.clone(),
            description: self.description.clone(),
            axes: self.axes.clone(),
            points: self
                .points
                .iter()
                .map(|p| ManifestPoint {
                    index: p.index,
                    file: self.point_file(p.index),
                    params: p.params(),
                })
                .collect(),
        }
    }

    /// Create `dir` and `dir/points` and write the manifest, or check that an existing
    /// manifest describes this very sweep (same hash). Safe to call from several shards at once.
    pub fn prepare_dir(&self, dir: &Path) -> Result<(), WorkflowError> {
        let points = dir.join(POINTS);
        std::fs::create_dir_all(&points)
            .map_err(|e| WorkflowError::file(&points, format!("cannot create: {e}")))?;
        let path = dir.join(MANIFEST);
        if path.exists() {
            return self.check_manifest(dir);
        }
        let mut text = serde_json::to_string_pretty(&self.manifest()).expect("serializable");
        text.push('\n');
        let write_err =
            |e: std::io::Error| WorkflowError::file(&path, format!("cannot write: {e}"));
        let mut tmp = tempfile::Builder::new()
            .prefix(".sweep-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(write_err)?;
        tmp.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => Ok(()),
            // another shard was quicker
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                self.check_manifest(dir)
            }
            Err(e) => Err(write_err(e.error)),
        }
    }

    fn check_manifest(&self, dir: &Path) -> Result<(), WorkflowError> {
        let manifest = read_manifest(dir)?;
        if manifest.hash != self.hash {
            return Err(WorkflowError::file(
                dir,
                format!(
                    "made by a different sweep (its points differ from those of {}); \
                     use another --out DIR, or delete this one to start over",
                    self.file.display()
                ),
            ));
        }
        Ok(())
    }
}

/// Read `dir/sweep.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, WorkflowError> {
    let path = dir.join(MANIFEST);
    let text = crate::files::read_limited(&path, crate::files::MAX_DATA_BYTES).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WorkflowError::file(dir, format!("not a sweep directory (no {MANIFEST})"))
        } else {
            WorkflowError::file(&path, format!("cannot read: {e}"))
        }
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| WorkflowError::file(&path, format!("not a sweep manifest: {e}")))?;
    if manifest.kind != "sweep" {
        return Err(WorkflowError::file(
            &path,
            "not a sweep manifest (type is not \"sweep\")",
        ));
    }
    Ok(manifest)
}
