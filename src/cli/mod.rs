//! Command-line interface: argument definitions and dispatch.
//!
//! Exit codes: 0 success, 1 explorer unavailable, 2 bad input or any other error (clap's own
//! usage errors exit 2 as well), 128 + n stopped by signal n (130 Ctrl-C, 143 SIGTERM,
//! 129 SIGHUP).

mod fit;
mod merge;
mod plot;
mod presets;
mod run;
pub(crate) mod signals;
mod spectrum;
mod sweep;
mod tui;

use clap::{Args, Parser, Subcommand};
use dnrg::preset::{self, LoadedPreset, Override, PresetError};
use dnrg::text::printable;
use std::fmt;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dnrg",
    version,
    about = "Differentiable numerical renormalization group for quantum impurity models",
    long_about = "Differentiable numerical renormalization group for quantum impurity models.\n\n\
        Without a subcommand, starts the interactive explorer."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Explore a preset interactively (the default command)
    Tui(tui::TuiArgs),
    /// Run NRG and write the records (JSON Lines or CSV) to stdout or a file
    Run(run::RunArgs),
    /// FDM spectral function of the impurity level (JSON Lines or CSV) at a temperature T
    Spectrum(spectrum::SpectrumArgs),
    /// List the shipped and user presets
    #[command(after_help = USER_PRESETS_HELP)]
    Presets,
    /// Print a preset, with overrides applied, as TOML (a starting point for your own presets)
    #[command(after_help = USER_PRESETS_HELP)]
    Show(PresetArgs),
    /// Run a parameter sweep (locally, as a Slurm shard, or write a Slurm array script)
    Sweep(sweep::SweepArgs),
    /// Collect the points of a sweep directory into one table
    Merge(merge::MergeArgs),
    /// Fit free model parameters to targets (Levenberg–Marquardt with exact Jacobians)
    Fit(fit::FitArgs),
    /// Draw a figure (SVG or PNG) of a run or a sweep directory
    Plot(plot::PlotArgs),
}

const USER_PRESETS_HELP: &str = "User presets are the files <config dir>/presets/<name>.toml, \
    where <config dir> is $DNRG_CONFIG_DIR if set, else the platform's configuration directory \
    (e.g. ~/.config/dnrg on Linux). A user preset takes precedence over a shipped one of the \
    same name.";

/// Which preset to use and how to change it; shared by `run`, `show` and `tui`.
#[derive(Args, Debug, Clone, Default)]
pub struct PresetArgs {
    /// Preset name (see `dnrg presets`) or path to a .toml file [default: kondo-symmetric]
    pub preset: Option<String>,
    /// Override one parameter, e.g. --set model.U=0.2 or --set nrg.discretization=zitko-pruschke
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Parameters to differentiate with respect to, comma separated ("none" clears the preset's list)
    #[arg(long, value_name = "P1,P2,...")]
    pub derive: Option<String>,
    /// Plain NRG: skip the impurity observables obtained by differentiation (n_d, docc, χ_loc, χ_c)
    #[arg(long)]
    pub plain: bool,
}

impl PresetArgs {
    /// The preset with `--set` (in order), then `--derive`, then `--plain` applied.
    pub fn load(&self) -> Result<LoadedPreset, PresetError> {
        let mut overrides = self
            .set
            .iter()
            .map(|arg| Override::set(arg))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(list) = &self.derive {
            overrides.push(Override::derive(list));
        }
        if self.plain {
            overrides.push(Override::flag(
                "--plain",
                "output.impurity_observables",
                false,
            ));
        }
        let name = self
            .preset
            .as_deref()
            .unwrap_or(preset::default_preset_name());
        preset::load(name, &overrides)
    }
}

/// A failure reported as `error: …` with exit code 2.
#[derive(Debug)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<PresetError> for CliError {
    fn from(e: PresetError) -> Self {
        CliError(e.to_string())
    }
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError(message.into())
    }
}

/// Refuse to write to a closed stdout. The Rust runtime reopens a closed stdout (`dnrg run >&-`)
/// on /dev/null for reading and writing, where every record would vanish without an error; a
/// shell's `> /dev/null` opens it for writing only, so the two can be told apart (Linux).
pub fn check_stdout() -> Result<(), CliError> {
    #[cfg(target_os = "linux")]
    {
        let target = std::fs::read_link("/proc/self/fd/1").ok();
        let flags = std::fs::read_to_string("/proc/self/fdinfo/1")
            .ok()
            .and_then(|s| {
                let f = s
                    .lines()
                    .find_map(|l| l.strip_prefix("flags:"))?
                    .trim()
                    .to_string();
                u32::from_str_radix(&f, 8).ok()
            });
        const O_ACCMODE: u32 = 0o3;
        const O_RDWR: u32 = 0o2;
        if target.as_deref() == Some(std::path::Path::new("/dev/null"))
            && flags.is_some_and(|f| f & O_ACCMODE == O_RDWR)
        {
            return Err(CliError::new(
                "stdout is closed: the records would be lost (redirect it to a file, or use --out FILE)",
            ));
        }
    }
    Ok(())
}

/// Temporary files of saves killed half-way (`kill -9`) older than this are removed at start-up;
/// a younger one may belong to a save in progress in another dnrg.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = preset::PresetStore::from_env().user_dir() {
        dnrg::files::remove_stale_temps(&dir, STALE_TEMP_AGE);
    }
    let result = match cli.command {
        None => tui::tui(tui::TuiArgs::default()),
        Some(Command::Tui(args)) => tui::tui(args),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Spectrum(args)) => spectrum::spectrum(args),
        Some(Command::Presets) => presets::list(),
        Some(Command::Show(args)) => presets::show(&args),
        Some(Command::Sweep(args)) => sweep::sweep(args),
        Some(Command::Merge(args)) => merge::merge(args),
        Some(Command::Fit(args)) => fit::fit(args),
        Some(Command::Plot(args)) => plot::plot(args),
    };
    // a spectrum still running on a thread of the explorer is not dropped at exit: its spill
    // directory goes here
    dnrg::spill::remove_all();
    result.unwrap_or_else(|e| {
        // user text (keys, values, paths) is part of messages: never raw control characters
        eprintln!("error: {}", printable(&e.to_string()));
        ExitCode::from(2)
    })
}
