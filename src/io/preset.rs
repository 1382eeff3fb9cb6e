//! Presets: small TOML files that resolve to a [`RunConfig`].
//!
//! ```toml
//! description = "Symmetric Anderson model in the Kondo regime"
//! derive = ["eps_d", "U"]          # optional
//! [model]
//! kind = "siam"                    # siam | kondo
//! U = 0.1
//! eps_d = -0.05
//! Gamma = 0.005
//! [nrg]
//! Lambda = 2.5
//! keep = 300
//! [output]
//! levels = 16
//! ```
//!
//! Keys are the dotted names of [`crate::params`] (`model.U`, `nrg.Lambda`, `output.levels`,
//! `derive`, `description`). A missing key takes its value from [`RunConfig::default()`], with one
//! exception: when `model.eps_d` is absent but `model.U` is given, `eps_d = −U/2`, the
//! particle–hole symmetric point, because that is what "an Anderson model with this U" usually
//! means. Keys of the other model kind (e.g. `model.U` in a Kondo preset) are accepted and ignored.
//!
//! Loading goes file → `toml::Table` → overrides ([`Override`]: `--set KEY=VALUE`, `--derive`,
//! other flags) → unknown-key check → type check → [`RunConfig`] → [`RunConfig::validate`]. Every
//! error ([`PresetError`]) names where the offending value came from (file path or flag), the
//! dotted key and the reason, so the CLI and the explorer can show it as is.
//!
//! A preset argument is a path when it contains a path separator, ends in `.toml`, or names an
//! existing file; otherwise it is a name, looked up first among the user presets
//! (`<config dir>/presets/<name>.toml`) and then among the presets shipped in the binary
//! (the repository's `presets/` directory, embedded with `include_str!`). The config dir is
//! `$DNRG_CONFIG_DIR` when set, else the platform's (e.g. `~/.config/dnrg` on Linux).

use crate::files::{MAX_INPUT_BYTES, OutputError, OutputFile, read_limited};
use crate::params::{
    BareChain, Discretization, FieldKind, InvalidParam, ModelKind, Param, RunConfig,
    SymmetryChoice, ThermoStates,
};
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Environment variable that replaces the user configuration directory (tests, sandboxes).
pub const CONFIG_DIR_ENV: &str = "DNRG_CONFIG_DIR";

/// Presets compiled into the binary, so that it works from any directory: (name, TOML text).
const SHIPPED: &[(&str, &str)] = &[
    (
        "kondo-symmetric",
        include_str!("../../presets/kondo-symmetric.toml"),
    ),
    (
        "mixed-valence",
        include_str!("../../presets/mixed-valence.toml"),
    ),
    (
        "resonant-level",
        include_str!("../../presets/resonant-level.toml"),
    ),
    (
        "strong-field",
        include_str!("../../presets/strong-field.toml"),
    ),
    (
        "kondo-model",
        include_str!("../../presets/kondo-model.toml"),
    ),
    (
        "zitko-pruschke",
        include_str!("../../presets/zitko-pruschke.toml"),
    ),
];

/// Top-level keys of a preset file.
const TOP_KEYS: &[&str] = &["description", "derive", "model", "nrg", "output"];

/// Keys of each table, in documentation order.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "model",
        &["kind", "U", "eps_d", "Gamma", "J", "K", "h", "field"],
    ),
    (
        "nrg",
        &[
            "Lambda",
            "discretization",
            "z",
            "keep",
            "e_cut",
            "beta_bar",
            "T_min",
            "gap_window",
            "bare_chain",
            "thermo_states",
            "max_memory",
            "z_average",
            "symmetry",
        ],
    ),
    ("output", &["levels", "impurity_observables"]),
];

/// The preset the explorer starts with (and `dnrg run` uses without a PRESET argument).
pub fn default_preset_name() -> &'static str {
    "kondo-symmetric"
}

/// Names of the presets shipped in the binary, in display order.
pub fn shipped_names() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(name, _)| *name)
}

/// Where a value came from; every error message starts with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A preset file on disk, shown as its path.
    File(PathBuf),
    /// A preset compiled into the binary.
    Shipped(String),
    /// A `--set` flag; holds its `KEY=VALUE` argument.
    Set(String),
    /// Any other command-line flag, e.g. `--derive` or `--plain`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Shipped(name) => write!(f, "shipped preset {name}"),
            Origin::Set(arg) => write!(f, "--set {arg}"),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// Anything that can go wrong finding, reading, checking or saving a preset.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("{}: cannot read: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{origin}: invalid TOML{}: {message}", at_position(*.position))]
    Syntax {
        origin: Origin,
        /// 1-based line and column, when the parser reports one.
        position: Option<(usize, usize)>,
        message: String,
    },
    #[error("{origin}: unknown key '{key}' ({}valid keys {}: {})",
        .hint.as_ref().map(|h| format!("did you mean '{h}'? ")).unwrap_or_default(),
        .section.map(|s| format!("in [{s}]")).unwrap_or_else(|| "at the top level".into()),
        .valid.join(", "))]
    UnknownKey {
        origin: Origin,
        key: String,
        section: Option<&'static str>,
        valid: &'static [&'static str],
        hint: Option<String>,
    },
    /// Wrong type or an unknown choice, caught before the config is built.
    #[error("{origin}: {key}: {message}")]
    Value {
        origin: Origin,
        key: String,
        message: String,
    },
    /// A bad entry in the derive list (the key is implied by `--derive`, so it is part of `message`).
    #[error("{origin}: {message}")]
    Derive { origin: Origin, message: String },
    /// A value out of range, as reported by [`RunConfig::validate`].
    #[error("{origin}: {error}")]
    Invalid { origin: Origin, error: InvalidParam },
    #[error("--set {arg}: {reason}")]
    BadSet { arg: String, reason: String },
    #[error("unknown preset '{name}' (shipped: {}; user: {})", list_or_none(.shipped), list_or_none(.user))]
    UnknownPreset {
        name: String,
        shipped: Vec<String>,
        user: Vec<String>,
    },
    #[error("invalid preset name '{name}': {reason}")]
    BadName { name: String, reason: String },
    #[error("preset '{name}' already exists ({location}); choose another name or overwrite it")]
    Exists { name: String, location: String },
    #[error("no user configuration directory; set {CONFIG_DIR_ENV}")]
    NoConfigDir,
    #[error("{}: cannot write: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl PresetError {
    /// The message without its origin, for front ends whose edits have no file or flag to name
    /// (the explorer's parameter panel): what the CLI prints after the origin.
    pub fn reason(&self) -> String {
        match self {
            PresetError::Value { key, message, .. } => format!("{key}: {message}"),
            PresetError::Invalid { error, .. } => error.to_string(),
            PresetError::Derive { message, .. } => message.clone(),
            PresetError::BadSet { arg, reason } => format!("{arg}: {reason}"),
            other => other.to_string(),
        }
    }
}

fn at_position(position: Option<(usize, usize)>) -> String {
    position
        .map(|(line, column)| format!(" at line {line}, column {column}"))
        .unwrap_or_default()
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One change applied on top of a preset file, remembered with its origin for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    origin: Origin,
    key: Vec<String>,
    value: Value,
}

impl Override {
    /// `KEY=VALUE` as given to `--set`. VALUE is read as a TOML value when it parses as one
    /// (numbers, booleans, quoted strings, arrays) and as a bare string otherwise, so that
    /// `model.kind=kondo` needs no quotes.
    pub fn set(arg: &str) -> Result<Override, PresetError> {
        let bad = |reason: &str| PresetError::BadSet {
            arg: arg.to_string(),
            reason: reason.to_string(),
        };
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE, e.g. --set model.U=0.2"))?;
        let key: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if key
            .iter()
            .any(|k| k.is_empty() || k.contains(char::is_whitespace))
        {
            return Err(bad(
                "expected a dotted key such as model.U or nrg.Lambda before '='",
            ));
        }
        let value = value.trim();
        let value = value
            .parse::<Value>()
            .unwrap_or_else(|_| Value::String(value.to_string()));
        Ok(Override {
            origin: Origin::Set(arg.to_string()),
            key,
            value,
        })
    }

    /// The `--derive` flag: comma-separated parameter names; `none` or an empty list clears
    /// the preset's list. Names are checked against the model when the preset is built.
    pub fn derive(list: &str) -> Override {
        let names: Vec<Value> = match list.trim() {
            "" | "none" => Vec::new(),
            list => list
                .split(',')
                .map(|name| Value::String(name.trim().to_string()))
                .collect(),
        };
        Override {
            origin: Origin::Flag("--derive".into()),
            key: vec!["derive".into()],
            value: Value::Array(names),
        }
    }

    /// A flag that sets one dotted key, e.g. `--plain` → `output.impurity_observables = false`.
    pub fn flag(flag: &str, key: &str, value: impl Into<Value>) -> Override {
        Override {
            origin: Origin::Flag(flag.to_string()),
            key: key.split('.').map(str::to_string).collect(),
            value: value.into(),
        }
    }

    /// The dotted key this override sets.
    pub fn key(&self) -> String {
        self.key.join(".")
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Set the key in `table`, creating intermediate tables as needed.
    fn apply(&self, table: &mut Table) -> Result<(), PresetError> {
        let (last, parents) = self.key.split_last().expect("keys are never empty");
        let mut table = table;
        for (depth, segment) in parents.iter().enumerate() {
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(inner) => inner,
                other => {
                    return Err(PresetError::Value {
                        origin: self.origin.clone(),
                        key: self.key[..=depth].join("."),
                        message: format!("expected a table, found {}", other.type_str()),
                    });
                }
            };
        }
        // a table (`--set 'nrg={keep=600}'`) is merged into the one there, key by key, so
        // that it cannot silently drop the preset's other keys
        match (table.get_mut(last), &self.value) {
            (Some(Value::Table(there)), Value::Table(given)) => merge(there, given),
            _ => {
                table.insert(last.clone(), self.value.clone());
            }
        }
        Ok(())
    }
}

/// `given` merged into `there`: tables recursively, everything else replaced.
fn merge(there: &mut Table, given: &Table) {
    for (key, value) in given {
        match (there.get_mut(key), value) {
            (Some(Value::Table(inner)), Value::Table(more)) => merge(inner, more),
            _ => {
                there.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A preset resolved to the parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPreset {
    /// The name or path it was loaded by (goes into the header's `preset` field).
    pub name: String,
    /// One line; empty when the file has none.
    pub description: String,
    pub config: RunConfig,
}

/// Where a listed preset lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresetSource {
    Shipped,
    User(PathBuf),
}

/// One entry of [`list_presets`].
#[derive(Debug, Clone, PartialEq)]
pub struct PresetInfo {
    pub name: String,
    pub description: String,
    pub source: PresetSource,
    /// Why the preset cannot be loaded (broken user presets are listed, not fatal).
    pub error: Option<String>,
}

/// Shipped presets plus the user presets of one configuration directory.
///
/// The free functions ([`load`], [`list_presets`], [`save_user_preset`]) use the directory of
/// the environment; tests and embedders pick one explicitly with [`PresetStore::with_config_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetStore {
    config_dir: Option<PathBuf>,
}

impl PresetStore {
    /// `$DNRG_CONFIG_DIR` if set, else the platform configuration directory of dnrg.
    pub fn from_env() -> PresetStore {
        let config_dir = match std::env::var_os(CONFIG_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
            _ => directories::ProjectDirs::from("org", "dnrg", "dnrg")
                .map(|dirs| dirs.config_dir().to_path_buf()),
        };
        PresetStore { config_dir }
    }

    pub fn with_config_dir(dir: impl Into<PathBuf>) -> PresetStore {
        PresetStore {
            config_dir: Some(dir.into()),
        }
    }

    /// Directory of the user presets (`<config dir>/presets`); it may not exist yet.
    pub fn user_dir(&self) -> Option<PathBuf> {
        self.config_dir.as_ref().map(|dir| dir.join("presets"))
    }

    /// Resolve a preset name or path, apply the overrides in order, check and validate.
    /// Load the preset a listing entry describes: a shipped entry loads the shipped preset even
    /// when a user preset of the same name shadows it.
    pub fn load_listed(&self, info: &PresetInfo) -> Result<LoadedPreset, PresetError> {
        match &info.source {
            PresetSource::User(path) => load_file(&info.name, path, &[]),
            PresetSource::Shipped => {
                let text = shipped_text(&info.name).ok_or_else(|| PresetError::UnknownPreset {
                    name: info.name.clone(),
                    shipped: shipped_names().map(str::to_string).collect(),
                    user: Vec::new(),
                })?;
                parse(&info.name, text, Origin::Shipped(info.name.clone()), &[])
            }
        }
    }

    pub fn load(
        &self,
        name_or_path: &str,
        overrides: &[Override],
    ) -> Result<LoadedPreset, PresetError> {
        if looks_like_path(name_or_path) {
            return load_file(name_or_path, Path::new(name_or_path), overrides);
        }
        if let Some(path) = self.user_path(name_or_path).filter(|p| p.is_file()) {
            return load_file(name_or_path, &path, overrides);
        }
        if let Some(text) = shipped_text(name_or_path) {
            return parse(
                name_or_path,
                text,
                Origin::Shipped(name_or_path.to_string()),
                overrides,
            );
        }
        Err(PresetError::UnknownPreset {
            name: name_or_path.to_string(),
            shipped: shipped_names().map(str::to_string).collect(),
            user: self
                .user_files()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        })
    }

    /// Shipped presets in display order, then user presets by name. A user preset that does
    /// not load is listed with its error.
    pub fn list(&self) -> Vec<PresetInfo> {
        let shipped = SHIPPED.iter().map(|(name, text)| {
            let loaded = parse(name, text, Origin::Shipped(name.to_string()), &[]);
            info(name, PresetSource::Shipped, text, loaded)
        });
        let user = self.user_files().into_iter().map(|(name, path)| {
            let source = PresetSource::User(path.clone());
            match read_limited(&path, MAX_INPUT_BYTES) {
                Ok(text) => {
                    let loaded = parse(&name, &text, Origin::File(path), &[]);
                    info(&name, source, &text, loaded)
                }
                Err(source_err) => PresetInfo {
                    name,
                    description: String::new(),
                    source,
                    error: Some(
                        PresetError::Read {
                            path,
                            source: source_err,
                        }
                        .to_string(),
                    ),
                },
            }
        });
        shipped.chain(user).collect()
    }

    /// Write `config` as user preset `name` and return its path. The file is written to a
    /// temporary file in the same directory and renamed into place, so a crash never leaves a
    /// half-written preset. Refuses to replace an existing user preset, or to shadow a shipped
    /// one, unless `overwrite` is true.
    pub fn save(
        &self,
        name: &str,
        description: &str,
        config: &RunConfig,
        overwrite: bool,
    ) -> Result<PathBuf, PresetError> {
        check_name(name)?;
        let dir = self.user_dir().ok_or(PresetError::NoConfigDir)?;
        let path = dir.join(format!("{name}.toml"));
        config.validate().map_err(|error| PresetError::Invalid {
            origin: Origin::File(path.clone()),
            error,
        })?;
        let exists = |location: String| PresetError::Exists {
            name: name.to_string(),
            location,
        };
        if !overwrite {
            if path.exists() {
                return Err(exists(path.display().to_string()));
            }
            if shipped_text(name).is_some() {
                return Err(exists(
                    "shipped with dnrg; a user preset of that name would shadow it".into(),
                ));
            }
        }
        let write_err = |source: io::Error| PresetError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        // the same checks and atomic rename as every other output (a link is followed, a
        // read-only preset is not replaced, a failed write leaves no temporary file)
        let refused = |e: OutputError| match e {
            OutputError::Exists(_) => exists(path.display().to_string()),
            OutputError::Refused(reason) => write_err(io::Error::other(reason)),
        };
        let mut out = OutputFile::create(&path, overwrite).map_err(refused)?;
        out.write_all(to_toml(config, description).as_bytes())
            .map_err(write_err)?;
        out.commit().map_err(refused)?;
        Ok(path)
    }

    /// The file a name refers to. Any listed user preset resolves, even one whose file name
    /// [`PresetStore::save`] would not choose (e.g. `my.run.toml`); paths never get here.
    fn user_path(&self, name: &str) -> Option<PathBuf> {
        if name.is_empty() {
            return None;
        }
        Some(self.user_dir()?.join(format!("{name}.toml")))
    }

    /// (name, path) of every `*.toml` in the user directory, sorted by name.
    fn user_files(&self) -> Vec<(String, PathBuf)> {
        let Some(entries) = self.user_dir().and_then(|dir| std::fs::read_dir(dir).ok()) else {
            return Vec::new();
        };
        let mut files: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
            .filter_map(|path| Some((path.file_stem()?.to_str()?.to_string(), path)))
            .collect();
        files.sort();
        files
    }
}

fn info(
    name: &str,
    source: PresetSource,
    text: &str,
    loaded: Result<LoadedPreset, PresetError>,
) -> PresetInfo {
    let (description, error) = match loaded {
        Ok(preset) => (preset.description, None),
        // Still show the description when only the values are wrong.
        Err(e) => {
            let description = text
                .parse::<Table>()
                .ok()
                .and_then(|t| t.get("description")?.as_str().map(str::to_string))
                .unwrap_or_default();
            (description, Some(e.to_string()))
        }
    };
    PresetInfo {
        name: name.to_string(),
        description,
        source,
        error,
    }
}

/// [`PresetStore::load`] with the configuration directory of the environment.
pub fn load(name_or_path: &str, overrides: &[Override]) -> Result<LoadedPreset, PresetError> {
    PresetStore::from_env().load(name_or_path, overrides)
}

/// [`PresetStore::list`] with the configuration directory of the environment.
pub fn list_presets() -> Vec<PresetInfo> {
    PresetStore::from_env().list()
}

/// [`PresetStore::save`] with the configuration directory of the environment.
pub fn save_user_preset(
    name: &str,
    description: &str,
    config: &RunConfig,
    overwrite: bool,
) -> Result<PathBuf, PresetError> {
    PresetStore::from_env().save(name, description, config, overwrite)
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains('/')
        || arg.contains(std::path::MAIN_SEPARATOR)
        || arg.ends_with(".toml")
        || Path::new(arg).is_file()
}

fn shipped_text(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(shipped, _)| *shipped == name)
        .map(|(_, text)| *text)
}

/// Preset names become file names: keep them portable.
fn check_name(name: &str) -> Result<(), PresetError> {
    let bad = |reason: &str| {
        Err(PresetError::BadName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return bad("use only letters, digits, '-' and '_'");
    }
    Ok(())
}

fn load_file(name: &str, path: &Path, overrides: &[Override]) -> Result<LoadedPreset, PresetError> {
    let text = read_limited(path, MAX_INPUT_BYTES).map_err(|source| PresetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(name, &text, Origin::File(path.to_path_buf()), overrides)
}

/// Build a preset from TOML text. `origin` is what error messages call the text.
pub fn parse(
    name: &str,
    text: &str,
    origin: Origin,
    overrides: &[Override],
) -> Result<LoadedPreset, PresetError> {
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
        let position = e.span().map(|span| line_column(text, span.start));
        PresetError::Syntax {
            origin: origin.clone(),
            position,
            // Keep it to one line: the CLI prints it after `error: `, the explorer in a status bar.
            message: e.message().trim().replace('\n', "; "),
        }
    })?;
    for o in overrides {
        o.apply(&mut table)?;
    }
    let provenance = Provenance {
        base: origin,
        overrides,
    };
    let (description, config) = Reader {
        table: &table,
        provenance: &provenance,
    }
    .build()?;
    Ok(LoadedPreset {
        name: name.to_string(),
        description,
        config,
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Which origin a dotted key's value came from: the last override touching it, else the file.
struct Provenance<'a> {
    base: Origin,
    overrides: &'a [Override],
}

impl Provenance<'_> {
    fn of(&self, key: &str) -> &Origin {
        self.last(key)
            .map_or(&self.base, |i| &self.overrides[i].origin)
    }

    /// Index of the last override touching `key`.
    fn last(&self, key: &str) -> Option<usize> {
        let related = |a: &str, b: &str| {
            a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('.'))
        };
        self.overrides.iter().rposition(|o| {
            let set = o.key();
            related(key, &set) || related(&set, key)
        })
    }

    /// Order in which `key` was last set: 0 for the file, then one more per override.
    fn rank(&self, key: &str) -> usize {
        self.last(key).map_or(0, |i| i + 1)
    }
}

/// Reads typed values out of the merged table.
struct Reader<'a> {
    table: &'a Table,
    provenance: &'a Provenance<'a>,
}

impl Reader<'_> {
    fn build(&self) -> Result<(String, RunConfig), PresetError> {
        self.check_keys()?;
        let mut config = RunConfig::default();

        let m = &mut config.model;
        if let Some(kind) = self.choice("model", "kind", &ModelKind::ALL, ModelKind::name)? {
            m.kind = kind;
        }
        if let Some(field) = self.choice(
            "model",
            "field",
            &[FieldKind::Total, FieldKind::Impurity],
            FieldKind::name,
        )? {
            m.field = field;
        }
        let u = self.float("model", "U")?;
        let eps_d = self.float("model", "eps_d")?;
        for (key, slot) in [
            ("Gamma", &mut m.gamma),
            ("J", &mut m.j),
            ("K", &mut m.k),
            ("h", &mut m.h),
        ] {
            if let Some(v) = self.float("model", key)? {
                *slot = v;
            }
        }
        if let Some(u) = u {
            m.u = u;
        }
        // An explicit U without eps_d means the particle–hole symmetric model.
        if let Some(eps_d) = eps_d.or(u.map(|u| -u / 2.0)) {
            m.eps_d = eps_d;
        }

        let n = &mut config.nrg;
        if let Some(d) = self.choice(
            "nrg",
            "discretization",
            &Discretization::ALL,
            Discretization::name,
        )? {
            n.discretization = d;
        }
        for (key, slot) in [
            ("Lambda", &mut n.lambda),
            ("z", &mut n.z),
            ("e_cut", &mut n.e_cut),
            ("beta_bar", &mut n.beta_bar),
            ("T_min", &mut n.t_min),
            ("gap_window", &mut n.gap_window),
        ] {
            if let Some(v) = self.float("nrg", key)? {
                *slot = v;
            }
        }
        if let Some(b) = self.choice("nrg", "bare_chain", &BareChain::ALL, BareChain::name)? {
            n.bare_chain = b;
        }
        if let Some(t) = self.choice(
            "nrg",
            "thermo_states",
            &ThermoStates::ALL,
            ThermoStates::name,
        )? {
            n.thermo_states = t;
        }
        if let Some(keep) = self.count("nrg", "keep", "a positive integer")? {
            n.keep = keep;
        }
        if let Some(bytes) = self.memory("nrg", "max_memory")? {
            n.max_memory = bytes;
        }
        if let Some(nz) = self.count("nrg", "z_average", "a positive integer")? {
            n.z_average = nz;
        }
        if let Some(sym) = self.choice(
            "nrg",
            "symmetry",
            &SymmetryChoice::ALL,
            SymmetryChoice::name,
        )? {
            n.symmetry = sym;
        }

        let o = &mut config.output;
        if let Some(levels) = self.count("output", "levels", "a non-negative integer")? {
            o.levels = levels;
        }
        if let Some(flag) = self.boolean("output", "impurity_observables")? {
            o.impurity_observables = flag;
        }

        config.derive = self.derive(config.model.kind)?;
        let description = self.string("description")?.unwrap_or_default();

        config.validate().map_err(|mut error| {
            // the shell count depends on Λ, β̄ and T_min together: blame the one set last
            let mut origin = self.provenance.of(&error.key);
            if error.is_shell_count() {
                let n = &config.nrg;
                // on a tie (one `--set nrg={…}` for all of them) the last listed wins
                let values = [
                    ("nrg.beta_bar", format!("{:?}", n.beta_bar)),
                    ("nrg.T_min", format!("{:?}", n.t_min)),
                    ("nrg.Lambda", format!("{:?}", n.lambda)),
                ];
                if let Some((key, value)) = values
                    .into_iter()
                    .filter(|(key, _)| *self.provenance.of(key) != self.provenance.base)
                    .max_by_key(|(key, _)| self.provenance.rank(key))
                {
                    origin = self.provenance.of(key);
                    error.key = key.to_string();
                    error.value = value;
                }
            }
            PresetError::Invalid {
                origin: origin.clone(),
                error,
            }
        })?;
        Ok((description, config))
    }

    fn check_keys(&self) -> Result<(), PresetError> {
        for (key, value) in self.table {
            let Some((section, valid)) = SECTIONS.iter().find(|(s, _)| s == key) else {
                if TOP_KEYS.contains(&key.as_str()) {
                    continue;
                }
                return Err(self.unknown_key(key.clone(), None, TOP_KEYS, key));
            };
            let Value::Table(inner) = value else {
                return Err(self.wrong_type(key, &format!("a table [{key}]"), value));
            };
            for sub in inner.keys() {
                if !valid.contains(&sub.as_str()) {
                    return Err(self.unknown_key(
                        format!("{key}.{sub}"),
                        Some(section),
                        valid,
                        sub,
                    ));
                }
            }
        }
        Ok(())
    }

    fn unknown_key(
        &self,
        key: String,
        section: Option<&'static str>,
        valid: &'static [&'static str],
        given: &str,
    ) -> PresetError {
        let hint = valid
            .iter()
            .find(|v| v.eq_ignore_ascii_case(given))
            .map(|v| v.to_string());
        PresetError::UnknownKey {
            origin: self.provenance.of(&key).clone(),
            key,
            section,
            valid,
            hint,
        }
    }

    fn raw(&self, section: &str, key: &str) -> Option<&Value> {
        self.table.get(section)?.as_table()?.get(key)
    }

    fn error(&self, key: &str, message: String) -> PresetError {
        PresetError::Value {
            origin: self.provenance.of(key).clone(),
            key: key.to_string(),
            message,
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> PresetError {
        let found = match found {
            Value::Float(x) if x.fract() == 0.0 => {
                format!("float (write {x:.0} without a decimal point)")
            }
            Value::Integer(i) => format!("integer {i}"),
            other => other.type_str().to_string(),
        };
        self.error(key, format!("expected {expected}, found {found}"))
    }

    fn float(&self, section: &str, key: &str) -> Result<Option<f64>, PresetError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(Value::Float(x)) => Ok(Some(*x)),
            Some(Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(self.wrong_type(&format!("{section}.{key}"), "a number", other)),
        }
    }

    fn count(
        &self,
        section: &str,
        key: &str,
        expected: &str,
    ) -> Result<Option<usize>, PresetError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(value @ Value::Integer(i)) => usize::try_from(*i)
                .map(Some)
                .map_err(|_| self.wrong_type(&format!("{section}.{key}"), expected, value)),
            Some(other) => Err(self.wrong_type(&format!("{section}.{key}"), expected, other)),
        }
    }

    /// A size: a number of bytes, or a string such as "8 GiB", "500 MiB", "2G".
    fn memory(&self, section: &str, key: &str) -> Result<Option<u64>, PresetError> {
        let dotted = format!("{section}.{key}");
        let expected = "a number of bytes or a size such as \"8 GiB\" or \"500 MiB\"";
        match self.raw(section, key) {
            None => Ok(None),
            Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(value @ Value::String(s)) => parse_size(s)
                .map(Some)
                .ok_or_else(|| self.wrong_type(&dotted, expected, value)),
            Some(other) => Err(self.wrong_type(&dotted, expected, other)),
        }
    }

    fn boolean(&self, section: &str, key: &str) -> Result<Option<bool>, PresetError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.wrong_type(&format!("{section}.{key}"), "true or false", other))
            }
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, PresetError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A string naming one of `all`.
    fn choice<T: Copy>(
        &self,
        section: &str,
        key: &str,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Result<Option<T>, PresetError> {
        let dotted = format!("{section}.{key}");
        let names = || all.iter().map(|&t| name(t)).collect::<Vec<_>>().join(", ");
        match self.raw(section, key) {
            None => Ok(None),
            Some(Value::String(s)) => all
                .iter()
                .copied()
                .find(|&t| name(t) == s)
                .map(Some)
                .ok_or_else(|| {
                    self.error(
                        &dotted,
                        format!("unknown value '{s}' (expected one of {})", names()),
                    )
                }),
            Some(other) => {
                Err(self.wrong_type(&dotted, &format!("one of {} as a string", names()), other))
            }
        }
    }

    /// The derive list: an array of parameter names (a comma-separated string also works, so
    /// that `--set derive=eps_d,U` needs no TOML quoting).
    fn derive(&self, kind: ModelKind) -> Result<Vec<Param>, PresetError> {
        let origin = self.provenance.of("derive");
        let names: Vec<String> = match self.table.get("derive") {
            None => return Ok(Vec::new()),
            Some(Value::String(s)) if s.trim().is_empty() || s.trim() == "none" => Vec::new(),
            Some(Value::String(s)) => s.split(',').map(|n| n.trim().to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong_type("derive", "parameter names as strings", other)),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(self.wrong_type("derive", "an array of parameter names", other));
            }
        };
        // `--derive` names its key itself; a file or `--set` needs the key spelled out.
        let key = if *origin == Origin::Flag("--derive".into()) {
            ""
        } else {
            "derive: "
        };
        let allowed = kind.parameters();
        let expected = allowed
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ");
        let fail = |message: String| PresetError::Derive {
            origin: origin.clone(),
            message: format!("{key}{message}"),
        };
        let mut params = Vec::new();
        for name in names {
            let param = match Param::from_name(&name) {
                Some(p) if allowed.contains(&p) => p,
                Some(_) => {
                    return Err(fail(format!(
                        "'{name}' is not a parameter of the {} model (expected one of {expected})",
                        kind.name()
                    )));
                }
                None => {
                    let mut message =
                        format!("unknown parameter '{name}' (expected one of {expected})");
                    if let Some(p) = allowed
                        .iter()
                        .find(|p| p.name().eq_ignore_ascii_case(&name))
                    {
                        let _ = write!(message, "; did you mean '{p}'?");
                    }
                    return Err(fail(message));
                }
            };
            if params.contains(&param) {
                return Err(fail(format!("'{name}' is listed twice")));
            }
            params.push(param);
        }
        Ok(params)
    }
}

/// "8 GiB", "500MiB", "2G", "1.5 T", "123" (bytes); binary units, case-insensitive.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The preset file for `config`: every key written out (so it round-trips through [`load`]
/// exactly), the other model kind's parameters after a comment.
pub fn to_toml(config: &RunConfig, description: &str) -> String {
    let m = &config.model;
    let n = &config.nrg;
    let o = &config.output;
    let siam = [("U", m.u), ("eps_d", m.eps_d), ("Gamma", m.gamma)];
    let kondo = [("J", m.j), ("K", m.k)];
    let (own, other, other_name) = match m.kind {
        ModelKind::Siam => (&siam[..], &kondo[..], "Kondo"),
        ModelKind::Kondo => (&kondo[..], &siam[..], "Anderson"),
    };
    let derive: Vec<String> = config
        .derive
        .iter()
        .map(|p| toml_string(p.name()))
        .collect();

    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!("description = {}", toml_string(description)));
    line(format!("derive = [{}]", derive.join(", ")));
    line(String::new());
    line("[model]".into());
    line(format!("kind = {}", toml_string(m.kind.name())));
    for (key, value) in own {
        line(format!("{key} = {}", toml_float(*value)));
    }
    line(format!("h = {}", toml_float(m.h)));
    line(format!("field = {}", toml_string(m.field.name())));
    line(format!(
        "# {other_name}-model parameters (ignored for kind = \"{}\")",
        m.kind.name()
    ));
    for (key, value) in other {
        line(format!("{key} = {}", toml_float(*value)));
    }
    line(String::new());
    line("[nrg]".into());
    line(format!("Lambda = {}", toml_float(n.lambda)));
    line(format!(
        "discretization = {}",
        toml_string(n.discretization.name())
    ));
    line(format!("z = {}", toml_float(n.z)));
    line(format!("keep = {}", n.keep));
    line(format!("e_cut = {}", toml_float(n.e_cut)));
    line(format!("beta_bar = {}", toml_float(n.beta_bar)));
    line(format!("T_min = {}", toml_float(n.t_min)));
    line(format!("gap_window = {}", toml_float(n.gap_window)));
    line(format!("bare_chain = {}", toml_string(n.bare_chain.name())));
    line(format!(
        "thermo_states = {}",
        toml_string(n.thermo_states.name())
    ));
    // the default depends on the machine: only a budget of the user's own is written
    if n.max_memory != crate::estimate::default_max_memory() {
        line(format!("max_memory = {}", n.max_memory));
    }
    if n.z_average != 1 {
        line(format!("z_average = {}", n.z_average));
    }
    if n.symmetry != SymmetryChoice::Auto {
        line(format!("symmetry = {}", toml_string(n.symmetry.name())));
    }
    line(String::new());
    line("[output]".into());
    line(format!("levels = {}", o.levels));
    line(format!("impurity_observables = {}", o.impurity_observables));
    s
}

fn toml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Shortest round-trip form, with an exponent for very small or large values (`1e-9`, not
/// `0.000000001`); Rust's `Debug` output is valid TOML for every finite float.
fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}
