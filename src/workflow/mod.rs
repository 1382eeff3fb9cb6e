//! Research workflow on top of single runs: parameter sweeps ([`sweep`]), running their points
//! locally or as Slurm array shards ([`exec`], [`slurm`]), collecting them into one table
//! ([`merge`]) and fitting parameters to targets with the exact Jacobian ([`fit`]).
//!
//! A sweep directory holds `sweep.json` (the manifest: the resolved points and a hash of
//! them) and `points/pNNNN.jsonl`, one complete run per point, each preceded by a
//! `{"type":"point"}` record with the point's swept values. Files appear atomically (written
//! to a temporary file, then renamed), so a point file that exists is complete; a crash or
//! `kill -9` loses at most the points in progress.

pub mod exec;
pub mod fit;
pub mod merge;
pub mod read;
pub mod slurm;
pub mod sweep;

/// An error in a workflow file: the file, the key and the reason, like preset errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// A bad value in a sweep or fit file.
    #[error("{file}: {key}: {reason}")]
    Key {
        file: String,
        key: String,
        reason: String,
    },
    /// A problem with a file or directory as a whole (unreadable, not a sweep directory, …).
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// A problem in the preset a sweep or fit names (already names its origin).
    #[error(transparent)]
    Preset(#[from] crate::preset::PresetError),
}

impl WorkflowError {
    pub fn key(file: &str, key: &str, reason: impl Into<String>) -> WorkflowError {
        WorkflowError::Key {
            file: file.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub fn file(path: impl AsRef<std::path::Path>, reason: impl Into<String>) -> WorkflowError {
        WorkflowError::File {
            path: path.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }
}

/// The text of a sweep or fit file, through the bounded reader.
pub(crate) fn read_spec(path: &std::path::Path) -> Result<String, WorkflowError> {
    crate::files::read_limited(path, crate::files::MAX_INPUT_BYTES)
        .map_err(|e| WorkflowError::file(path, format!("cannot read: {e}")))
}

/// The table of a sweep or fit file with every top-level key checked against `keys`, and the
/// base preset it names (required).
pub(crate) fn spec_table(
    file: &str,
    text: &str,
    keys: &[&str],
) -> Result<(toml::Table, String), WorkflowError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| toml_syntax(file, text, &e))?;
    let bad = |key: &str, reason: String| WorkflowError::key(file, key, reason);
    if let Some(key) = table.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(bad(
            key,
            format!(
                "unknown key (valid keys at the top level: {})",
                keys.join(", ")
            ),
        ));
    }
    let preset = match table.get("preset") {
        Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(bad(
                "preset",
                format!("expected a preset name or path, found {}", other.type_str()),
            ));
        }
        None => {
            return Err(bad(
                "preset",
                "missing: name the base preset, e.g. preset = \"kondo-symmetric\"".into(),
            ));
        }
    };
    Ok((table, preset))
}

/// A TOML syntax error with its line and column, as presets report them.
pub(crate) fn toml_syntax(file: &str, text: &str, e: &toml::de::Error) -> WorkflowError {
    let position = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default();
    WorkflowError::File {
        path: file.to_string(),
        reason: format!(
            "invalid TOML{position}: {}",
            e.message().trim().replace('\n', "; ")
        ),
    }
}

/// A TOML value as JSON (numbers, strings, booleans, arrays, tables).
pub(crate) fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => items.iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// A preset argument from a workflow file: paths are relative to the file's directory.
pub(crate) fn preset_argument(file: &std::path::Path, preset: &str) -> String {
    let looks_like_path = preset.contains('/')
        || preset.contains(std::path::MAIN_SEPARATOR)
        || preset.ends_with(".toml");
    if !looks_like_path {
        return preset.to_string();
    }
    let path = std::path::Path::new(preset);
    if path.is_absolute() {
        return preset.to_string();
    }
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path).display().to_string(),
        _ => preset.to_string(),
    }
}
