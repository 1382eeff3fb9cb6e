//! Running the points of a sweep: locally on a few worker threads, or one shard of them.
//!
//! Threads: `jobs` point workers each run one point at a time and work on its blocks
//! themselves; the process-wide helpers ([`crate::parallel::pool`]) take blocks only while a
//! core is idle. Small runs (a few dozen small blocks per shell) cannot keep the cores busy on
//! their own, so several points at once fill the gaps, while a large run still gets every idle
//! core for its large blocks; with `jobs` at most the core count (the default), block work never
//! exceeds it. Each block task is sequential inside, so a point's output does not depend on
//! `jobs` or on scheduling: byte-identical files.

use super::WorkflowError;
use super::sweep::{POINTS, Point, Sweep};
use crate::output::{JsonlWriter, RecordWriter};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Share `index` of `count` equal shares (`--shard I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `I/N` with 0 ≤ I < N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': expected I/N, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': I must be a non-negative integer"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': N must be a positive integer"))?;
        Shard::new(index, count).map_err(|reason| format!("'{s}': {reason}"))
    }

    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 {
            return Err("N must be at least 1".into());
        }
        if index >= count {
            return Err(format!("I = {index} is not in 0..{count} (0 ≤ I < N)"));
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Slurm array task: I = SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN,
    /// N = SLURM_ARRAY_TASK_COUNT; `None` outside an array job. Arrays with a step or a list
    /// of ids do not number their tasks 0..N−1 and are refused.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let Some(id) = get("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let num = |name: &str| -> Result<usize, String> {
            let v =
                get(name).ok_or_else(|| format!("SLURM_ARRAY_TASK_ID is set but {name} is not"))?;
            v.trim()
                .parse()
                .map_err(|_| format!("{name} = '{v}' is not a non-negative integer"))
        };
        let id: usize = id
            .trim()
            .parse()
            .map_err(|_| format!("SLURM_ARRAY_TASK_ID = '{id}' is not a non-negative integer"))?;
        let min = num("SLURM_ARRAY_TASK_MIN")?;
        let count = num("SLURM_ARRAY_TASK_COUNT")?;
        let index = id
            .checked_sub(min)
            .ok_or_else(|| format!("SLURM_ARRAY_TASK_ID {id} < SLURM_ARRAY_TASK_MIN {min}"))?;
        Shard::new(index, count).map(Some).map_err(|reason| {
            format!(
                "Slurm array task {id} (min {min}, count {count}): {reason}; \
                 submit the array as a contiguous range with step 1, e.g. --array=0-{}",
                count.saturating_sub(1)
            )
        })
    }
}

/// The points of shard `shard`, cost-balanced: points sorted by decreasing estimated cost (ties
/// by index) go one by one to the shard with the least total so far (ties: lowest shard).
/// Depends only on the sweep, so every task computes the same partition.
pub fn shard_points(sweep: &Sweep, shard: Shard) -> Vec<usize> {
    let mut order: Vec<(f64, usize)> = sweep.points.iter().map(|p| (p.cost(), p.index)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0.0f64; shard.count];
    let mut mine = Vec::new();
    for (cost, index) in order {
        let target = (0..shard.count)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("count ≥ 1");
        load[target] += cost;
        if target == shard.index {
            mine.push(index);
        }
    }
    mine.sort_unstable();
    mine
}

/// Path of point `index`'s finished file.
pub fn point_path(sweep: &Sweep, dir: &Path, index: usize) -> PathBuf {
    dir.join(POINTS).join(sweep.point_file(index))
}

/// Path of the marker left by a failed point (holds the error).
pub fn failed_path(sweep: &Sweep, dir: &Path, index: usize) -> PathBuf {
    point_path(sweep, dir, index).with_extension("failed")
}

/// Split `selection` into the points still to run and those already finished.
pub fn pending(sweep: &Sweep, dir: &Path, selection: &[usize]) -> (Vec<usize>, Vec<usize>) {
    selection
        .iter()
        .partition(|&&i| !point_path(sweep, dir, i).is_file())
}

/// How one point ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written; the run's warnings, if any.
    Done { warnings: Vec<String> },
    /// The run failed; a `.failed` marker holds the reason.
    Failed(String),
    /// Stopped by the cancel flag; nothing written.
    Cancelled,
}

/// What the runner reports while it works (called from the worker threads).
pub enum Event<'a> {
    Started {
        point: &'a Point,
    },
    Finished {
        point: &'a Point,
        outcome: &'a Outcome,
        elapsed: Duration,
    },
}

/// Totals of one invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub done: usize,
    pub failed: Vec<(usize, String)>,
    pub cancelled: bool,
}

/// Run the points `todo` (indices into `sweep.points`) on `jobs` worker threads, most
/// expensive first. Setting `cancel` stops the runs in progress (nothing of them is written)
/// and starts no new ones.
pub fn run_points(
    sweep: &Sweep,
    dir: &Path,
    todo: &[usize],
    jobs: usize,
    cancel: &Arc<AtomicBool>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Report {
    let mut order = todo.to_vec();
    order.sort_by(|&a, &b| {
        sweep.points[b]
            .cost()
            .total_cmp(&sweep.points[a].cost())
            .then(a.cmp(&b))
    });
    let next = AtomicUsize::new(0);
    let report = Mutex::new(Report::default());
    let work = || {
        loop {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            let k = next.fetch_add(1, Ordering::SeqCst);
            let Some(&index) = order.get(k) else { break };
            let point = &sweep.points[index];
            on_event(Event::Started { point });
            let start = Instant::now();
            let outcome = run_point(sweep, point, dir, cancel);
            on_event(Event::Finished {
                point,
                outcome: &outcome,
                elapsed: start.elapsed(),
            });
            let mut r = report.lock().expect("no panics while locked");
            match outcome {
                Outcome::Done { .. } => r.done += 1,
                Outcome::Failed(e) => r.failed.push((index, e)),
                Outcome::Cancelled => r.cancelled = true,
            }
        }
    };
    let jobs = jobs.clamp(1, order.len().max(1));
    if jobs == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(work);
            }
        });
    }
    let mut report = report.into_inner().expect("workers finished");
    report.failed.sort();
    report.cancelled |= cancel.load(Ordering::SeqCst);
    report
}

/// Run one point and write its file atomically (or its `.failed` marker).
pub fn run_point(sweep: &Sweep, point: &Point, dir: &Path, cancel: &Arc<AtomicBool>) -> Outcome {
    let path = point_path(sweep, dir, point.index);
    let failed = failed_path(sweep, dir, point.index);
    let name = sweep.point_file(point.index);
    let stem = name.trim_end_matches(".jsonl");
    remove_stale_temporaries(&path, stem);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write_point(sweep, point, &path, stem, cancel)
    }));
    let outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Failed(format!("solver panicked: {message}"))
        }
    };
    match &outcome {
        Outcome::Done { .. } => {
            let _ = std::fs::remove_file(&failed);
        }
        Outcome::Failed(e) => {
            let _ = std::fs::write(&failed, format!("{e}\n"));
        }
        Outcome::Cancelled => {}
    }
    outcome
}

/// Temporary files of the points being written right now.
static WRITING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Delete the temporary files of the points being written, for a process about to exit
/// without waiting for its runs (a signal while a large block is being diagonalized): nothing
/// partial stays behind. The list stays locked, so no point starts another file meanwhile.
pub fn remove_files_in_progress() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    let writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
    for path in writing.iter() {
        let _ = std::fs::remove_file(path);
    }
    writing
}

/// A temporary file listed in [`WRITING`] while this lives.
struct Writing(PathBuf);

impl Writing {
    fn new(path: &Path) -> Writing {
        let mut writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
        writing.insert(path.to_path_buf());
        Writing(path.to_path_buf())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
        writing.remove(&self.0);
    }
}

/// Temporary files of this point left by a process that was killed (`.pNNNN-*.tmp`).
fn remove_stale_temporaries(path: &Path, stem: &str) {
    let Some(Ok(entries)) = path.parent().map(std::fs::read_dir) else {
        return;
    };
    let prefix = format!(".{stem}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_point(
    sweep: &Sweep,
    point: &Point,
    path: &Path,
    stem: &str,
    cancel: &Arc<AtomicBool>,
) -> Result<Outcome, String> {
    let dir = path.parent().expect("point files live in points/");
    let io_err = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{stem}-"))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let _listed = Writing::new(tmp.path());
    // one chain, or the z-average when the point asks for it
    let mut run = crate::solver::records(&point.preset.config, Arc::clone(cancel))
        .map_err(|e| e.to_string())?;
    let mut header = run.header().clone();
    header.preset = Some(point.preset.name.clone());
    header.description = Some(point.preset.description.clone()).filter(|d| !d.is_empty());
    let record = serde_json::json!({
        "type": "point",
        "index": point.index,
        "sweep": sweep.hash,
        "params": point.params(),
    });
    let summary = {
        let mut file = std::io::BufWriter::new(tmp.as_file_mut());
        let mut line = serde_json::to_string(&record).expect("serializable");
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io_err)?;
        let mut writer = JsonlWriter::new(&mut file);
        writer.header(&header).map_err(io_err)?;
        for shell in run.by_ref() {
            writer.shell(&shell).map_err(io_err)?;
        }
        if cancel.load(Ordering::SeqCst) {
            return Ok(Outcome::Cancelled);
        }
        let summary = run.summary(false);
        writer.done(&summary).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        summary
    };
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(Outcome::Done {
        warnings: summary.warnings,
    })
}

/// The points of `shard`, or all of them without one.
pub fn select(sweep: &Sweep, shard: Option<Shard>) -> Vec<usize> {
    match shard {
        Some(shard) => shard_points(sweep, shard),
        None => (0..sweep.points.len()).collect(),
    }
}

/// `--out DIR` must be a directory or not exist yet.
pub fn check_out_dir(dir: &Path) -> Result<(), WorkflowError> {
    if dir.exists() && !dir.is_dir() {
        return Err(WorkflowError::file(dir, "exists and is not a directory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::sweep;

    #[test]
    fn shards_partition_the_points_and_balance_their_cost() {
        let text = "preset = \"kondo-symmetric\"\n[axes]\n\"nrg.keep\" = [100, 150, 200, 300, 400, 600, 800, 1000]\n\"model.Gamma\" = [0.004, 0.008]\n";
        let sweep = sweep::parse(Path::new("t.toml"), text).unwrap();
        let costs: Vec<f64> = sweep.points.iter().map(|p| p.cost()).collect();
        let max_cost = costs.iter().cloned().fold(0.0, f64::max);
        for count in 1..=7 {
            let shards: Vec<Vec<usize>> = (0..count)
                .map(|i| shard_points(&sweep, Shard::new(i, count).unwrap()))
                .collect();
            let mut all: Vec<usize> = shards.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..16).collect::<Vec<_>>(),
                "{count} shards: {shards:?}"
            );
            // greedy largest-first: loads differ by at most one point's cost
            let loads: Vec<f64> = shards
                .iter()
                .map(|s| s.iter().map(|&i| costs[i]).sum())
                .collect();
            let (lo, hi) = loads
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
            assert!(hi - lo <= max_cost, "{count} shards: loads {loads:?}");
        }
    }

    #[test]
    fn slurm_variables_give_the_shard() {
        let env = |id: &'static str, min: &'static str, count: &'static str| {
            move |k: &str| match k {
                "SLURM_ARRAY_TASK_ID" => Some(id.to_string()),
                "SLURM_ARRAY_TASK_MIN" => Some(min.to_string()),
                "SLURM_ARRAY_TASK_COUNT" => Some(count.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            Shard::from_env(env("5", "4", "4")),
            Ok(Some(Shard { index: 1, count: 4 }))
        );
        assert_eq!(Shard::from_env(|_| None), Ok(None));
        // --array=0-6:2 and --array=1,3,10 number tasks beyond the count
        assert!(
            Shard::from_env(env("6", "0", "4"))
                .unwrap_err()
                .contains("contiguous range")
        );
        assert!(Shard::from_env(env("10", "1", "3")).is_err());
        assert!(
            Shard::parse("3/3").is_err()
                && Shard::parse("1/0").is_err()
                && Shard::parse("x").is_err()
        );
        assert_eq!(Shard::parse(" 2/5"), Ok(Shard { index: 2, count: 5 }));
    }
}
