//! `dnrg sweep`: run the points of a sweep file locally, as one Slurm shard, or write the
//! Slurm array script for them.

use super::CliError;
use super::run::GRACE;
use clap::Args;
use dnrg::workflow::exec::{self, Event, Outcome, Shard};
use dnrg::workflow::slurm::{self, SlurmOptions};
use dnrg::workflow::sweep::{self, Sweep};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The sweep file (TOML: preset, derive, combine, [set], [axes]; see README)
    #[arg(value_name = "SWEEP.toml")]
    pub file: PathBuf,
    /// Directory of the results [default: <file stem>.sweep in the current directory]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Points run at the same time [default: $SLURM_CPUS_PER_TASK, else the number of cores]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run only shard I of N (cost-balanced) [default in a Slurm array task:
    /// SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT]
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write DIR/sweep.sbatch, a Slurm array script running the shards, instead of running
    #[arg(long)]
    pub slurm: bool,
    /// Slurm array tasks [default: the number of points, at most 16]
    #[arg(long, value_name = "N", requires = "slurm")]
    pub tasks: Option<usize>,
    /// Slurm partition
    #[arg(long, value_name = "P", requires = "slurm")]
    pub partition: Option<String>,
    /// Slurm time limit per task (e.g. 30, 2:00:00)
    #[arg(long, value_name = "T", requires = "slurm")]
    pub time: Option<String>,
    /// CPUs per Slurm task (points run at once in a task)
    #[arg(long, value_name = "C", default_value_t = 1, requires = "slurm")]
    pub cpus: usize,
    /// Submit the script with sbatch and print the job id
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// No progress output
    #[arg(long)]
    pub quiet: bool,
}

pub fn sweep(args: SweepArgs) -> Result<ExitCode, CliError> {
    let sweep = sweep::load(&args.file).map_err(|e| CliError::new(e.to_string()))?;
    let dir = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .file
            .file_stem()
            .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}.sweep"))
    });
    exec::check_out_dir(&dir).map_err(|e| CliError::new(format!("--out {e}")))?;
    if args.jobs == Some(0) {
        return Err(CliError::new("--jobs 0: must be at least 1"));
    }
    if args.tasks == Some(0) {
        return Err(CliError::new("--tasks 0: must be at least 1"));
    }
    for (flag, value) in [("--partition", &args.partition), ("--time", &args.time)] {
        if let Some(v) = value {
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                return Err(CliError::new(format!(
                    "{flag} '{v}': must be one word without quotes"
                )));
            }
        }
    }
    if args.slurm && args.cpus == 0 {
        return Err(CliError::new("--cpus 0: must be at least 1"));
    }
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s).map_err(|e| CliError::new(format!("--shard {e}")))?),
        None if args.slurm => None,
        None => Shard::from_env(|k| std::env::var(k).ok()).map_err(CliError::new)?,
    };
    sweep
        .prepare_dir(&dir)
        .map_err(|e| CliError::new(e.to_string()))?;
    if args.slurm {
        return write_slurm(&args, &sweep, &dir);
    }

    let selection = exec::select(&sweep, shard);
    let (todo, finished) = exec::pending(&sweep, &dir, &selection);
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    if !args.quiet {
        let scope = match shard {
            Some(s) => format!(
                "shard {}/{} ({} of {} points)",
                s.index,
                s.count,
                selection.len(),
                sweep.points.len()
            ),
            None => format!("{} points", sweep.points.len()),
        };
        eprintln!(
            "sweep {}: {scope}; {} already finished, {} to run, {jobs} at a time, into {}",
            args.file.display(),
            finished.len(),
            todo.len(),
            dir.display()
        );
    }
    let cancel = Arc::new(AtomicBool::new(false));
    install_interrupt(Arc::clone(&cancel), args.quiet);
    let progress = Progress::new(args.quiet, todo.len());
    let report = exec::run_points(&sweep, &dir, &todo, jobs, &cancel, &|event| {
        progress.event(event)
    });
    progress.finish();
    if report.cancelled {
        if !args.quiet {
            eprintln!(
                "interrupted: {} points finished in this run; run the same command again to resume",
                report.done
            );
        }
        let signal = super::signals::received().unwrap_or(super::signals::SIGINT);
        return Ok(ExitCode::from(super::signals::exit_code(signal)));
    }
    if !report.failed.is_empty() {
        let list: Vec<String> = report
            .failed
            .iter()
            .map(|(i, e)| format!("point {i} ({}): {e}", sweep.points[*i].label()))
            .collect();
        return Err(CliError::new(format!(
            "{} of {} points failed: {}",
            report.failed.len(),
            todo.len(),
            list.join("; ")
        )));
    }
    if !args.quiet {
        eprintln!(
            "done: {} run, {} skipped; merge with: dnrg merge {}",
            report.done,
            finished.len(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn default_jobs() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::fs::canonicalize(path)
        .map_err(|e| CliError::new(format!("{}: cannot resolve: {e}", path.display())))
}

fn write_slurm(args: &SweepArgs, sweep: &Sweep, dir: &Path) -> Result<ExitCode, CliError> {
    let dir = absolute(dir)?;
    let file = absolute(&args.file)?;
    let dnrg = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot locate the dnrg binary: {e}")))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| CliError::new(format!("{}: cannot create: {e}", logs.display())))?;
    let stem = file
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    let options = SlurmOptions {
        tasks: args.tasks.unwrap_or(sweep.points.len().clamp(1, 16)),
        partition: args.partition.clone(),
        time: args.time.clone(),
        cpus: args.cpus,
        job_name: format!(
            "dnrg-{}",
            stem.replace(
                |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'),
                "_"
            )
        ),
    };
    let script = slurm::script(&dnrg, &file, &dir, &options);
    let path = dir.join("sweep.sbatch");
    std::fs::write(&path, script)
        .map_err(|e| CliError::new(format!("{}: cannot write: {e}", path.display())))?;
    if !args.submit {
        println!("{}", path.display());
        if !args.quiet {
            eprintln!(
                "wrote {} ({} array tasks for {} points); submit with: sbatch {}",
                path.display(),
                options.tasks,
                sweep.points.len(),
                path.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .map_err(|e| CliError::new(format!("cannot run sbatch: {e}")))?;
    if !out.status.success() {
        return Err(CliError::new(format!(
            "sbatch {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("{id}");
    if !args.quiet {
        eprintln!(
            "submitted job {id} ({} tasks); when it is done: dnrg merge {}",
            options.tasks,
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// First signal (Ctrl-C, SIGTERM, SIGHUP): stop the runs in progress (nothing partial is
/// written); if they have not stopped after [`GRACE`] (one large eigendecomposition runs to
/// its end), or on a second signal, exit at once, deleting the files of the points in progress.
fn install_interrupt(cancel: Arc<AtomicBool>, quiet: bool) {
    let installed = super::signals::install(move |signal, count| {
        cancel.store(true, Ordering::SeqCst);
        if count == 1 {
            if !quiet {
                eprintln!("\nstopping the points in progress (Ctrl-C again to stop now)");
            }
            // the main thread normally ends the process well before this
            std::thread::sleep(GRACE);
        }
        let _no_new_files = exec::remove_files_in_progress();
        std::process::exit(super::signals::exit_code(signal).into());
    });
    if let Err(e) = installed {
        if !quiet {
            eprintln!("warning: Ctrl-C will not stop the sweep cleanly: {e}");
        }
    }
}

/// Progress on stderr: a bar with ETA on a terminal, one line per finished point otherwise.
enum Progress {
    Silent,
    Bar(ProgressBar),
    Lines {
        total: usize,
        state: Mutex<(usize, Instant)>,
    },
}

impl Progress {
    fn new(quiet: bool, total: usize) -> Progress {
        if quiet || total == 0 {
            Progress::Silent
        } else if io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "points {pos}/{len} [{bar:30}] {elapsed} elapsed, ETA {eta} {msg}",
            )
            .expect("valid progress template")
            .progress_chars("=> ");
            let bar = ProgressBar::new(total as u64).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                state: Mutex::new((0, Instant::now())),
            }
        }
    }

    fn event(&self, event: Event) {
        let Event::Finished {
            point,
            outcome,
            elapsed,
        } = event
        else {
            return;
        };
        let what = match outcome {
            Outcome::Done { warnings } if warnings.is_empty() => "done".to_string(),
            Outcome::Done { warnings } => format!("done, warning: {}", warnings.join("; ")),
            Outcome::Failed(e) => format!("FAILED: {e}"),
            Outcome::Cancelled => return,
        };
        match self {
            Progress::Silent => {}
            Progress::Bar(bar) => {
                bar.inc(1);
                if !matches!(outcome, Outcome::Done { warnings } if warnings.is_empty()) {
                    bar.println(format!("point {} ({}): {what}", point.index, point.label()));
                }
                bar.set_message(format!("last: point {}", point.index));
            }
            Progress::Lines { total, state } => {
                let mut s = state.lock().expect("no panics while locked");
                s.0 += 1;
                let done = s.0;
                let spent = s.1.elapsed().as_secs_f64();
                let eta = spent / done as f64 * (*total - done) as f64;
                eprintln!(
                    "[{done}/{total}] point {} ({}): {what} in {:.1} s; ETA {:.0} s",
                    point.index,
                    point.label(),
                    elapsed.as_secs_f64(),
                    eta
                );
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
