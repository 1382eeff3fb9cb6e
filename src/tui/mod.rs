//! The interactive explorer (`dnrg`, `dnrg tui`): a terminal UI on top of the library's
//! solver, reading the same shell records as `dnrg run`. No physics here: the views only
//! display records, and parameters go through the preset machinery.
//!
//! Threads: the UI thread owns the [`app::App`] and only handles events and draws; two
//! long-lived runner threads ([`worker`]) compute the newest job and, beside it, at most one
//! superseded job that finishes its current block; in a real terminal one more thread reads
//! keys. Everything reaches the UI thread as an [`event::Event`] on one channel.

mod app;
mod event;
mod export;
mod fields;
mod fitpanel;
mod flow;
mod headless;
mod help;
mod input;
mod parameters;
mod plot;
mod presets;
mod prompt;
mod script;
mod sensitivities;
mod spectrum;
mod status;
mod terminal;
mod theme;
mod thermo;
mod ui;
mod worker;

pub use script::MAX_SIDE;

use app::{App, AppInit};
use dnrg::preset::{LoadedPreset, PresetStore};
use std::io::IsTerminal;
use std::sync::mpsc;
use worker::Worker;

/// Headless mode: virtual terminal size and key script.
pub struct Headless {
    pub size: (u16, u16),
    pub keys: String,
}

pub struct Options {
    pub preset: LoadedPreset,
    pub headless: Option<Headless>,
}

#[derive(Debug)]
pub enum Error {
    /// No terminal to run in (exit code 1).
    Unavailable(String),
    /// Anything else (exit code 2).
    Failed(String),
}

/// Hand the app's newest job, if any, to the worker; its id.
fn dispatch(app: &mut App, worker: &Worker) -> Option<event::JobId> {
    let job = app.take_job()?;
    let id = job.id;
    worker.submit(job);
    Some(id)
}

/// Run the explorer; in headless mode, print the final screen to stdout.
pub fn run(options: Options) -> Result<(), Error> {
    let theme = theme::Theme::from_env();
    let store = PresetStore::from_env();
    let (tx, rx) = mpsc::channel();
    let failed = |what: &str, e: std::io::Error| Error::Failed(format!("{what}: {e}"));
    match options.headless {
        Some(h) => {
            let steps = script::parse(&h.keys).map_err(Error::Failed)?;
            let worker = Worker::spawn(tx).map_err(|e| failed("starting the solver threads", e))?;
            let app = App::new(AppInit {
                theme,
                show_times: false,
                panic_key: std::env::var_os(app::PANIC_KEY_ENV).is_some(),
                store,
                preset: options.preset,
                size: h.size,
            });
            let outcome = headless::run(app, &worker, &rx, h.size, steps);
            print!("{}", outcome.screen);
            if std::env::var_os("DNRG_TUI_STATS").is_some() {
                let first = outcome.first_wait.unwrap_or_default();
                let opt = |v: Option<u64>| v.map_or("n/a".into(), |v| v.to_string());
                let micros = |d: Option<std::time::Duration>| opt(d.map(|d| d.as_micros() as u64));
                eprintln!(
                    "stats: jobs={} threads_first_wait={} threads_peak={} threads_end={} \
                     rss_kb_first_wait={} rss_kb_end={} jobs_at_once_peak={} \
                     restart_us_max={} restart_us_last={} linger_us_max={}",
                    outcome.jobs,
                    opt(first.threads.map(|t| t as u64)),
                    opt(outcome.peak_threads.map(|t| t as u64)),
                    opt(outcome.end.threads.map(|t| t as u64)),
                    opt(first.rss_kb),
                    opt(outcome.end.rss_kb),
                    worker.peak_running(),
                    micros(outcome.restart_max),
                    micros(outcome.restart_last),
                    worker.linger_max().as_micros(),
                );
            }
            worker.shutdown(std::time::Duration::from_secs(5));
            match outcome.error {
                Some(e) => Err(Error::Failed(e)),
                None => Ok(()),
            }
        }
        None => {
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                return Err(Error::Unavailable(
                    "the explorer needs a terminal; use `dnrg run` for batch runs or \
                     `dnrg tui --headless` for scripted checks"
                        .into(),
                ));
            }
            let worker =
                Worker::spawn(tx.clone()).map_err(|e| failed("starting the solver threads", e))?;
            // SIGTERM, SIGHUP (the terminal went away) and SIGINT from `kill`: quit like `q`,
            // restoring the terminal; should the loop not get there within a second, restore
            // it from here and exit
            let to_app = tx.clone();
            let _ = crate::cli::signals::install(move |signal, count| {
                if count == 1 && to_app.send(event::Event::Signal).is_ok() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                terminal::restore();
                std::process::exit(crate::cli::signals::exit_code(signal).into());
            });
            let app = App::new(AppInit {
                theme,
                show_times: true,
                panic_key: std::env::var_os(app::PANIC_KEY_ENV).is_some(),
                store,
                preset: options.preset,
                size: (80, 24),
            });
            terminal::run(app, worker, tx, rx).map_err(|e| failed("terminal", e))
        }
    }
}
