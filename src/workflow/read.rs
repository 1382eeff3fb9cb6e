//! Reading JSONL runs back (as written by `dnrg run` or a sweep point): the records as JSON
//! values, plus the flat per-shell columns of the CSV writer ([`crate::output::csv_columns`]).

use super::WorkflowError;
use crate::output::csv_columns;
use crate::params::Param;
use serde_json::Value;
use std::path::Path;

/// One run read from a JSONL file.
#[derive(Debug, Clone)]
pub struct RunFile {
    /// The `{"type":"point"}` record of a sweep point.
    pub point: Option<Value>,
    pub header: Value,
    pub shells: Vec<Value>,
    /// The `{"type":"done"}` record (absent if the run was cut short).
    pub done: Option<Value>,
}

impl RunFile {
    pub fn read(path: &Path) -> Result<RunFile, WorkflowError> {
        let text = crate::files::read_limited(path, crate::files::MAX_DATA_BYTES)
            .map_err(|e| WorkflowError::file(path, format!("cannot read: {e}")))?;
        RunFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<RunFile, WorkflowError> {
        let mut point = None;
        let mut header = None;
        let mut shells = Vec::new();
        let mut done = None;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Value = serde_json::from_str(line).map_err(|e| {
                WorkflowError::file(path, format!("line {}: not a JSON record: {e}", n + 1))
            })?;
            match record.get("type").and_then(Value::as_str) {
                Some("point") => point = Some(record),
                Some("header") => header = Some(record),
                Some("shell") => shells.push(record),
                Some("done") => done = Some(record),
                _ => {}
            }
        }
        let header = header.ok_or_else(|| {
            WorkflowError::file(path, "no header record: not a dnrg JSONL run (CSV has no header record; use --format jsonl)")
        })?;
        Ok(RunFile {
            point,
            header,
            shells,
            done,
        })
    }

    /// The records of a run held in memory, as [`RunFile::read`] would find them in its
    /// JSONL file (written and read back by the same code).
    pub fn from_records(
        header: &crate::record::Header,
        shells: &[crate::record::ShellRecord],
        summary: Option<&crate::record::Summary>,
    ) -> Result<RunFile, WorkflowError> {
        let here = Path::new("(explorer)");
        let mut bytes = Vec::new();
        let written: std::io::Result<()> = (|| {
            let mut writer = crate::output::Format::Jsonl.writer(&mut bytes);
            writer.header(header)?;
            for shell in shells {
                writer.shell(shell)?;
            }
            if let Some(summary) = summary {
                writer.done(summary)?;
            }
            Ok(())
        })();
        written.map_err(|e| WorkflowError::file(here, e.to_string()))?;
        let text =
            String::from_utf8(bytes).map_err(|e| WorkflowError::file(here, e.to_string()))?;
        RunFile::parse(here, &text)
    }

    /// The derived parameters of the header.
    pub fn derive(&self) -> Vec<Param> {
        self.header
            .get("derive")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().and_then(Param::from_name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A number from the done record (`T_K`, `wilson_ratio`).
    pub fn summary_value(&self, key: &str) -> Value {
        self.done
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// The value of CSV column `column` (see [`csv_columns`]) in a shell record; `Null` if absent.
pub fn shell_value(shell: &Value, column: &str, derive: &[Param]) -> Value {
    let get = |path: &[&str]| -> Value {
        let mut v = shell;
        for key in path {
            match v.get(*key) {
                Some(inner) => v = inner,
                None => return Value::Null,
            }
        }
        v.clone()
    };
    match column {
        "N" | "T" | "omega" | "kept" | "states" | "gap_cut" | "E_cut" => get(&[column]),
        _ => {
            if let Some(p) = column.strip_prefix("grad_") {
                return get(&["grad", p]);
            }
            if let Some(pair) = column.strip_prefix("hess_") {
                // the pair names are parameter names, which contain no '_' except eps_d
                for (i, a) in derive.iter().enumerate() {
                    for b in &derive[i..] {
                        if pair == format!("{}_{}", a.name(), b.name()) {
                            return get(&["hess", &format!("{},{}", a.name(), b.name())]);
                        }
                    }
                }
                return Value::Null;
            }
            if let Some(rest) = column.strip_prefix('d') {
                for p in derive {
                    if let Some(x) = rest.strip_suffix(&format!("_d{}", p.name())) {
                        return get(&["obs_grad", x, p.name()]);
                    }
                }
            }
            get(&["obs", column])
        }
    }
}

/// The per-shell columns of a run with these derived parameters (same as CSV output).
pub fn columns(derive: &[Param]) -> Vec<String> {
    csv_columns(derive)
}

/// A JSON number as f64 (`None` for null or anything else).
pub fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}
