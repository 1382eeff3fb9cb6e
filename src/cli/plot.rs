//! `dnrg plot`: a figure (SVG or PNG) of a run or a sweep directory.

use super::CliError;
use clap::Args;
use dnrg::plot::{self, What};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A JSONL run (from `dnrg run`, `dnrg fit` or a sweep point) or a sweep directory
    #[arg(value_name = "RUN.jsonl|DIR")]
    pub input: PathBuf,
    /// flow (energy flow), thermo (S_imp and Tχ_imp vs T), sens (dX/dθ), levels (dE/dθ)
    #[arg(long, value_name = "WHAT", default_value = "thermo")]
    pub what: String,
    /// Output file; the extension picks the format (.svg or .png) [default: <input>-<what>.svg]
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn plot(args: PlotArgs) -> Result<ExitCode, CliError> {
    let what = What::from_name(&args.what).ok_or_else(|| {
        CliError::new(format!(
            "--what {}: unknown figure (expected one of: {})",
            args.what,
            What::ALL.map(What::name).join(", ")
        ))
    })?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .input
            .file_stem()
            .map_or("figure".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}-{}.svg", what.name()))
    });
    plot::plot(&args.input, what, &out).map_err(|e| CliError::new(e.to_string()))?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
