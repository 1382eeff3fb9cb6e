//! `dnrg run`: one NRG run from a preset to JSON Lines or CSV records.
//!
//! With `--out FILE` the records go to a temporary file next to FILE that is renamed into
//! place only when the run is complete, so an error or Ctrl-C never leaves a partial file.

use super::{CliError, PresetArgs};
use clap::Args;
use dnrg::output::{Format, RecordWriter};
use dnrg::record::{Header, ShellRecord, Summary};
use dnrg::solver::Run;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::NamedTempFile;

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

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;

pub fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let preset = args.preset.load()?;
    let mut sink = Sink::open(args.out.as_deref())?;
    let interrupt = Interrupt::install(sink.temp_path(), args.quiet);
    let mut run =
        Run::new(&preset.config).map_err(|e| CliError::new(format!("{}: {e}", preset.name)))?;

    let mut header = run.header().clone();
    header.preset = Some(preset.name.clone());
    header.description = Some(preset.description.clone()).filter(|d| !d.is_empty());

    let progress = Progress::new(&args, run.n_max());
    let result = {
        let mut writer = args.format.writer(sink.writer());
        write_run(&mut run, &header, writer.as_mut(), &progress, &interrupt)
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
    if summary.status == "cancelled" {
        if !args.quiet {
            match &args.out {
                Some(path) => eprintln!("interrupted; {} was not written", path.display()),
                None => eprintln!("interrupted after {} shells", summary.shells),
            }
        }
        return Ok(ExitCode::from(INTERRUPTED));
    }
    sink.commit()?;
    if !args.quiet {
        for warning in &summary.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Header, every shell until the run is complete or interrupted, then the summary.
fn write_run(
    run: &mut Run,
    header: &Header,
    writer: &mut dyn RecordWriter,
    progress: &Progress,
    interrupt: &Interrupt,
) -> io::Result<Summary> {
    writer.header(header)?;
    let mut cancelled = false;
    loop {
        if interrupt.requested() {
            cancelled = true;
            break;
        }
        let Some(shell) = run.next_shell() else {
            break;
        };
        progress.shell(&shell);
        writer.shell(&shell)?;
    }
    let summary = run.summary(cancelled);
    writer.done(&summary)?;
    Ok(summary)
}

/// Where the records go.
enum Sink {
    Stdout,
    /// A temporary file in the target's directory, renamed to `path` by [`Sink::commit`]
    /// (dropping it deletes it).
    File {
        tmp: NamedTempFile,
        path: PathBuf,
    },
}

impl Sink {
    /// Creating the temporary file up front checks that FILE is writable before any work.
    fn open(out: Option<&Path>) -> Result<Sink, CliError> {
        let Some(path) = out else {
            return Ok(Sink::Stdout);
        };
        let fail = |reason: String| CliError::new(format!("--out {}: {reason}", path.display()));
        if path.is_dir() {
            return Err(fail("is a directory".into()));
        }
        // The finished file replaces FILE by a rename. Through a symlink, replace its target
        // (not the link); a pipe or device would be replaced by a regular file, so refuse it.
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                resolved = std::fs::canonicalize(path)
                    .map_err(|e| fail(format!("cannot follow the link: {e}")))?;
                resolved.as_path()
            }
            _ => path,
        };
        if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
            return Err(fail(
                "not a regular file (for a pipe or device, redirect stdout instead)".into(),
            ));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".dnrg-").suffix(".tmp");
        // Like a plain `File::create`: readable by others unless the umask says otherwise.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        if !dir.is_dir() {
            let what = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(fail(format!("'{}' {what}", dir.display())));
        }
        let tmp = builder.tempfile_in(dir).map_err(|e| {
            // tempfile's message names the random temporary path; the OS error is enough.
            let reason = e.raw_os_error().map_or(e.kind().to_string(), |code| {
                io::Error::from_raw_os_error(code).to_string()
            });
            fail(format!("cannot write in '{}': {reason}", dir.display()))
        })?;
        Ok(Sink::File {
            tmp,
            path: path.to_path_buf(),
        })
    }

    fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Sink::Stdout => Box::new(io::stdout().lock()),
            Sink::File { tmp, .. } => Box::new(tmp.as_file_mut()),
        }
    }

    fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    fn temp_path(&self) -> Option<PathBuf> {
        match self {
            Sink::Stdout => None,
            Sink::File { tmp, .. } => Some(tmp.path().to_path_buf()),
        }
    }

    /// Move the finished output into place.
    fn commit(self) -> Result<(), CliError> {
        let Sink::File { tmp, path } = self else {
            return Ok(());
        };
        let fail = |e: io::Error| CliError::new(format!("--out {}: {e}", path.display()));
        tmp.as_file().sync_all().map_err(fail)?;
        tmp.persist(&path).map_err(|e| fail(e.error))?;
        Ok(())
    }
}

/// Ctrl-C handling: the first press stops the run after the current shell; a second one exits
/// at once (removing the temporary output file first).
struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    fn install(temp: Option<PathBuf>, quiet: bool) -> Interrupt {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&flag);
        let installed = ctrlc::set_handler(move || {
            if seen.swap(true, Ordering::SeqCst) {
                if let Some(path) = &temp {
                    let _ = std::fs::remove_file(path);
                }
                std::process::exit(INTERRUPTED.into());
            }
            if !quiet {
                eprintln!("\nstopping after the current shell (Ctrl-C again to stop now)");
            }
        });
        if let Err(e) = installed {
            if !quiet {
                eprintln!("warning: Ctrl-C will not stop the run cleanly: {e}");
            }
        }
        Interrupt { flag }
    }

    fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
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
                    eprintln!("warning: shell {}: {warning}", shell.n);
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
