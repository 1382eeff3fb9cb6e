//! Writers for the records of a run ([`crate::record`]).
//!
//! * JSON Lines: every record in full, one object per line (header, shells, done). Floats use
//!   serde_json's shortest round-trip form; NaN and ±∞ become `null`.
//! * CSV: one row per shell with the per-shell scalars (N, T, omega, kept, states, gap_cut,
//!   E_cut, the observables, `grad_θ`, `hess_θ_φ`, `d<X>_dθ`), for spreadsheets and plotting. The
//!   columns depend only on the header's `derive` list, so they are known before the first
//!   shell; missing values (JSON null, non-finite numbers) are empty cells. Level spectra,
//!   warnings and the summary are JSONL-only.
//!
//! Each record is written with a single `write_all` and flushed, so a reader on the other end
//! of a pipe sees a shell as soon as it is done and a failed write never splits a line.

use crate::params::Param;
use crate::record::{Header, Observables, ShellRecord, Summary};
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

/// Output format of `dnrg run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Jsonl, Format::Csv];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// A writer of this format on `out`.
    pub fn writer<'a, W: Write + 'a>(self, out: W) -> Box<dyn RecordWriter + 'a> {
        match self {
            Format::Jsonl => Box::new(JsonlWriter::new(out)),
            Format::Csv => Box::new(CsvWriter::new(out)),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format '{0}' (expected jsonl or csv)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Receives the records of one run in order: `header`, any number of `shell`s, `done`.
pub trait RecordWriter {
    fn header(&mut self, header: &Header) -> io::Result<()>;
    fn shell(&mut self, shell: &ShellRecord) -> io::Result<()>;
    fn done(&mut self, summary: &Summary) -> io::Result<()>;
}

/// JSON Lines: every record, one object per line.
pub struct JsonlWriter<W> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        JsonlWriter {
            out,
            line: Vec::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn record<T: serde::Serialize>(&mut self, record: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }
}

impl<W: Write> RecordWriter for JsonlWriter<W> {
    fn header(&mut self, header: &Header) -> io::Result<()> {
        self.record(header)
    }
    fn shell(&mut self, shell: &ShellRecord) -> io::Result<()> {
        self.record(shell)
    }
    fn done(&mut self, summary: &Summary) -> io::Result<()> {
        self.record(summary)
    }
}

/// CSV: a header row, then one row per shell.
pub struct CsvWriter<W> {
    out: W,
    /// Derived parameter names, fixed by the header.
    derive: Option<Vec<&'static str>>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Self {
        CsvWriter { out, derive: None }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, cells: Vec<String>) -> io::Result<()> {
        let mut line = cells.join(",");
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        self.out.flush()
    }
}

/// Observables with a `d<X>_d<θ>` column. F_imp is left out: its gradient is `grad_<θ>`.
fn differentiated_observables() -> impl Iterator<Item = &'static str> {
    Observables::default()
        .entries()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|&name| name != "F_imp")
}

/// `(θ, φ)` pairs of the Hessian in `derive` order, θ before φ (the keys `"θ,φ"` of
/// [`ShellRecord::hess`]).
fn hessian_pairs<'a>(derive: &'a [&'static str]) -> impl Iterator<Item = (&'a str, &'a str)> {
    derive
        .iter()
        .enumerate()
        .flat_map(move |(i, a)| derive[i..].iter().map(move |b| (*a, *b)))
}

/// The CSV column names for a run differentiating with respect to `derive`.
pub fn csv_columns(derive: &[Param]) -> Vec<String> {
    let derive: Vec<&str> = derive.iter().map(|p| p.name()).collect();
    let mut columns: Vec<String> = ["N", "T", "omega", "kept", "states", "gap_cut", "E_cut"]
        .into_iter()
        .map(String::from)
        .collect();
    columns.extend(
        Observables::default()
            .entries()
            .into_iter()
            .map(|(name, _)| name.to_string()),
    );
    columns.extend(derive.iter().map(|p| format!("grad_{p}")));
    columns.extend(hessian_pairs(&derive).map(|(a, b)| format!("hess_{a}_{b}")));
    for x in differentiated_observables() {
        columns.extend(derive.iter().map(|p| format!("d{x}_d{p}")));
    }
    // added after the first release: last, so that the columns before keep their places
    columns.push("chi_cross".into());
    columns
}

/// Shortest round-trip form (same as the JSONL output); empty for missing or non-finite values.
fn cell(value: Option<f64>) -> String {
    value
        .and_then(serde_json::Number::from_f64)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

impl<W: Write> RecordWriter for CsvWriter<W> {
    fn header(&mut self, header: &Header) -> io::Result<()> {
        self.derive = Some(header.derive.iter().map(|p| p.name()).collect());
        self.line(csv_columns(&header.derive))
    }

    fn shell(&mut self, shell: &ShellRecord) -> io::Result<()> {
        let derive = self.derive.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "CSV: shell record before the header",
            )
        })?;
        let mut row = vec![
            shell.n.to_string(),
            cell(Some(shell.t)),
            cell(Some(shell.omega)),
            shell.kept.to_string(),
            shell.states.to_string(),
            cell(shell.gap_cut),
            cell(Some(shell.e_cut)),
        ];
        row.extend(shell.obs.entries().into_iter().map(|(_, v)| cell(v)));
        row.extend(derive.iter().map(|p| cell(shell.grad.get(*p).copied())));
        row.extend(
            hessian_pairs(&derive).map(|(a, b)| cell(shell.hess.get(&format!("{a},{b}")).copied())),
        );
        for x in differentiated_observables() {
            let grads = shell.obs_grad.get(x);
            row.extend(
                derive
                    .iter()
                    .map(|p| cell(grads.and_then(|g| g.get(*p)).copied())),
            );
        }
        row.push(cell(shell.obs.chi_cross));
        self.line(row)
    }

    fn done(&mut self, _summary: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{NrgParams, OutputParams};
    use crate::record::{ChainInfo, Level};
    use indexmap::IndexMap;
    use serde_json::Value;

    fn header(derive: Vec<Param>) -> Header {
        Header {
            kind: "header",
            version: "test",
            preset: Some("hand-made".into()),
            description: None,
            model: IndexMap::from([("kind".to_string(), Value::from("siam"))]),
            nrg: NrgParams::default(),
            output: OutputParams::default(),
            derive,
            chain: ChainInfo {
                v0: Some(0.1),
                a_lambda: 1.0,
                hopping: vec![0.5, 0.3],
                onsite: vec![0.0, 0.0],
                omega: vec![1.0, 0.6],
            },
            n_max: 1,
        }
    }

    fn shell(n: usize) -> ShellRecord {
        ShellRecord {
            kind: "shell",
            n,
            t: 0.1 + 0.2,
            omega: 1e-300,
            kept: 4,
            states: 16,
            gap_cut: None,
            e_cut: 7.5,
            discarded_weight: Some(1e-9),
            levels: vec![Level {
                e: 0.0,
                q: 0,
                sz: 0.5,
                s: None,
                deg: 2,
                de: IndexMap::from([("U".to_string(), vec![f64::NAN, 1.0])]),
            }],
            obs: Observables {
                f_imp: -1.5,
                s_imp: f64::INFINITY,
                n_d: Some(1.0),
                ..Observables::default()
            },
            grad: IndexMap::from([("eps_d".to_string(), 1.0), ("U".to_string(), 0.25)]),
            hess: IndexMap::from([
                ("eps_d,eps_d".to_string(), -2.0),
                ("eps_d,U".to_string(), -1.0),
                ("U,U".to_string(), f64::NAN),
            ]),
            obs_grad: IndexMap::from([(
                "n_d".to_string(),
                IndexMap::from([("eps_d".to_string(), -2.0), ("U".to_string(), -1.0)]),
            )]),
            warnings: vec![],
        }
    }

    fn summary() -> Summary {
        Summary {
            kind: "done",
            status: "complete",
            shells: 2,
            t_k: None,
            t_k_reason: Some("Tchi_imp never exceeds 0.07".into()),
            wilson_ratio: Some(2.0),
            wilson_ratio_reason: None,
            min_gap_cut: None,
            warnings: vec![],
        }
    }

    fn write_all(format: Format, derive: Vec<Param>) -> String {
        let mut out = Vec::new();
        {
            let mut w = format.writer(&mut out);
            w.header(&header(derive)).unwrap();
            w.shell(&shell(0)).unwrap();
            w.shell(&shell(1)).unwrap();
            w.done(&summary()).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn format_names_parse() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        let err = "xml".parse::<Format>().unwrap_err().to_string();
        assert_eq!(err, "unknown format 'xml' (expected jsonl or csv)");
    }

    #[test]
    fn jsonl_is_one_record_per_line_with_nulls_for_non_finite() {
        let text = write_all(Format::Jsonl, vec![Param::EpsD, Param::U]);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["header", "shell", "shell", "done"]);
        let s = &lines[1];
        assert_eq!(s["T"].as_f64(), Some(0.1 + 0.2), "full f64 precision");
        assert_eq!(s["omega"].as_f64(), Some(1e-300));
        assert!(s["obs"]["S_imp"].is_null());
        assert!(s["hess"]["U,U"].is_null());
        assert!(s["levels"][0]["dE"]["U"][0].is_null());
        assert!(s["gap_cut"].is_null());
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn csv_columns_follow_the_derive_list() {
        let columns = csv_columns(&[Param::EpsD, Param::U]);
        let head = [
            "N",
            "T",
            "omega",
            "kept",
            "states",
            "gap_cut",
            "E_cut",
            "F_imp",
            "S_imp",
            "C_imp",
            "Tchi_imp",
            "chi_loc",
            "n_d",
            "docc",
            "chi_c",
            "grad_eps_d",
            "grad_U",
            "hess_eps_d_eps_d",
            "hess_eps_d_U",
            "hess_U_U",
            "dS_imp_deps_d",
            "dS_imp_dU",
        ];
        assert_eq!(columns[..head.len()], head);
        assert!(columns.contains(&"dn_d_deps_d".to_string()));
        assert!(!columns.iter().any(|c| c.starts_with("dF_imp")));
        assert_eq!(columns.len(), 15 + 2 + 3 + 7 * 2 + 1);
        // appended after the first release: last, the earlier columns keep their places
        assert_eq!(columns.last().unwrap(), "chi_cross");
        assert_eq!(csv_columns(&[]).len(), 16);
    }

    #[test]
    fn csv_has_one_row_per_shell_and_empty_cells_for_missing_values() {
        let text = write_all(Format::Csv, vec![Param::EpsD, Param::U]);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(
            rows.len(),
            3,
            "header row + one row per shell, nothing for done"
        );
        let columns = &rows[0];
        assert!(rows.iter().all(|r| r.len() == columns.len()));
        let cell = |name: &str| rows[1][columns.iter().position(|c| *c == name).unwrap()];
        assert_eq!(cell("N"), "0");
        assert_eq!(cell("T").parse::<f64>().unwrap(), 0.1 + 0.2);
        assert_eq!(cell("omega").parse::<f64>().unwrap(), 1e-300);
        assert_eq!(cell("gap_cut"), "");
        assert_eq!(cell("E_cut"), "7.5");
        assert_eq!(cell("S_imp"), "", "non-finite is empty");
        assert_eq!(cell("chi_loc"), "", "None is empty");
        assert_eq!(cell("chi_cross"), "");
        assert_eq!(cell("n_d"), "1.0");
        assert_eq!(cell("grad_U"), "0.25");
        assert_eq!(cell("hess_eps_d_U"), "-1.0");
        assert_eq!(cell("hess_U_U"), "");
        assert_eq!(cell("dn_d_deps_d"), "-2.0");
        assert_eq!(cell("ddocc_dU"), "");
        assert_eq!(rows[2][0], "1");
    }

    #[test]
    fn csv_shell_before_header_is_an_error_not_a_panic() {
        let mut w = CsvWriter::new(Vec::new());
        assert!(w.shell(&shell(0)).is_err());
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for format in Format::ALL {
            let mut w = format.writer(Broken);
            let err = w.header(&header(vec![])).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        }
    }
}
