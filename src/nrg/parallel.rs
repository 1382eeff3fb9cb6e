//! Block-level parallelism on a dedicated thread pool.
//!
//! NRG work per shell is a few dozen independent blocks whose cost grows like n³: a handful of
//! large blocks dominate. Handing them out largest first to whichever thread is free (greedy
//! list scheduling) keeps both cores busy to the end of the shell. Every task runs sequentially
//! inside (`Par::Seq` in [`crate::linalg`]), so results do not depend on scheduling and runs
//! are bit-for-bit reproducible. The pool is created once per process and shared by all runs,
//! so restarting runs (as the explorer does) never creates threads.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Environment variable that sets the number of block threads (e.g. a Slurm task's CPUs on a
/// node without CPU binding, where every task would otherwise see all cores).
pub const THREADS_ENV: &str = "DNRG_BLOCK_THREADS";

/// The process-wide pool for block work, one thread per available core (or `$DNRG_BLOCK_THREADS`).
pub fn pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var(THREADS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dnrg-blocks-{i}"))
            .build()
            .expect("thread pool")
    })
}

/// `f` applied to every item, largest `cost` first, on the block pool; results in input order.
pub fn map_largest_first<T, R>(
    items: &[T],
    cost: impl Fn(&T) -> usize + Sync,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    R: Send + Sync,
{
    map_largest_first_until(items, cost, f, None).expect("no cancel flag")
}

/// [`map_largest_first`] that stops handing out items once `cancel` is set: `None` then (the
/// items already started are finished first, so a cancelled call returns within the time of
/// one item).
pub fn map_largest_first_until<T, R>(
    items: &[T],
    cost: impl Fn(&T) -> usize + Sync,
    f: impl Fn(&T) -> R + Sync,
    cancel: Option<&AtomicBool>,
) -> Option<Vec<R>>
where
    T: Sync,
    R: Send + Sync,
{
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&items[i])));
    let slots: Vec<OnceLock<R>> = (0..items.len()).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while !cancelled() {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            let _ = slots[i].set(f(&items[i]));
        }
    };
    let pool = pool();
    if pool.current_num_threads() <= 1 || items.len() <= 1 {
        work();
    } else {
        pool.scope(|s| {
            for _ in 0..pool.current_num_threads() {
                s.spawn(|_| work());
            }
        });
    }
    // a flag set after the last item was handed out leaves every slot filled: keep them
    slots.into_iter().map(OnceLock::into_inner).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                x
            },
            Some(&flag),
        );
        assert!(out.is_none());
        // at most one item per thread was in flight when the flag was set
        let threads = pool().current_num_threads();
        assert!(
            done.load(Ordering::SeqCst) <= threads,
            "{done:?} > {threads}"
        );
        let unset = AtomicBool::new(false);
        let all = map_largest_first_until(&items, |&x| x, |&x| x + 1, Some(&unset)).unwrap();
        assert_eq!(all[999], 1000);
    }
}
