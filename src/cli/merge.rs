//! `dnrg merge`: a sweep directory as one table (CSV or JSONL).

use super::CliError;
use clap::Args;
use dnrg::files::OutputFile;
use dnrg::workflow::merge::{self, Selection};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The sweep directory (made by `dnrg sweep`)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Temperatures (comma separated or repeated): one row per point and T, interpolated in ln T
    #[arg(
        long,
        value_name = "T",
        value_delimiter = ',',
        conflicts_with = "shells"
    )]
    pub at: Vec<f64>,
    /// `all`: one row per shell [default: one row per point at its last shell]
    #[arg(long, value_name = "all")]
    pub shells: Option<String>,
    /// Table format: csv or jsonl
    #[arg(long, value_name = "csv|jsonl", default_value = "csv")]
    pub format: String,
    /// Write the table to FILE instead of stdout (written atomically)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn merge(args: MergeArgs) -> Result<ExitCode, CliError> {
    let selection = match (&args.shells, args.at.is_empty()) {
        (Some(s), _) if s == "all" => Selection::AllShells,
        (Some(s), _) => {
            return Err(CliError::new(format!(
                "--shells {s}: expected 'all' (or use --at T for chosen temperatures)"
            )));
        }
        (None, false) => Selection::At(args.at.clone()),
        (None, true) => Selection::Last,
    };
    if let Selection::At(ts) = &selection {
        if let Some(t) = ts.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            return Err(CliError::new(format!(
                "--at {t}: temperatures must be positive"
            )));
        }
    }
    let jsonl = match args.format.as_str() {
        "csv" => false,
        "jsonl" => true,
        other => {
            return Err(CliError::new(format!(
                "--format {other}: unknown format (expected csv or jsonl)"
            )));
        }
    };
    let merged = merge::merge(&args.dir, &selection).map_err(|e| CliError::new(e.to_string()))?;
    let mut buffer = Vec::new();
    if jsonl {
        merged.write_jsonl(&mut buffer)
    } else {
        merged.write_csv(&mut buffer)
    }
    .map_err(|e| CliError::new(e.to_string()))?;
    match &args.out {
        None => {
            let mut out = io::stdout().lock();
            match out.write_all(&buffer).and_then(|()| out.flush()) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    return Err(CliError::new(format!("writing stdout: {e}")));
                }
                _ => {}
            }
        }
        Some(path) => {
            // the one safe output routine: atomic, FIFOs and read-only targets refused
            let refused = |e: dnrg::files::OutputError| {
                CliError::new(format!("--out {}: {e}", path.display()))
            };
            let mut file = OutputFile::create(path, true).map_err(refused)?;
            file.write_all(&buffer)
                .map_err(|e| CliError::new(format!("--out {}: {e}", path.display())))?;
            file.commit().map_err(refused)?;
        }
    }
    if !merged.missing.is_empty() {
        eprintln!(
            "warning: {} of {} points missing (not run yet): {}",
            merged.missing.len(),
            merged.points,
            merged
                .missing
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (i, e) in &merged.failed {
        eprintln!("warning: point {i} failed: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
