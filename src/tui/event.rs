//! Everything the UI thread reacts to arrives as one [`Event`] on one channel: keys and resizes
//! from the terminal (or the headless key script), and the solver's messages from the worker.
//! Solver messages carry the id of the job they belong to; the app drops stale ones.

use crossterm::event::KeyEvent;
use dnrg::params::RunConfig;
use dnrg::record::{Header, ShellRecord, Summary};
use dnrg::workflow::fit::{FitResult, Iteration};
use std::time::Duration;

/// Identifies one solver job; every parameter change starts a new one.
pub type JobId = u64;

#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Resize(u16, u16),
    /// The job's run was set up: resolved parameters and the chain.
    Started {
        job: JobId,
        header: Box<Header>,
    },
    /// One more shell, with the time it took.
    Shell {
        job: JobId,
        record: Box<ShellRecord>,
        elapsed: Duration,
    },
    /// The job ran to the last shell.
    Done {
        job: JobId,
        summary: Box<Summary>,
    },
    /// The job waits for a superseded one to end: both would not fit in the memory budget.
    Waiting {
        job: JobId,
        why: String,
    },
    /// The job could not run (or the solver panicked).
    Failed {
        job: JobId,
        error: String,
    },
    /// One more run of a fit job: where it stands.
    FitStep {
        job: JobId,
        step: Box<Iteration>,
    },
    /// The fit job finished (converged or stopped): the parameters of its best run, and
    /// the result with that run's records.
    FitDone {
        job: JobId,
        config: Box<RunConfig>,
        result: Box<FitResult>,
    },
    /// Where the spectral function of a spectrum job stands.
    SpectrumProgress {
        job: JobId,
        stage: super::spectrum::Stage,
    },
    /// The spectrum job is complete.
    SpectrumDone {
        job: JobId,
        spectrum: Box<super::spectrum::SpectrumData>,
    },
    /// Time passed (the redraw throttle wakes the loop with this).
    Tick,
    /// Text pasted into the terminal (bracketed paste): one edit, however long.
    Paste(String),
    /// SIGINT, SIGTERM or SIGHUP arrived: quit, restoring the terminal.
    Signal,
}
