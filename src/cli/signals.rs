//! SIGINT, SIGTERM and SIGHUP, handled alike by `dnrg run` and the explorer: the handler runs
//! on a thread of its own (never inside the signal handler), so it may take locks, print and
//! remove files. The number of the first signal received is kept for the exit code (128 + n).

use std::sync::atomic::{AtomicI32, Ordering};

/// Number of the first signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Exit code for a process stopped by `signal` (the shell's convention, 130 for SIGINT).
pub fn exit_code(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// SIGINT: also what Ctrl-C means where the terminal is not in raw mode.
#[cfg(unix)]
pub const SIGINT: i32 = signal_hook::consts::SIGINT;
#[cfg(not(unix))]
pub const SIGINT: i32 = 2;

/// Call `handler(signal, count)` on a dedicated thread for every SIGINT, SIGTERM or SIGHUP,
/// `count` being 1 for the first signal, 2 for the second, …
#[cfg(unix)]
pub fn install(handler: impl Fn(i32, usize) + Send + 'static) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("dnrg-signals".into())
        .spawn(move || {
            let mut count = 0;
            for signal in signals.forever() {
                count += 1;
                let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                handler(signal, count);
            }
        })?;
    Ok(())
}

/// Elsewhere: Ctrl-C (and the console's close and logoff events).
#[cfg(not(unix))]
pub fn install(handler: impl Fn(i32, usize) + Send + 'static) -> std::io::Result<()> {
    let count = std::sync::atomic::AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = RECEIVED.compare_exchange(0, SIGINT, Ordering::SeqCst, Ordering::SeqCst);
        handler(SIGINT, n);
    })
    .map_err(std::io::Error::other)
}
