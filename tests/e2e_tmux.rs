//! The explorer in a real terminal: tmux runs a shell, the test types `dnrg` into it (no
//! arguments: the default preset), watches the shells arrive, edits a parameter and sees the
//! run restart, opens the help, saves a user preset into a temporary DNRG_CONFIG_DIR, quits,
//! and checks that the terminal is restored (the shell prompt is back, the alternate screen
//! is left, the tty is out of raw mode) and that dnrg exited with status 0.
//!
//! Needs tmux (CI installs it). Without tmux the test is skipped with a message.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PROMPT: &str = "READY$ ";
/// The prompt as captured (tmux drops trailing blanks).
const PROMPT_SEEN: &str = "READY$";

struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// A detached 100×30 session running `sh` with a known prompt in `dir`.
    fn start(name: &str, dir: &Path, config: &Path) -> Tmux {
        let tmux = Tmux {
            socket: format!("dnrg-e2e-{name}-{}", std::process::id()),
        };
        let shell = format!(
            "cd '{}' && env -u NO_COLOR DNRG_CONFIG_DIR='{}' PS1='{PROMPT}' TERM=xterm-256color sh",
            dir.display(),
            config.display()
        );
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "100",
            "-y",
            "30",
            &shell,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        let out = self.cmd(&args);
        assert!(out.status.success(), "send-keys {keys:?}: {out:?}");
    }

    /// Type literal text (no key-name interpretation).
    fn type_text(&self, text: &str) {
        let out = self.cmd(&["send-keys", "-t", "e2e", "-l", text]);
        assert!(out.status.success());
    }

    fn capture(&self) -> String {
        String::from_utf8(self.cmd(&["capture-pane", "-p", "-t", "e2e"]).stdout).unwrap()
    }

    fn alternate_on(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]);
        String::from_utf8(out.stdout).unwrap().trim() == "1"
    }

    /// Wait until the pane satisfies `done`; panic with the pane after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let pane = self.capture();
            if done(&pane) {
                return pane;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; the pane shows:\n{pane}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

const PATIENCE: Duration = Duration::from_secs(60);

/// Without tmux the terminal tests are skipped, unless `DNRG_REQUIRE_TMUX` is set (CI sets it,
/// so that a failed tmux install cannot turn them into tests that pass without running).
fn skip_without_tmux(test: &str) -> bool {
    if Tmux::available() {
        return false;
    }
    assert!(
        std::env::var_os("DNRG_REQUIRE_TMUX").is_none(),
        "{test}: tmux not found but DNRG_REQUIRE_TMUX is set"
    );
    eprintln!("SKIPPED {test}: tmux not found (install tmux to run the explorer's terminal test)");
    true
}

#[test]
fn explorer_in_a_real_terminal() {
    if skip_without_tmux("explorer_in_a_real_terminal") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let work = dir.path().join("work");
    let config = dir.path().join("config");
    fs::create_dir_all(&work).unwrap();
    fs::create_dir_all(&config).unwrap();
    let tmux = Tmux::start("main", &work, &config);
    tmux.wait_for("the shell prompt", PATIENCE, |p| p.contains(PROMPT_SEEN));

    // start: `dnrg` without arguments opens the explorer and computes at once
    let started = Instant::now();
    tmux.type_text(&format!("'{}'", env!("CARGO_BIN_EXE_dnrg")));
    tmux.send(&["Enter"]);
    tmux.wait_for("the first shells", PATIENCE, |p| {
        p.contains("[1 Flow]") && p.contains("even N")
    });
    let first_shells = started.elapsed();
    assert!(
        tmux.alternate_on(),
        "the explorer uses the alternate screen"
    );
    let pane = tmux.wait_for("the run to complete", PATIENCE, |p| p.contains(" done "));
    assert!(pane.contains("kondo-symmetric"), "{pane}");
    assert!(pane.contains("/shell"), "time per shell shown:\n{pane}");
    eprintln!("first shells on screen after {first_shells:?}");

    // edit U in the parameters panel: the run restarts with the new value
    tmux.send(&["4"]);
    tmux.wait_for("the parameters panel", PATIENCE, |p| {
        p.contains("[4 Parameters]")
    });
    tmux.send(&["Enter"]);
    tmux.wait_for("the editor", PATIENCE, |p| p.contains("Enter apply"));
    tmux.type_text("0.2");
    tmux.send(&["Enter"]);
    tmux.wait_for("the restart", PATIENCE, |p| {
        p.contains("model.U = 0.2  → restarted") && p.contains("kondo-symmetric*")
    });
    let pane = tmux.wait_for("the new run to complete", PATIENCE, |p| {
        p.contains(" done ") && p.lines().any(|l| l.contains(" U ") && l.contains(" 0.2 "))
    });
    assert!(!pane.contains("running"), "{pane}");

    // help overlay, closed with Esc (which does not quit)
    tmux.send(&["?"]);
    tmux.wait_for("the help", PATIENCE, |p| p.contains("Help — Esc closes"));
    tmux.send(&["Escape"]);
    tmux.wait_for("the help to close", PATIENCE, |p| {
        !p.contains("Help — Esc closes")
    });

    // save as a user preset
    tmux.send(&["s"]);
    tmux.wait_for("the save dialog", PATIENCE, |p| {
        p.contains("Save as user preset")
    });
    tmux.type_text("e2e-preset");
    tmux.send(&["Enter"]);
    tmux.wait_for("the save message", PATIENCE, |p| {
        p.contains("saved preset 'e2e-preset'")
    });
    let saved = fs::read_to_string(config.join("presets/e2e-preset.toml")).unwrap();
    assert!(saved.contains("U = 0.2"), "{saved}");

    // quit: the shell prompt is back, the alternate screen left, the tty cooked again
    tmux.send(&["q"]);
    tmux.wait_for("the shell prompt after quitting", PATIENCE, |p| {
        p.lines().filter(|l| l.starts_with(PROMPT_SEEN)).count() >= 2
    });
    assert!(!tmux.alternate_on(), "the alternate screen was left");
    assert_restored(&tmux, 0);
}

/// After dnrg exited: the exit status, and the tty in cooked mode with echo.
fn assert_restored(tmux: &Tmux, status: i32) {
    tmux.type_text(
        "echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo",
    );
    tmux.send(&["Enter"]);
    let pane = tmux.wait_for("the exit status", PATIENCE, |p| {
        p.lines()
            .any(|l| l.trim() == "icanon" || l.trim() == "-icanon")
            && p.lines().any(|l| l.trim() == "echo" || l.trim() == "-echo")
    });
    assert!(pane.contains(&format!("EXIT={status}")), "{pane}");
    let lines: Vec<&str> = pane.lines().map(str::trim).collect();
    assert!(lines.contains(&"icanon"), "raw mode left:\n{pane}");
    assert!(lines.contains(&"echo"), "echo restored:\n{pane}");
}

/// A panic on the UI thread restores the terminal before the message is printed
/// (`DNRG_TUI_PANIC_KEY` makes `!` panic).
#[test]
fn a_panic_restores_the_terminal() {
    if skip_without_tmux("a_panic_restores_the_terminal") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config");
    fs::create_dir_all(&config).unwrap();
    let tmux = Tmux::start("panic", dir.path(), &config);
    tmux.wait_for("the shell prompt", PATIENCE, |p| p.contains(PROMPT_SEEN));
    tmux.type_text(&format!(
        "DNRG_TUI_PANIC_KEY=1 '{}' tui resonant-level --set nrg.T_min=1e-4",
        env!("CARGO_BIN_EXE_dnrg")
    ));
    tmux.send(&["Enter"]);
    tmux.wait_for("the run to complete", PATIENCE, |p| p.contains(" done "));
    assert!(tmux.alternate_on());
    tmux.send(&["!"]);
    let pane = tmux.wait_for("the prompt after the panic", PATIENCE, |p| {
        p.lines().filter(|l| l.starts_with(PROMPT_SEEN)).count() >= 2
    });
    assert!(pane.contains("panicked"), "{pane}");
    assert!(
        pane.contains("panic requested with DNRG_TUI_PANIC_KEY"),
        "{pane}"
    );
    assert!(!tmux.alternate_on(), "the alternate screen was left");
    assert_restored(&tmux, 101);
}
