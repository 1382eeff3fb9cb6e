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
        Tmux::start_sized(name, dir, config, (100, 30))
    }

    fn start_sized(name: &str, dir: &Path, config: &Path, size: (u16, u16)) -> Tmux {
        let tmux = Tmux {
            socket: format!("dnrg-e2e-{name}-{}", std::process::id()),
        };
        let shell = format!(
            "cd '{}' && env -u NO_COLOR -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE DNRG_CONFIG_DIR='{}' PS1='{PROMPT}' TERM=xterm-256color sh",
            dir.display(),
            config.display()
        );
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &size.0.to_string(),
            "-y",
            &size.1.to_string(),
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

/// A scratch directory and a tmux session in it whose explorer (`env` prefixes the command)
/// has finished a small resonant-level run.
fn explorer_after_a_run(name: &str, env: &str) -> (TempDir, Tmux) {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config");
    fs::create_dir_all(&config).unwrap();
    let tmux = Tmux::start(name, dir.path(), &config);
    tmux.wait_for("the shell prompt", PATIENCE, |p| p.contains(PROMPT_SEEN));
    tmux.type_text(&format!(
        "{env}'{}' tui resonant-level --set nrg.T_min=1e-4",
        env!("CARGO_BIN_EXE_dnrg")
    ));
    tmux.send(&["Enter"]);
    tmux.wait_for("the run to complete", PATIENCE, |p| p.contains(" done "));
    (dir, tmux)
}

/// A panic on the UI thread restores the terminal before the message is printed
/// (`DNRG_TUI_PANIC_KEY` makes `!` panic).
#[test]
fn a_panic_restores_the_terminal() {
    if skip_without_tmux("a_panic_restores_the_terminal") {
        return;
    }
    let (_dir, tmux) = explorer_after_a_run("panic", "DNRG_TUI_PANIC_KEY=1 ");
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

/// The pid of the program running in the pane's shell (the shell's only child).
fn pane_child(tmux: &Tmux) -> u32 {
    let out = tmux.cmd(&["display-message", "-p", "-t", "e2e", "#{pane_pid}"]);
    let shell = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let children = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let pids: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "one child of the shell: {pids:?}");
    pids[0]
}

/// SIGTERM and SIGHUP (the terminal closing) make the explorer quit like `q`: alternate screen
/// left, cursor shown, tty cooked again; exit status 128 + signal.
#[test]
fn sigterm_and_sighup_restore_the_terminal() {
    if skip_without_tmux("sigterm_and_sighup_restore_the_terminal") {
        return;
    }
    for (signal, code) in [("-TERM", 143), ("-HUP", 129)] {
        let (_dir, tmux) = explorer_after_a_run(&format!("sig{}", &signal[1..]), "");
        assert!(tmux.alternate_on());
        let pid = pane_child(&tmux);
        let killed = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        tmux.wait_for("the prompt after the signal", PATIENCE, |p| {
            p.lines().filter(|l| l.starts_with(PROMPT_SEEN)).count() >= 2
        });
        assert!(
            !tmux.alternate_on(),
            "{signal}: the alternate screen was left"
        );
        assert_restored(&tmux, code);
    }
}

/// A 100 KB paste into the value editor is one edit (bracketed paste), and the Enter right
/// after it applies the value at once.
#[test]
fn a_long_paste_is_one_edit() {
    if skip_without_tmux("a_long_paste_is_one_edit") {
        return;
    }
    let (dir, tmux) = explorer_after_a_run("paste", "");
    tmux.send(&["4"]);
    tmux.send(&["Enter"]);
    tmux.wait_for("the editor", PATIENCE, |p| p.contains("Enter apply"));
    // 0.2 followed by 100 000 zeros is still 0.2
    let text = format!("0.2{}", "0".repeat(100_000));
    let buffer = dir.path().join("paste.txt");
    fs::write(&buffer, &text).unwrap();
    let out = tmux.cmd(&["load-buffer", buffer.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let pasted = Instant::now();
    // -p: bracketed, as a terminal pastes into an application that asked for it
    let out = tmux.cmd(&["paste-buffer", "-p", "-t", "e2e"]);
    assert!(out.status.success(), "{out:?}");
    tmux.send(&["Enter"]);
    tmux.wait_for("the pasted value applied", PATIENCE, |p| {
        p.contains("model.U = 0.2  → restarted")
    });
    eprintln!("100 KB paste applied after {:?}", pasted.elapsed());
    tmux.send(&["q"]);
    tmux.wait_for("the shell prompt after quitting", PATIENCE, |p| {
        p.lines().filter(|l| l.starts_with(PROMPT_SEEN)).count() >= 2
    });
    assert_restored(&tmux, 0);
}

/// First impression at 80×24: `dnrg` alone, panel 3 shows the sensitivity curves of the
/// default preset (it derives eps_d and U). Measured on the development machine: curves after
/// ~0.3 s, the whole run 0.9 s; not asserted (loaded CI machines), only printed.
#[test]
fn the_default_explorer_shows_sensitivity_curves_at_80x24() {
    if skip_without_tmux("the_default_explorer_shows_sensitivity_curves_at_80x24") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config");
    fs::create_dir_all(&config).unwrap();
    let tmux = Tmux::start_sized("first", dir.path(), &config, (80, 24));
    tmux.wait_for("the shell prompt", PATIENCE, |p| p.contains(PROMPT_SEEN));
    let started = Instant::now();
    tmux.type_text(&format!("'{}'", env!("CARGO_BIN_EXE_dnrg")));
    tmux.send(&["Enter"]);
    tmux.wait_for("the explorer", PATIENCE, |p| p.contains("[1 Flow]"));
    tmux.send(&["3"]);
    let pane = tmux.wait_for("sensitivity curves", PATIENCE, |p| {
        p.contains("∂F_imp/∂eps_d") && p.contains("⠉⠉⠉")
    });
    let curves = started.elapsed();
    assert!(!pane.contains("no derivatives"), "{pane}");
    let pane = tmux.wait_for("the run to complete", PATIENCE, |p| p.contains(" done "));
    eprintln!(
        "curves after {curves:?}, run complete after {:?}",
        started.elapsed()
    );
    // the status line fits: it ends with what was computed, not cut
    let status = pane.lines().find(|l| l.contains(" done ")).unwrap();
    assert!(status.contains("shells in"), "{status:?}");
    assert!(status.chars().count() <= 80);
    tmux.send(&["q"]);
}
