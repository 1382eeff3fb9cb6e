//! Fuzz-style key scripts for the explorer in headless mode: a fixed seed, a bounded number of
//! random scripts drawn from every key the explorer knows plus pastes, resizes (also below
//! the usable size) and waits, each run by the real binary in a sandbox. Every script must end
//! with exit code 0 (or 2 with an `error:` line for a run that failed on the parameters it
//! reached), no panic, and a screen of the requested size.

use std::process::Command;
use tempfile::TempDir;

/// xorshift64*: small, deterministic, good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &[
    "1",
    "2",
    "3",
    "4",
    "<Tab>",
    "<S-Tab>",
    "<Up>",
    "<Down>",
    "<Left>",
    "<Right>",
    "<Home>",
    "<End>",
    "<PgUp>",
    "<PgDn>",
    "<Enter>",
    "<Esc>",
    "<BS>",
    "<Del>",
    "<Space>",
    "+",
    "-",
    "d",
    "o",
    "t",
    "a",
    "P",
    "r",
    "p",
    "s",
    "e",
    "?",
    "j",
    "k",
    "h",
    "l",
    "y",
    "n",
    "0",
    "5",
    ".",
    "e-3",
    "<C-u>",
    "<C-a>",
    "<C-e>",
    "x",
    "<lt>",
    "<wait:20ms>",
    "<shells:3>",
    "<paste:0.05>",
    "<paste:-1e-3\n>",
    "<paste:\u{1b}[31mred>",
    "<paste:fuzz-name>",
    "<resize:50x12>",
    "<resize:80x24>",
    "<resize:130x40>",
];

/// Never `q` or Ctrl-C: a script that quits early tests little. Keys that could save presets
/// or export files act inside the sandbox.
fn script(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    for _ in 0..len {
        s.push_str(rng.pick(KEYS));
    }
    s
}

#[test]
fn random_key_scripts_never_panic() {
    // 64 scripts of 80 steps: measured 3 s in release builds on 2 cores
    const SCRIPTS: usize = 64;
    const STEPS: usize = 80;
    let mut rng = Rng(0x5eed_d17a_2024_0008);
    for i in 0..SCRIPTS {
        let dir = TempDir::new().unwrap();
        let keys = script(&mut rng, STEPS);
        let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
            .args([
                "tui",
                "--headless",
                "resonant-level",
                "--set",
                "nrg.T_min=1e-3",
                "--set",
                "nrg.keep=120",
                "--size",
                "100x30",
                "--keys",
                &keys,
            ])
            .current_dir(dir.path())
            .env("DNRG_CONFIG_DIR", dir.path().join("config"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let screen = String::from_utf8_lossy(&out.stdout);
        let code = out.status.code();
        assert!(
            code == Some(0) || (code == Some(2) && err.starts_with("error: ")),
            "script {i} {keys:?}: exit {code:?}\n{err}\n{screen}"
        );
        assert!(!err.contains("panicked"), "script {i} {keys:?}: {err}");
        // the screen has the size of the initial terminal or of one of the resizes (Esc may
        // quit before the last one)
        let mut sizes = vec![(100, 30)];
        let mut rest = keys.as_str();
        while let Some(at) = rest.find("<resize:") {
            let size = &rest[at + 8..at + rest[at..].find('>').unwrap()];
            let (w, h) = size.split_once('x').unwrap();
            sizes.push((w.parse::<usize>().unwrap(), h.parse::<usize>().unwrap()));
            rest = &rest[at + 8..];
        }
        let height = screen.lines().count();
        let width = screen.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            sizes.iter().any(|&(w, h)| h == height && width <= w),
            "script {i} {keys:?}: screen {width}x{height}, sizes {sizes:?}"
        );
        assert!(
            !screen.chars().any(|c| c.is_control() && c != '\n'),
            "script {i}: raw control characters on screen"
        );
    }
}
