//! Headless mode: the real app, worker and drawing code against ratatui's in-memory
//! `TestBackend`, driven by a key script (see [`super::script`]); the final screen is returned
//! as text. Wall-clock times are not shown (the app renders them as "—"), so a script that
//! waits for the solver gives the same screen on every machine.

use super::app::App;
use super::event::Event;
use super::event::JobId;
use super::script::Step;
use super::worker::Worker;
use super::{dispatch, ui};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Longest wait for the solver in `<wait>` and `<shells:N>`.
const WAIT_LIMIT: Duration = Duration::from_secs(300);

/// Process resources, sampled for `DNRG_TUI_STATS` (Linux; `None` elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub threads: Option<usize>,
    pub rss_kb: Option<u64>,
}

impl Sample {
    pub fn now() -> Sample {
        let threads = std::fs::read_dir("/proc/self/task").ok().map(|d| d.count());
        let rss_kb = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            });
        Sample { threads, rss_kb }
    }
}

/// What a headless session produced.
pub struct Outcome {
    pub screen: String,
    /// The first error (a wait that cannot succeed, a failed run); the screen is still shown.
    pub error: Option<String>,
    pub jobs: u64,
    /// After the first completed `<wait>` (the solver's thread pool exists by then).
    pub first_wait: Option<Sample>,
    pub peak_threads: Option<usize>,
    pub end: Sample,
    /// Longest time from a parameter change to the first shell of the job it started (jobs
    /// superseded before their first shell do not count), and that time for the last job.
    pub restart_max: Option<Duration>,
    pub restart_last: Option<Duration>,
}

struct Session<'a> {
    app: App,
    worker: &'a Worker,
    rx: &'a Receiver<Event>,
    terminal: Terminal<TestBackend>,
    dirty: bool,
    peak_threads: Option<usize>,
    /// When each job after the first was submitted, and how long until its first shell.
    submitted: HashMap<JobId, Instant>,
    restarts: HashMap<JobId, Duration>,
}

impl Session<'_> {
    fn handle(&mut self, event: Event) {
        if let Event::Shell { job, .. } = &event
            && let Some(at) = self.submitted.get(job)
        {
            self.restarts.entry(*job).or_insert_with(|| at.elapsed());
        }
        self.dirty |= self.app.handle(event);
        if let Some(job) = dispatch(&mut self.app, self.worker) {
            self.submitted.insert(job, Instant::now());
        }
        // a superseded job's runner may come and go between two steps of the script
        self.peak_threads = self.peak_threads.max(Sample::now().threads);
    }

    /// Handle what has arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            self.handle(event);
        }
    }

    /// Handle events until `done` holds; `Err` after [`WAIT_LIMIT`].
    fn wait_until(&mut self, what: &str, done: impl Fn(&App) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !done(&self.app) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("timed out after {WAIT_LIMIT:?} waiting for {what}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the solver threads are gone".into());
                }
            }
        }
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(event) => self.handle(event),
                Err(_) => break,
            }
        }
    }

    fn draw(&mut self) {
        if self.dirty {
            let app = &self.app;
            // TestBackend cannot fail
            let _ = self.terminal.draw(|f| ui::draw(f, app));
            self.dirty = false;
        }
        let threads = Sample::now().threads;
        self.peak_threads = self.peak_threads.max(threads);
    }

    fn step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Key(key) => {
                self.handle(Event::Key(key));
                self.drain();
            }
            Step::WaitDone => self.wait_until("the run (or the fit, or the spectrum)", |app| {
                !app.run.is_running() && !app.fit_running() && !app.spectrum_busy()
            })?,
            Step::WaitSpectrum(n) => {
                let reached = |app: &App| app.spectrum_stage().map(|s| s.shells_done() >= n);
                self.wait_until(&format!("<spectrum:{n}>"), |app| {
                    reached(app) == Some(true)
                        || (!app.run.is_running() && !app.fit_running() && !app.spectrum_busy())
                })?;
                if reached(&self.app) != Some(true) {
                    return Err(format!(
                        "<spectrum:{n}>: no spectrum job reached {n} shells (is the Spectrum \
                         panel open (a)?)"
                    ));
                }
            }
            Step::WaitShells(n) => {
                self.wait_until(&format!("{n} shells"), |app| {
                    app.run.shells.len() >= n || !app.run.is_running()
                })?;
                let shown = self.app.run.shells.len();
                if shown < n {
                    return Err(format!("<shells:{n}>: the run ended with {shown} shells"));
                }
            }
            Step::Sleep(d) => self.sleep(d),
            Step::Resize(w, h) => {
                self.terminal.backend_mut().resize(w, h);
                self.handle(Event::Resize(w, h));
            }
            Step::Paste(text) => {
                self.handle(Event::Paste(text));
                self.drain();
            }
        }
        Ok(())
    }
}

pub fn run(
    mut app: App,
    worker: &Worker,
    rx: &Receiver<Event>,
    size: (u16, u16),
    steps: Vec<Step>,
) -> Outcome {
    dispatch(&mut app, worker);
    let terminal = Terminal::new(TestBackend::new(size.0, size.1)).expect("in-memory terminal");
    let mut s = Session {
        app,
        worker,
        rx,
        terminal,
        dirty: true,
        peak_threads: None,
        submitted: HashMap::new(),
        restarts: HashMap::new(),
    };
    s.draw();
    let mut error = None;
    let mut first_wait = None;
    for step in steps {
        if s.app.quit {
            break;
        }
        let waited = step == Step::WaitDone;
        if let Err(e) = s.step(step) {
            error = Some(e);
            break;
        }
        s.draw();
        if waited && first_wait.is_none() {
            first_wait = Some(Sample::now());
        }
    }
    if error.is_none()
        && let Some(e) = &s.app.run.error
    {
        error = Some(format!("run failed: {e}"));
    }
    s.dirty = true;
    s.draw();
    Outcome {
        screen: screen_text(s.terminal.backend().buffer()),
        error,
        jobs: s.app.jobs_started(),
        first_wait,
        peak_threads: s.peak_threads,
        end: Sample::now(),
        restart_max: s.restarts.values().max().copied(),
        restart_last: s
            .submitted
            .keys()
            .max()
            .and_then(|last| s.restarts.get(last).copied()),
    }
}

/// The buffer as lines of text, trailing blanks removed.
pub fn screen_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(area.x + x, area.y + y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
