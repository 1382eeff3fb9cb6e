//! The solver thread. One long-lived thread takes jobs from a channel and the latest job
//! wins: queued older jobs are skipped, and a running job is abandoned as soon as a newer one
//! is submitted. Two mechanisms, both set by [`Worker::submit`] on the UI thread: a shared
//! generation counter (the id of the newest job), checked before every shell, and the running
//! job's cancel flag ([`Run::with_cancel_flag`]), which the solver checks between the stages of
//! a shell, so that a restart never waits for a whole heavy shell. Every message the worker
//! sends is tagged with its job id.

use super::event::{Event, JobId};
use dnrg::params::RunConfig;
use dnrg::solver::Run;
use dnrg::workflow::fit::{self, FitSpec, Free, Target};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Name of the solver thread (the panic hook leaves the terminal alone for it: the worker
/// catches the panic and reports it as a failed job).
pub const THREAD_NAME: &str = "dnrg-solver";

/// Generation value that cancels everything (shutdown).
const STOP: JobId = u64::MAX;

#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub config: RunConfig,
    pub kind: JobKind,
}

#[derive(Debug, Clone)]
pub enum JobKind {
    /// Compute the run of `config`, streaming its shells.
    Run,
    /// Fit free parameters of `config` to targets (Levenberg–Marquardt of
    /// [`dnrg::workflow::fit`]), streaming each iteration.
    Fit(FitRequest),
    /// The spectral function A(ω) of `config` at temperature `t` (the explorer's settings of
    /// [`super::spectrum::compute`]), reporting progress. Submitted once the run of `config`
    /// is complete; it computes its own forward pass.
    Spectrum { t: f64 },
    /// Nothing: submitting it cancels the running job.
    Cancel,
}

#[derive(Debug, Clone)]
pub struct FitRequest {
    pub free: Vec<Free>,
    pub targets: Vec<Target>,
    pub max_runs: usize,
    pub xtol: f64,
}

/// What the UI thread and the solver thread share.
#[derive(Default)]
struct Shared {
    /// Id of the newest job.
    latest: AtomicU64,
    /// Cancel flag of the job being computed.
    running: Mutex<Arc<AtomicBool>>,
}

impl Shared {
    fn cancel_running(&self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .store(true, Ordering::SeqCst);
    }

    fn is_current(&self, id: JobId) -> bool {
        self.latest.load(Ordering::SeqCst) == id
    }
}

pub struct Worker {
    jobs: Option<Sender<Job>>,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start the solver thread; it sends its messages to `events`.
    pub fn spawn(events: Sender<Event>) -> std::io::Result<Worker> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || serve(rx, &theirs, &events))?;
        Ok(Worker {
            jobs: Some(jobs),
            shared,
            handle: Some(handle),
        })
    }

    /// Start `job`, cancelling whatever runs now. Ids must increase.
    pub fn submit(&self, job: Job) {
        self.shared.latest.store(job.id, Ordering::SeqCst);
        self.shared.cancel_running();
        if let Some(jobs) = &self.jobs {
            // The thread only goes away on shutdown, so a failed send means nothing to do.
            let _ = jobs.send(job);
        }
    }

    /// Cancel the running job and stop the thread, waiting at most `patience` for it (the
    /// process may exit without it).
    pub fn shutdown(mut self, patience: Duration) {
        self.stop();
        if let Some(handle) = self.handle.take() {
            let deadline = Instant::now() + patience;
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    fn stop(&mut self) {
        self.shared.latest.store(STOP, Ordering::SeqCst);
        self.shared.cancel_running();
        self.jobs.take();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn serve(rx: Receiver<Job>, shared: &Shared, events: &Sender<Event>) {
    while let Ok(mut job) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            job = newer;
        }
        if !shared.is_current(job.id) {
            continue;
        }
        if run_job(&job, shared, events).is_err() {
            return; // the UI is gone
        }
    }
}

/// Compute the job's shells until it is complete or superseded. `Err` when the UI is gone.
fn run_job(job: &Job, shared: &Shared, events: &Sender<Event>) -> Result<(), ()> {
    let id = job.id;
    let send = |event: Event| events.send(event).map_err(|_| ());
    let flag = Arc::new(AtomicBool::new(false));
    *shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&flag);
    // a job submitted before the flag was in place still cancels this one: check again
    if !shared.is_current(id) {
        return Ok(());
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), ()> {
        if let JobKind::Spectrum { t } = job.kind {
            return run_spectrum(job, t, Arc::clone(&flag), events);
        }
        // refused before anything is allocated when it would not fit in nrg.max_memory
        if let Err(e) = dnrg::estimate::check(&job.config) {
            return send(Event::Failed {
                job: id,
                error: e.to_string(),
            });
        }
        match &job.kind {
            JobKind::Run => {}
            JobKind::Spectrum { .. } | JobKind::Cancel => return Ok(()),
            JobKind::Fit(request) => {
                return run_fit(job, request, Arc::clone(&flag), events);
            }
        }
        let mut run = match Run::new(&job.config) {
            Ok(run) => run.with_cancel_flag(flag),
            Err(e) => {
                return send(Event::Failed {
                    job: id,
                    error: e.to_string(),
                });
            }
        };
        send(Event::Started {
            job: id,
            header: Box::new(run.header().clone()),
        })?;
        loop {
            if !shared.is_current(id) {
                return Ok(()); // superseded: cancelled between shells
            }
            let start = Instant::now();
            let Some(record) = run.next_shell() else {
                break;
            };
            send(Event::Shell {
                job: id,
                record: Box::new(record),
                elapsed: start.elapsed(),
            })?;
        }
        if run.is_cancelled() {
            return Ok(()); // superseded in the middle of a shell
        }
        send(Event::Done {
            job: id,
            summary: Box::new(run.summary(false)),
        })
    }));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            send(Event::Failed {
                job: id,
                error: format!("the solver panicked: {message}"),
            })
        }
    }
}

/// A spectrum job: the FDM passes (progress after every shell), then the broadening.
fn run_spectrum(
    job: &Job,
    t: f64,
    flag: Arc<AtomicBool>,
    events: &Sender<Event>,
) -> Result<(), ()> {
    let id = job.id;
    // the FDM keeps every shell's eigenvectors: refused when that would not fit
    if let Err(e) = dnrg::estimate::check_spectrum(&job.config) {
        return events
            .send(Event::Failed {
                job: id,
                error: e.to_string(),
            })
            .map_err(|_| ());
    }
    // progress may come from the library's thread pool; a failed send means the UI is gone,
    // which the final send reports
    let report = |stage| {
        let _ = events.send(Event::SpectrumProgress { job: id, stage });
    };
    let event = match super::spectrum::compute(&job.config, t, Arc::clone(&flag), &report) {
        Ok(Some(spectrum)) if !flag.load(Ordering::SeqCst) => Event::SpectrumDone {
            job: id,
            spectrum: Box::new(spectrum),
        },
        Ok(_) => return Ok(()), // superseded
        Err(error) => Event::Failed { job: id, error },
    };
    events.send(event).map_err(|_| ())
}

/// A fit job: one derivative run per iteration, each iteration sent as it is done.
fn run_fit(
    job: &Job,
    request: &FitRequest,
    flag: Arc<AtomicBool>,
    events: &Sender<Event>,
) -> Result<(), ()> {
    let id = job.id;
    let spec = FitSpec::from_config(
        "explorer fit",
        job.config.clone(),
        request.free.clone(),
        request.targets.clone(),
        request.max_runs,
        request.xtol,
    )
    .with_cancel_flag(flag);
    let result = fit::levenberg_marquardt(&spec, &mut |step| {
        // a failed send means the UI is gone; the next run notices nothing, which is fine
        let _ = events.send(Event::FitStep {
            job: id,
            step: Box::new(step.clone()),
        });
    });
    if spec.is_cancelled() {
        return Ok(()); // superseded: a newer job or Esc
    }
    let event = match result {
        Ok(result) => match spec.config(&result.theta, true) {
            Ok(config) => Event::FitDone {
                job: id,
                config: Box::new(config),
                result: Box::new(result),
            },
            Err(e) => Event::Failed {
                job: id,
                error: e.to_string(),
            },
        },
        Err(e) => Event::Failed {
            job: id,
            error: e.to_string(),
        },
    };
    events.send(event).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::spectrum::Stage;
    use super::*;

    fn quick(keep: usize) -> RunConfig {
        let mut config = RunConfig::default();
        config.nrg.t_min = 1e-3;
        config.nrg.keep = keep;
        config
    }

    /// Latest wins: after a burst of jobs only the last one completes, and nothing of it is
    /// mixed with the others (each message carries its job id; the last job's shells arrive
    /// in order and complete).
    #[test]
    fn latest_job_wins_and_messages_are_tagged() {
        let (tx, rx) = mpsc::channel();
        let worker = Worker::spawn(tx).unwrap();
        for id in 1..=100 {
            worker.submit(Job {
                id,
                config: quick(50 + id as usize),
                kind: JobKind::Run,
            });
        }
        let mut last_shells = Vec::new();
        let mut done = None;
        while done.is_none() {
            match rx
                .recv_timeout(Duration::from_secs(60))
                .expect("worker answers")
            {
                Event::Shell {
                    job: 100, record, ..
                } => last_shells.push(record.n),
                Event::Done { job: 100, summary } => done = Some(summary),
                Event::Failed { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        let summary = done.unwrap();
        assert_eq!(summary.status, "complete");
        assert_eq!(last_shells, (0..summary.shells).collect::<Vec<_>>());
        drop(worker);
        // the thread is gone and dropped its sender: the channel drains and closes
        while rx.recv_timeout(Duration::from_secs(10)).is_ok() {}
    }

    #[test]
    fn invalid_parameters_fail_the_job_not_the_worker() {
        let (tx, rx) = mpsc::channel();
        let worker = Worker::spawn(tx).unwrap();
        let mut bad = quick(50);
        bad.nrg.lambda = 0.5;
        worker.submit(Job {
            id: 1,
            config: bad,
            kind: JobKind::Run,
        });
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Event::Failed { job: 1, error } => assert!(error.contains("nrg.Lambda"), "{error}"),
            other => panic!("unexpected {other:?}"),
        }
        worker.submit(Job {
            id: 2,
            config: quick(50),
            kind: JobKind::Run,
        });
        loop {
            if let Event::Done { job: 2, .. } = rx.recv_timeout(Duration::from_secs(60)).unwrap() {
                break;
            }
        }
    }

    /// A symmetric SIAM whose spectrum takes a few tenths of a second (23 shells, keep 200).
    fn siam() -> RunConfig {
        let mut config = RunConfig::default();
        config.model.kind = dnrg::params::ModelKind::Siam;
        config.model.u = 0.4;
        config.model.eps_d = -0.2;
        config.model.gamma = 0.1;
        config.nrg.lambda = 3.0;
        config.nrg.keep = 200;
        config.nrg.t_min = 1e-5;
        config
    }

    /// A newer job cancels a spectrum job in the middle of its backward sweep: the old job
    /// sends nothing more than the shell in flight and never completes, and the new one runs
    /// to its end with progress up to the broadening.
    #[test]
    fn a_newer_job_cancels_a_spectrum_job_and_the_new_spectrum_arrives() {
        let (tx, rx) = mpsc::channel();
        let worker = Worker::spawn(tx).unwrap();
        let wait = Duration::from_secs(60);
        worker.submit(Job {
            id: 1,
            config: siam(),
            kind: JobKind::Spectrum { t: 1e-5 },
        });
        loop {
            match rx.recv_timeout(wait).expect("progress") {
                Event::SpectrumProgress {
                    job: 1,
                    stage: Stage::Passes { done, .. },
                } if done >= 30 => break, // 23 shells: in the backward sweep
                Event::SpectrumDone { .. } => panic!("done before it could be cancelled"),
                Event::Failed { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        let cancelled_at = Instant::now();
        worker.submit(Job {
            id: 2,
            config: siam(),
            kind: JobKind::Spectrum { t: 2e-5 },
        });
        let (mut late, mut first_new, mut last) = (0, None, Stage::Queued);
        let spectrum = loop {
            match rx.recv_timeout(wait).expect("the new spectrum") {
                Event::SpectrumProgress { job: 1, .. } => late += 1,
                Event::SpectrumDone { job: 1, .. } => panic!("the cancelled job completed"),
                Event::SpectrumProgress { job: 2, stage } => {
                    first_new.get_or_insert_with(|| cancelled_at.elapsed());
                    last = stage;
                }
                Event::SpectrumDone { job: 2, spectrum } => break spectrum,
                Event::Failed { error, .. } => panic!("{error}"),
                other => panic!("unexpected {other:?}"),
            }
        };
        // the cancel flag is checked between the stages of a shell (forward) and before every
        // shell (backward): at most the shell in flight reports after the cancel
        assert!(late <= 1, "{late} progress messages after the cancel");
        assert_eq!(last, Stage::Broadening);
        assert_eq!(spectrum.t, 2e-5);
        assert!(spectrum.sum_rule < 1e-10, "ΣW − 1 = {}", spectrum.sum_rule);
        // Measured on 2 shared cores (load ~5, release, 60 runs cancelled at 3 to 40 shells of
        // 46): the new job's first shell 0.2-8.8 ms after the cancel, its spectrum complete
        // 0.69-1.53 s after it. Bounds: 3× the worst cases.
        let latency = first_new.expect("progress of the new job");
        assert!(latency < Duration::from_millis(27), "{latency:?}");
        let total = cancelled_at.elapsed();
        assert!(total < Duration::from_millis(4600), "{total:?}");
    }
}
