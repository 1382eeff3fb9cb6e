//! `dnrg fit`: fit free model parameters to targets by Levenberg–Marquardt with the exact
//! Jacobian of one derivative run per iteration.

use super::CliError;
use clap::Args;
use dnrg::files::OutputFile;
use dnrg::output::{JsonlWriter, RecordWriter};
use dnrg::workflow::fit::{self, Iteration};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct FitArgs {
    /// The fit file (TOML: preset, [set], [free], [[target]], [options]; see README)
    #[arg(value_name = "FIT.toml")]
    pub file: PathBuf,
    /// Where the final run goes (JSONL) [default: <file stem>.fit.jsonl]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn fit(args: FitArgs) -> Result<ExitCode, CliError> {
    let spec = fit::load(&args.file).map_err(|e| CliError::new(e.to_string()))?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .file
            .file_stem()
            .map_or("fit".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}.fit.jsonl"))
    });
    let names: Vec<String> = spec
        .free
        .iter()
        .map(|f| f.param.name().to_string())
        .collect();
    let mut head = format!("{:>4}", "run");
    for n in &names {
        head.push_str(&format!(" {n:>16}"));
    }
    head.push_str(&format!(" {:>14} {:>8}  step", "chi2", "lambda"));
    println!("{head}");
    let mut print = |it: &Iteration| {
        let mut line = format!("{:>4}", it.runs);
        for x in &it.theta {
            line.push_str(&format!(" {x:>16.9e}"));
        }
        line.push_str(&format!(
            " {:>14.6e} {:>8.0e}  {}",
            it.cost,
            it.lambda,
            if it.runs == 1 {
                "start"
            } else if it.accepted {
                "accepted"
            } else {
                "rejected"
            }
        ));
        println!("{line}");
    };
    let result =
        fit::levenberg_marquardt(&spec, &mut print).map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "{} after {} derivative runs ({}): chi2 = {:.6e} with {} residuals, {} free",
        if result.converged {
            "converged"
        } else {
            "NOT converged"
        },
        result.runs,
        result.reason,
        result.cost,
        result.best.residuals.len(),
        spec.free.len()
    );
    for ((f, x), se) in spec.free.iter().zip(&result.theta).zip(&result.std_err) {
        println!("{} = {x:.10e} ± {se:.3e}", f.key);
    }
    // the final run, through the one safe output routine (atomic; FIFOs, devices and read-only
    // targets refused like `run --out`)
    let fail = |e: std::io::Error| CliError::new(format!("--out {}: {e}", out.display()));
    let file = OutputFile::create(&out, true)
        .map_err(|e| CliError::new(format!("--out {}: {e}", out.display())))?;
    let mut writer = JsonlWriter::new(std::io::BufWriter::new(file));
    writer.header(&result.best.header).map_err(fail)?;
    for s in &result.best.shells {
        writer.shell(s).map_err(fail)?;
    }
    writer.done(&result.best.summary).map_err(fail)?;
    let file = writer
        .into_inner()
        .into_inner()
        .map_err(|e| fail(e.into_error()))?;
    file.commit()
        .map_err(|e| CliError::new(format!("--out {}: {e}", out.display())))?;
    println!("final run: {}", out.display());
    Ok(if result.converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
