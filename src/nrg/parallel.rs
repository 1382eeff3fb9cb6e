//! Block-level parallelism: the calling thread plus a small pool of helpers.
//!
//! NRG work per shell is a few dozen independent blocks whose cost grows like n³: a handful of
//! large blocks dominate. Handing them out largest first to whichever thread is free (greedy
//! list scheduling) keeps the cores busy to the end of the shell. Every task runs sequentially
//! inside (`Par::Seq` in [`crate::linalg`]), so results do not depend on scheduling and runs
//! are bit-for-bit reproducible.
//!
//! Maps are caller-participating: the calling thread works through the items itself, and the
//! pool's [`threads`]` − 1` threads (created once per process, shared by all runs) help. So a
//! map never waits for a pool thread to become free: while the pool still computes a block of a
//! cancelled run (the explorer does not wait for it, see `tui::worker`), the next run's maps go
//! on in their own thread, and a helper task that reaches the pool after its map has returned
//! does nothing. Helpers take an item only while fewer than [`threads`] items are in work in
//! the whole process, so several runs at once (sweep points, z-averaged spectra) keep at most
//! one item per calling thread beyond the core count.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// Environment variable that sets the number of block threads (e.g. a Slurm task's CPUs on a
/// node without CPU binding, where every task would otherwise see all cores).
pub const THREADS_ENV: &str = "DNRG_BLOCK_THREADS";

/// Threads that work on one map: the caller and `threads() − 1` pool threads; one per
/// available core, or `$DNRG_BLOCK_THREADS`.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var(THREADS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The process-wide helper threads; `None` with one block thread (or if the system refused to
/// create threads: the callers then do all the work).
pub fn pool() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = threads() - 1;
        if helpers == 0 {
            return None;
        }
        ThreadPoolBuilder::new()
            .num_threads(helpers)
            .thread_name(|i| format!("dnrg-blocks-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// A run's cancel flag as its kernels see it (absent for runs that cannot be cancelled).
/// Kernels check it between their steps, e.g. between the panels of a large product.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cancel<'a>(Option<&'a AtomicBool>);

impl<'a> Cancel<'a> {
    /// Never set.
    pub const NEVER: Cancel<'static> = Cancel(None);

    pub fn new(flag: Option<&'a AtomicBool>) -> Cancel<'a> {
        Cancel(flag)
    }

    pub fn is_set(self) -> bool {
        self.0.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `None` once the flag is set, for `cancel.check()?` between the steps of a kernel.
    pub fn check(self) -> Option<()> {
        (!self.is_set()).then_some(())
    }
}

/// `f` applied to every item, largest `cost` first; results in input order.
pub fn map_largest_first<T, R>(
    items: &[T],
    cost: impl Fn(&T) -> usize + Sync,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    R: Send + Sync,
{
    map_largest_first_until(items, cost, |x| Some(f(x)), Cancel::NEVER)
        .expect("neither a flag nor an item can cancel")
}

/// [`map_largest_first`] that can be cancelled: `None` once `cancel` is set (no item is handed
/// out after that) or as soon as an item gives up (`f` returned `None`, its kernel having seen
/// the flag). A cancelled call returns within the time that one item takes to notice.
pub fn map_largest_first_until<T, R>(
    items: &[T],
    cost: impl Fn(&T) -> usize + Sync,
    f: impl Fn(&T) -> Option<R> + Sync,
    cancel: Cancel<'_>,
) -> Option<Vec<R>>
where
    T: Sync,
    R: Send + Sync,
{
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&items[i])));
    let slots: Vec<OnceLock<R>> = (0..items.len()).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    // an item gave up or panicked: hand out nothing more
    let stop = AtomicBool::new(false);
    let limit = threads();
    let work = |helper: bool| {
        while !cancel.is_set() && !stop.load(Ordering::Relaxed) {
            let busy = IN_WORK.fetch_add(1, Ordering::SeqCst);
            let _item = InWork(&stop);
            if helper && busy >= limit {
                break; // every core has an item: the callers do the rest
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            match f(&items[i]) {
                Some(r) => {
                    let _ = slots[i].set(r);
                }
                None => {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    };
    match pool().filter(|_| items.len() > 1) {
        None => work(false),
        Some(pool) => {
            let helper = || work(true);
            let task: *const (dyn Fn() + Sync + '_) = &helper;
            // SAFETY: the task borrows this frame; `Gate` lets a helper call it only between a
            // successful `enter` and its `leave`, and `Closing` (dropped before this frame
            // returns or unwinds) shuts the gate and waits for every helper inside.
            let task = Task(unsafe {
                std::mem::transmute::<
                    *const (dyn Fn() + Sync + '_),
                    *const (dyn Fn() + Sync + 'static),
                >(task)
            });
            let gate = Arc::new(Gate::default());
            let closing = Closing(&gate);
            for _ in 0..pool.current_num_threads().min(items.len() - 1) {
                let gate = Arc::clone(&gate);
                pool.spawn(move || gate.run(task));
            }
            work(false);
            drop(closing);
            if let Some(payload) = gate.take_panic() {
                panic::resume_unwind(payload);
            }
        }
    }
    if cancel.is_set() || stop.load(Ordering::Relaxed) {
        return None;
    }
    // every item was handed out and none gave up: every slot is filled
    slots.into_iter().map(OnceLock::into_inner).collect()
}

/// Items being computed in the whole process right now, by callers and helpers.
static IN_WORK: AtomicUsize = AtomicUsize::new(0);

/// One item in work: counted in [`IN_WORK`] until dropped; an item that unwinds (panics) stops
/// its map.
struct InWork<'a>(&'a AtomicBool);

impl Drop for InWork<'_> {
    fn drop(&mut self) {
        IN_WORK.fetch_sub(1, Ordering::SeqCst);
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A map's work as the pool sees it: a pointer into the map's frame, valid while the map's gate
/// is open (see [`Gate`]).
#[derive(Clone, Copy)]
struct Task(*const (dyn Fn() + Sync));

// SAFETY: the closure behind the pointer is `Sync`; when it may be called is up to `Gate`.
unsafe impl Send for Task {}

/// Where a map and its helper tasks meet. A helper runs the map's work only if the gate is
/// still open, counted as inside; closing the gate (when the map returns or unwinds) keeps later
/// helpers out and waits for those inside. A helper's panic is kept for the map to resume.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    left: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    inside: usize,
    panic: Option<Box<dyn Any + Send>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool thread's side: the map's work, unless the map has returned.
    fn run(&self, task: Task) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.inside += 1;
        }
        // SAFETY: the gate is open and counts this helper inside, so the map's frame lives on
        // until `leave` below (see `close`).
        let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*task.0)() }));
        let mut state = self.lock();
        if let Err(payload) = result {
            state.panic.get_or_insert(payload);
        }
        state.inside -= 1;
        if state.inside == 0 {
            self.left.notify_all();
        }
    }

    /// Keep helpers out from now on and wait for those inside.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        while state.inside > 0 {
            state = self
                .left
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        self.lock().panic.take()
    }
}

/// Closes the gate when dropped: on the map's return and on its unwinding alike.
struct Closing<'a>(&'a Gate);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn results_keep_input_order() {
        let items: Vec<usize> = (0..100).collect();
        let out = map_largest_first(&items, |&x| x % 7, |&x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_set_flag_stops_handing_out_items() {
        let items: Vec<usize> = (0..1000).collect();
        let flag = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        let out = map_largest_first_until(
            &items,
            |&x| x,
            |&x| {
                // the first item finished cancels the rest
                done.fetch_add(1, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
                Some(x)
            },
            Cancel::new(Some(&flag)),
        );
        assert!(out.is_none());
        // at most one item per thread was in flight when the flag was set
        assert!(
            done.load(Ordering::SeqCst) <= threads(),
            "{done:?} > {}",
            threads()
        );
        let unset = AtomicBool::new(false);
        let all =
            map_largest_first_until(&items, |&x| x, |&x| Some(x + 1), Cancel::new(Some(&unset)))
                .unwrap();
        assert_eq!(all[999], 1000);
    }

    #[test]
    fn an_item_that_gives_up_cancels_the_map() {
        let items: Vec<usize> = (0..50).collect();
        let out = map_largest_first_until(&items, |_| 1, |&x| (x != 7).then_some(x), Cancel::NEVER);
        assert!(out.is_none());
    }

    /// A map started while every pool thread is busy with a long item of a cancelled map (the
    /// explorer's superseded run) finishes on its own thread: it never waits for the pool.
    #[test]
    fn a_map_does_not_wait_for_a_busy_pool() {
        const LONG: Duration = Duration::from_millis(1500);
        let flag = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let old = {
            let (flag, started) = (Arc::clone(&flag), Arc::clone(&started));
            std::thread::spawn(move || {
                // one uninterruptible item per thread, as a heavy eigendecomposition
                let items: Vec<usize> = (0..threads() + 4).collect();
                map_largest_first_until(
                    &items,
                    |_| 1,
                    |&x| {
                        started.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(LONG);
                        Some(x)
                    },
                    Cancel::new(Some(&flag)),
                )
            })
        };
        let t0 = Instant::now();
        while started.load(Ordering::SeqCst) < threads() && t0.elapsed() < LONG {
            std::thread::sleep(Duration::from_millis(1));
        }
        flag.store(true, Ordering::SeqCst);
        let t = Instant::now();
        let items: Vec<usize> = (0..20).collect();
        let out = map_largest_first(&items, |_| 1, |&x| x + 1);
        let took = t.elapsed();
        assert_eq!(out[19], 20);
        // 20 trivial items: microseconds; waiting for the pool would take the rest of LONG
        assert!(took < LONG / 3, "the map waited {took:?} for the pool");
        assert!(old.join().unwrap().is_none());
    }

    #[test]
    fn a_panicking_item_reaches_the_caller() {
        let items: Vec<usize> = (0..64).collect();
        for bad in [0, 63] {
            let result = panic::catch_unwind(|| {
                map_largest_first(
                    &items,
                    |&x| x,
                    |&x| {
                        assert!(x != bad, "item {x}");
                        x
                    },
                )
            });
            let payload = result.expect_err("the panic propagates");
            let message = payload.downcast_ref::<String>().unwrap();
            assert_eq!(message, &format!("item {bad}"));
        }
        // the pool survives
        assert_eq!(map_largest_first(&items, |_| 1, |&x| x).len(), 64);
    }
}
