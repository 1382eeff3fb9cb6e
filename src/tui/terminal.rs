//! The real terminal: raw mode and the alternate screen on entry, restored on exit, on error
//! and on panic (the panic hook restores the terminal before the panic message is printed).
//! Keys come from an input thread; the loop redraws only after a change, at most ~30 times
//! a second while shells stream in.

use super::app::App;
use super::event::Event;
use super::worker::Worker;
use super::{dispatch, ui};
use crossterm::event::{
    self as ct, DisableBracketedPaste, EnableBracketedPaste, Event as CtEvent, KeyEventKind,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// Shortest time between two frames.
const FRAME: Duration = Duration::from_millis(33);

/// Name of the thread that reads the keyboard.
const INPUT_THREAD: &str = "dnrg-input";

/// Whether the terminal is in raw mode on the alternate screen (restore only once).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leave the alternate screen, show the cursor, leave raw mode. Safe to call twice.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            io::stdout(),
            DisableBracketedPaste,
            LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Restores the terminal when dropped (normal exit and errors).
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Panics on the UI threads restore the terminal first, then print as usual. Panics on the
/// solver's threads are caught by the worker and shown in the app; printing them would
/// scribble over the screen.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = thread::current().name().map(str::to_string);
        let ui_thread = matches!(name.as_deref(), Some("main") | Some(INPUT_THREAD));
        if !ui_thread && ACTIVE.load(Ordering::SeqCst) {
            debug_assert!(name.as_deref() != Some("main"));
            return;
        }
        restore();
        previous(info);
    }));
}

fn setup() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    install_panic_hook();
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    // a paste arrives as one event, not as thousands of key presses
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        cursor::Hide,
        EnableBracketedPaste
    )?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    Ok(terminal)
}

fn spawn_input(tx: Sender<Event>, stop: Arc<AtomicBool>) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(INPUT_THREAD.into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match ct::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
                let event = match ct::read() {
                    Ok(CtEvent::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
                    Ok(CtEvent::Resize(w, h)) => Event::Resize(w, h),
                    Ok(CtEvent::Paste(text)) => Event::Paste(text),
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        })
}

/// Run the explorer in the terminal until the user quits.
pub fn run(mut app: App, worker: Worker, tx: Sender<Event>, rx: Receiver<Event>) -> io::Result<()> {
    // the first job starts before the terminal is even set up
    dispatch(&mut app, &worker);
    let _guard = Guard;
    let mut terminal = setup()?;
    let size = terminal.size()?;
    app.handle(Event::Resize(size.width, size.height));
    let stop = Arc::new(AtomicBool::new(false));
    let input = spawn_input(tx, Arc::clone(&stop))?;

    let result = event_loop(&mut app, &worker, &mut terminal, &rx);
    stop.store(true, Ordering::SeqCst);
    restore();
    worker.shutdown(Duration::from_millis(300));
    let _ = input.join();
    result
}

fn event_loop(
    app: &mut App,
    worker: &Worker,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    rx: &Receiver<Event>,
) -> io::Result<()> {
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        dispatch(app, worker);
        if app.quit {
            return Ok(());
        }
        let event = if dirty {
            let wait = last_draw.map_or(Duration::ZERO, |t| FRAME.saturating_sub(t.elapsed()));
            if wait.is_zero() {
                terminal.draw(|f| ui::draw(f, app))?;
                last_draw = Some(Instant::now());
                dirty = false;
                continue;
            }
            match rx.recv_timeout(wait) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => Event::Tick,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        } else {
            match rx.recv() {
                Ok(event) => event,
                Err(_) => return Ok(()),
            }
        };
        dirty |= app.handle(event);
        // take everything that is already there before drawing
        while !app.quit {
            match rx.try_recv() {
                Ok(event) => dirty |= app.handle(event),
                Err(_) => break,
            }
        }
    }
}
