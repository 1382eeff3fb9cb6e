//! `dnrg run`: one NRG run from a preset to JSON Lines or CSV records.
//!
//! With `--out FILE` the records go to a temporary file next to FILE that is renamed into
//! place only when the run is complete, so an error or Ctrl-C never leaves a partial file.

use super::{CliError, PresetArgs, signals};
use clap::Args;
use dnrg::files::{OutputFile, fmt_bytes};
use dnrg::output::{Format, RecordWriter};
use dnrg::record::{Header, ShellRecord, Summary};
use dnrg::solver::Records;
use dnrg::text::printable;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    /// Output format: jsonl (every record) or csv (per-shell scalars)
    #[arg(long, value_name = "jsonl|csv", default_value = "jsonl")]
    pub format: Format,
    /// Write the records to FILE instead of stdout (only a complete run is written)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// No progress output on stderr
    #[arg(long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// One progress line per shell on stderr, even when it is not a terminal
    #[arg(long)]
    pub verbose: bool,
}

/// How long a run may take to stop after a signal before the process exits without it. The
/// solver stops before its next block, which is at once for ordinary runs; but one block of a
/// heavy shell is uninterruptible (at keep = 8000 one eigendecomposition took over 20 s), and
/// the exit then comes from here. Measured at keep = 8000 (8.5 GiB) with a 0.8 s grace: exit
/// 1.37 s after SIGINT, the rest being the release of the memory; hence 0.4 s.
pub(super) const GRACE: Duration = Duration::from_millis(400);

pub fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let preset = args.preset.load()?;
    let estimate = dnrg::estimate::check(&preset.config)
        .map_err(|e| CliError::new(format!("{}: {e}", preset.name)))?;
    if args.out.is_none() {
        super::check_stdout()?;
    }
    let sink = Sink::open(args.out.as_deref())?;
    let interrupt = Interrupt::install(sink.temp_path(), args.quiet);
    let mut run = dnrg::solver::records(&preset.config, interrupt.flag())
        .map_err(|e| CliError::new(format!("{}: {e}", preset.name)))?;
    if args.verbose {
        eprintln!(
            "estimate: {estimate} (budget nrg.max_memory = {})",
            fmt_bytes(preset.config.nrg.max_memory)
        );
    }

    let mut header = run.header().clone();
    header.preset = Some(preset.name.clone());
    header.description = Some(preset.description.clone()).filter(|d| !d.is_empty());

    let progress = Progress::new(&args, run.n_max());
    let mut sink = sink;
    let result = {
        let mut writer = args.format.writer(sink.writer());
        write_run(
            run.as_mut(),
            &header,
            writer.as_mut(),
            &progress,
            &interrupt,
        )
    };
    progress.finish();

    let summary = match result {
        Ok(summary) => summary,
        // The reader went away (`dnrg run | head`): nothing left to do, and nothing to report.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe && sink.is_stdout() => {
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(CliError::new(format!("writing {}: {e}", sink.name()))),
    };
    if let Some(signal) = interrupt.received() {
        if !args.quiet {
            match &args.out {
                Some(path) => eprintln!(
                    "interrupted; {} was not written",
                    printable(&path.display().to_string())
                ),
                None => eprintln!("interrupted after {} shells", summary.shells),
            }
        }
        return Ok(ExitCode::from(signals::exit_code(signal)));
    }
    sink.commit()?;
    if !args.quiet {
        for warning in &summary.warnings {
            eprintln!("warning: {}", printable(warning));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Header, every shell until the run is complete or interrupted, then the summary.
fn write_run(
    run: &mut dyn Records,
    header: &Header,
    writer: &mut dyn RecordWriter,
    progress: &Progress,
    interrupt: &Interrupt,
) -> io::Result<Summary> {
    writer.header(header)?;
    while !interrupt.requested() {
        // `None` also when the run was cancelled in the middle of a shell
        let Some(shell) = run.next() else {
            break;
        };
        progress.shell(&shell);
        writer.shell(&shell)?;
    }
    let summary = run.summary(interrupt.requested());
    writer.done(&summary)?;
    Ok(summary)
}

/// Where the records go.
pub(super) enum Sink {
    Stdout,
    /// A temporary file next to the target, renamed into place by [`Sink::commit`] (dropping
    /// it deletes it).
    File {
        file: OutputFile,
        path: PathBuf,
    },
}

impl Sink {
    /// Creating the temporary file up front checks that FILE is writable before any work.
    pub(super) fn open(out: Option<&Path>) -> Result<Sink, CliError> {
        let Some(path) = out else {
            return Ok(Sink::Stdout);
        };
        let file = OutputFile::create(path, true)
            .map_err(|e| CliError::new(format!("--out {}: {e}", path.display())))?;
        Ok(Sink::File {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Stdout is not locked for the whole run: a signal's deadline can take the lock between
    /// two records, so that no line is ever cut.
    pub(super) fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Sink::Stdout => Box::new(io::stdout()),
            Sink::File { file, .. } => Box::new(file),
        }
    }

    pub(super) fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    pub(super) fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    pub(super) fn temp_path(&self) -> Option<PathBuf> {
        match self {
            Sink::Stdout => None,
            Sink::File { file, .. } => Some(file.temp_path().to_path_buf()),
        }
    }

    /// Move the finished output into place.
    pub(super) fn commit(self) -> Result<(), CliError> {
        let Sink::File { file, path } = self else {
            return Ok(());
        };
        file.commit()
            .map_err(|e| CliError::new(format!("--out {}: {e}", path.display())))?;
        Ok(())
    }
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP: the first one cancels the run through its cancel flag
/// (the solver stops handing out blocks, the summary says "cancelled", no file is written);
/// if the run has not stopped after [`GRACE`], or on a second signal, the process exits at
/// once, removing the temporary output file first.
pub(super) struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    pub(super) fn install(temp: Option<PathBuf>, quiet: bool) -> Interrupt {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&flag);
        let exit_now = move |signal: i32| {
            if let Some(path) = &temp {
                let _ = std::fs::remove_file(path);
            }
            // the exit skips destructors: a spectrum's spill directory goes now
            dnrg::spill::remove_all();
            // wait for a record being written, so that no line is cut
            let _lock = io::stdout().lock();
            std::process::exit(signals::exit_code(signal).into());
        };
        let installed = signals::install(move |signal, count| {
            if count > 1 {
                exit_now(signal);
            }
            seen.store(true, Ordering::SeqCst);
            if !quiet {
                eprintln!("\nstopping (signal {signal}; again to stop at once)");
            }
            // the main thread normally ends the process well before this
            std::thread::sleep(GRACE);
            exit_now(signal);
        });
        if let Err(e) = installed {
            if !quiet {
                eprintln!("warning: Ctrl-C will not stop the run cleanly: {e}");
            }
        }
        Interrupt { flag }
    }

    pub(super) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(super) fn received(&self) -> Option<i32> {
        if self.requested() {
            Some(signals::received().unwrap_or(signals::SIGINT))
        } else {
            None
        }
    }
}

/// Progress on stderr: a bar on a terminal, lines with `--verbose`, nothing otherwise.
enum Progress {
    Silent,
    Bar(ProgressBar),
    Lines { n_max: usize, start: Instant },
}

impl Progress {
    fn new(args: &RunArgs, n_max: usize) -> Progress {
        if args.quiet {
            Progress::Silent
        } else if args.verbose {
            Progress::Lines {
                n_max,
                start: Instant::now(),
            }
        } else if io::stderr().is_terminal() {
            let style =
                ProgressStyle::with_template("shell {pos:>3}/{len} [{bar:32}] {msg} ({elapsed})")
                    .expect("valid progress template")
                    .progress_chars("=> ");
            let bar = ProgressBar::new(n_max as u64).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            Progress::Bar(bar)
        } else {
            Progress::Silent
        }
    }

    fn shell(&self, shell: &ShellRecord) {
        match self {
            Progress::Silent => {}
            Progress::Bar(bar) => {
                bar.set_position(shell.n as u64);
                bar.set_message(format!("T = {:.2e}", shell.t));
                for warning in &shell.warnings {
                    let warning = printable(warning);
                    bar.println(format!("warning: shell {}: {warning}", shell.n));
                }
            }
            Progress::Lines { n_max, start } => {
                eprintln!(
                    "shell {}/{n_max}  T = {:.3e}  kept {}/{}  ({:.1} s)",
                    shell.n,
                    shell.t,
                    shell.kept,
                    shell.states,
                    start.elapsed().as_secs_f64()
                );
                for warning in &shell.warnings {
                    eprintln!("warning: shell {}: {}", shell.n, printable(warning));
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
