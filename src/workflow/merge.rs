//! `dnrg merge`: the points of a sweep directory as one table.
//!
//! Columns: `point` (index), `status` (`ok`, `missing`, `failed`, `out_of_range`), the swept
//! keys, then the per-shell columns of the CSV writer (`N`, `T`, …, observables, `grad_θ`,
//! `hess_θ_φ`, `d<X>_dθ`) and per point `T_K` and `wilson_ratio`. Rows: one per point at its
//! last shell (default), one per point and requested temperature (`--at`: every column
//! interpolated linearly in ln T between the two shells around T; `N` is then the shell at or
//! above T), or one per shell (`--shells all`). A point that is missing or failed still gets a
//! row, with empty values, and is listed in the header lines: nothing is dropped silently.
//! The table holds nothing that depends on where or when the points ran, so the same sweep
//! merges to the same bytes whether it ran locally or as Slurm shards.

use super::WorkflowError;
use super::read::{RunFile, columns, num, shell_value};
use super::sweep::{POINTS, read_manifest};
use crate::params::Param;
use serde_json::Value;
use std::io::{self, Write};
use std::path::Path;

/// Which rows to produce per point.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// The last shell.
    Last,
    /// These temperatures, log-interpolated.
    At(Vec<f64>),
    /// Every shell.
    AllShells,
}

/// The merged table.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Lines describing the table (CSV `#` lines, the JSONL `merge` record).
    pub notes: Vec<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub points: usize,
    pub missing: Vec<usize>,
    pub failed: Vec<(usize, String)>,
    pub selection: Selection,
}

/// Merge the sweep directory `dir`.
pub fn merge(dir: &Path, selection: &Selection) -> Result<Merged, WorkflowError> {
    if let Selection::At(ts) = selection {
        if ts.is_empty() || ts.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(WorkflowError::file(
                dir,
                "--at: temperatures must be positive numbers",
            ));
        }
    }
    let manifest = read_manifest(dir)?;
    let mut runs: Vec<Result<RunFile, String>> = Vec::new();
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    for p in &manifest.points {
        let path = dir.join(POINTS).join(&p.file);
        let marker = path.with_extension("failed");
        let run = if path.is_file() {
            match RunFile::read(&path) {
                Ok(run) => {
                    let hash = run
                        .point
                        .as_ref()
                        .and_then(|r| r.get("sweep"))
                        .and_then(Value::as_str);
                    if hash != Some(manifest.hash.as_str()) {
                        Err("its point record belongs to a different sweep".to_string())
                    } else if run.done.is_none() {
                        Err("incomplete (no done record)".to_string())
                    } else {
                        Ok(run)
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        } else if marker.is_file() {
            let reason = std::fs::read_to_string(&marker).unwrap_or_default();
            Err(reason.trim().to_string())
        } else {
            missing.push(p.index);
            Err(String::new())
        };
        if let Err(reason) = &run {
            if !reason.is_empty() {
                failed.push((p.index, reason.clone()));
            }
        }
        runs.push(run);
    }

    let mut derive: Vec<Param> = Vec::new();
    for run in runs.iter().flatten() {
        for p in run.derive() {
            if !derive.contains(&p) {
                derive.push(p);
            }
        }
    }
    let run_columns = columns(&derive);
    let mut header = vec!["point".to_string(), "status".to_string()];
    header.extend(manifest.axes.iter().cloned());
    header.extend(run_columns.iter().cloned());
    header.push("T_K".into());
    header.push("wilson_ratio".into());

    let mut rows = Vec::new();
    for (p, run) in manifest.points.iter().zip(&runs) {
        let lead = |status: &str| -> Vec<Value> {
            let mut row = vec![Value::from(p.index), Value::from(status)];
            row.extend(
                manifest
                    .axes
                    .iter()
                    .map(|k| p.params.get(k).cloned().unwrap_or(Value::Null)),
            );
            row
        };
        let Ok(run) = run else {
            let status = if missing.contains(&p.index) {
                "missing"
            } else {
                "failed"
            };
            let count = match selection {
                Selection::At(ts) => ts.len(),
                _ => 1,
            };
            for i in 0..count {
                let mut row = lead(status);
                row.extend(run_columns.iter().map(|c| match (c.as_str(), selection) {
                    ("T", Selection::At(ts)) => Value::from(ts[i]),
                    _ => Value::Null,
                }));
                row.extend([Value::Null, Value::Null]);
                rows.push(row);
            }
            continue;
        };
        let tail = [run.summary_value("T_K"), run.summary_value("wilson_ratio")];
        let shell_row = |shell: &Value| -> Vec<Value> {
            run_columns
                .iter()
                .map(|c| shell_value(shell, c, &derive))
                .collect()
        };
        match selection {
            Selection::Last => {
                let mut row = lead("ok");
                match run.shells.last() {
                    Some(s) => row.extend(shell_row(s)),
                    None => row.extend(run_columns.iter().map(|_| Value::Null)),
                }
                row.extend(tail.iter().cloned());
                rows.push(row);
            }
            Selection::AllShells => {
                for s in &run.shells {
                    let mut row = lead("ok");
                    row.extend(shell_row(s));
                    row.extend(tail.iter().cloned());
                    rows.push(row);
                }
            }
            Selection::At(ts) => {
                for &t in ts {
                    match interpolate(&run.shells, t, &run_columns, &derive) {
                        Some(values) => {
                            let mut row = lead("ok");
                            row.extend(values);
                            row.extend(tail.iter().cloned());
                            rows.push(row);
                        }
                        None => {
                            let mut row = lead("out_of_range");
                            row.extend(run_columns.iter().map(|c| {
                                if c == "T" {
                                    Value::from(t)
                                } else {
                                    Value::Null
                                }
                            }));
                            row.extend(tail.iter().cloned());
                            rows.push(row);
                        }
                    }
                }
            }
        }
    }
    let n = manifest.points.len();
    let ok = n - missing.len() - failed.len();
    let mut notes = vec![format!(
        "dnrg merge: preset {}, {n} points: {ok} ok, {} missing, {} failed",
        manifest.preset,
        missing.len(),
        failed.len()
    )];
    notes.push(match selection {
        Selection::Last => "one row per point, at its last shell".to_string(),
        Selection::AllShells => "one row per shell".to_string(),
        Selection::At(_) => {
            "one row per point and temperature T: every column interpolated linearly \
                             in ln T between the two shells around T (N: the shell at or above T); \
                             status out_of_range where T is outside the run"
                .to_string()
        }
    });
    notes.push(
        "T_K: Wilson's T_K chi_imp(T_K) = 0.07; wilson_ratio: from the last shell (per point)"
            .into(),
    );
    if !missing.is_empty() {
        notes.push(format!("missing points (not run yet): {}", list(&missing)));
    }
    for (i, reason) in &failed {
        notes.push(format!("failed point {i}: {reason}"));
    }
    Ok(Merged {
        notes,
        columns: header,
        rows,
        points: n,
        missing,
        failed,
        selection: selection.clone(),
    })
}

fn list(indices: &[usize]) -> String {
    indices
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every column at temperature `t`, linear in ln T between the neighbouring shells; `None` if
/// `t` is outside [T_last, T_0].
pub fn interpolate(
    shells: &[Value],
    t: f64,
    cols: &[String],
    derive: &[Param],
) -> Option<Vec<Value>> {
    let temps: Vec<f64> = shells
        .iter()
        .map(|s| s.get("T").and_then(Value::as_f64).unwrap_or(f64::NAN))
        .collect();
    let k = (0..temps.len())
        .find(|&k| temps[k] == t || (k + 1 < temps.len() && temps[k] > t && t > temps[k + 1]))?;
    if temps[k] == t {
        return Some(
            cols.iter()
                .map(|c| shell_value(&shells[k], c, derive))
                .collect(),
        );
    }
    let s = (temps[k].ln() - t.ln()) / (temps[k].ln() - temps[k + 1].ln());
    Some(
        cols.iter()
            .map(|c| match c.as_str() {
                "T" => Value::from(t),
                "N" | "kept" | "states" => shell_value(&shells[k], c, derive),
                _ => {
                    let a = num(&shell_value(&shells[k], c, derive));
                    let b = num(&shell_value(&shells[k + 1], c, derive));
                    match (a, b) {
                        (Some(a), Some(b)) => serde_json::Number::from_f64(a + s * (b - a))
                            .map(Value::Number)
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    }
                }
            })
            .collect(),
    )
}

/// A CSV cell: numbers in shortest round-trip form, strings quoted when needed, null empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

impl Merged {
    /// `#` lines with the notes, the column names, then one line per row.
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        for note in &self.notes {
            writeln!(out, "# {note}")?;
        }
        writeln!(
            out,
            "{}",
            self.columns
                .iter()
                .map(|c| cell(&Value::from(c.as_str())))
                .collect::<Vec<_>>()
                .join(",")
        )?;
        for row in &self.rows {
            writeln!(
                out,
                "{}",
                row.iter().map(cell).collect::<Vec<_>>().join(",")
            )?;
        }
        out.flush()
    }

    /// A `{"type":"merge"}` record with the notes, then one object per row.
    pub fn write_jsonl(&self, out: &mut dyn Write) -> io::Result<()> {
        let failed: Vec<Value> = self
            .failed
            .iter()
            .map(|(i, e)| serde_json::json!({"point": i, "error": e}))
            .collect();
        let selection = match &self.selection {
            Selection::Last => serde_json::json!("last"),
            Selection::AllShells => serde_json::json!("all"),
            Selection::At(ts) => {
                serde_json::json!({"at": ts, "interpolation": "linear in ln T between neighbouring shells"})
            }
        };
        let head = serde_json::json!({
            "type": "merge",
            "points": self.points,
            "missing": self.missing,
            "failed": failed,
            "rows": selection,
            "notes": self.notes,
            "columns": self.columns,
        });
        writeln!(out, "{head}")?;
        for row in &self.rows {
            let object: serde_json::Map<String, Value> = self
                .columns
                .iter()
                .cloned()
                .zip(row.iter().cloned())
                .collect();
            writeln!(out, "{}", Value::Object(object))?;
        }
        out.flush()
    }
}
