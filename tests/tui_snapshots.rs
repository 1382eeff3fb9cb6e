//! Snapshots of the explorer's screens, rendered by the real app loop in headless mode
//! (`dnrg tui --headless`, ratatui's TestBackend) from real solver output.
//!
//! The run is small and deterministic (kondo-symmetric with keep = 120 down to T = 1e-6: 33
//! shells, a fraction of a second); headless mode never shows wall-clock times, and every
//! script waits for the run to complete before the screen is taken, so the screens are the
//! same on every machine. Each test has its own working and configuration directory.
//!
//! Update after an intended change with `INSTA_UPDATE=always cargo test --release --test
//! tui_snapshots` and review the diff of `tests/snapshots/`.

mod common;

use common::figures::{coloured_pixels, svg};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// Small, fast and physically complete: free orbital → local moment → strong coupling begins
/// (33 shells). Written out in full so that the snapshots do not depend on the shipped presets
/// or on defaults.
const PRESET_TOML: &str = r#"description = "Symmetric Anderson model in the Kondo regime, small (snapshot tests)"
derive = ["eps_d", "U"]

[model]
kind = "siam"
U = 0.1
eps_d = -0.05
Gamma = 0.005
h = 0.0
field = "total"

[nrg]
Lambda = 2.5
discretization = "wilson"
z = 1.0
keep = 120
e_cut = 0.0
beta_bar = 0.75
T_min = 1e-6
gap_window = 0.2

[output]
levels = 16
impurity_observables = true
"#;

const PRESET: &[&str] = &["snap.toml"];

struct Sandbox {
    root: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = TempDir::new().unwrap();
        fs::create_dir(root.path().join("config")).unwrap();
        fs::write(root.path().join("snap.toml"), PRESET_TOML).unwrap();
        Sandbox { root }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    /// Run `dnrg tui --headless` with the preset, a size, a key script and NO_COLOR or not.
    /// The config dir is given relative to the working directory so that paths on screen
    /// are the same on every machine.
    fn headless(&self, size: &str, keys: &str, mono: bool, extra: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnrg"));
        cmd.arg("tui")
            .arg("--headless")
            .args(PRESET)
            .args(extra)
            .args(["--size", size, "--keys", keys])
            .current_dir(self.path())
            .env("DNRG_CONFIG_DIR", "config")
            .env_remove("DNRG_TUI_STATS");
        if mono {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        cmd.output().unwrap()
    }

    fn screen(&self, size: &str, keys: &str, mono: bool) -> String {
        let out = self.headless(size, keys, mono, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "exit {:?}, stderr: {stderr}",
            out.status.code()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }
}

fn screen(size: &str, keys: &str) -> String {
    Sandbox::new().screen(size, keys, false)
}

fn assert_size(screen: &str, size: &str) {
    let (w, h) = size.split_once('x').unwrap();
    let (w, h): (usize, usize) = (w.parse().unwrap(), h.parse().unwrap());
    assert_eq!(screen.lines().count(), h, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= w), "{screen}");
}

// ---- each view at 80×24 -------------------------------------------------------------------

#[test]
fn flow_80x24() {
    let s = screen("80x24", "<wait>");
    assert_size(&s, "80x24");
    assert!(s.contains("[1 Flow]"));
    assert!(s.contains("even N"));
    assert!(s.contains("done"));
    assert!(s.contains("shell  32/32"));
    assert!(
        !s.contains(" ms"),
        "no wall-clock times in headless mode:\n{s}"
    );
    insta::assert_snapshot!("flow_80x24", s);
}

#[test]
fn flow_odd_shells_with_a_level_cursor_80x24() {
    let s = screen("80x24", "<wait>o<Left><Left><Down><Down><Down>");
    assert!(s.contains("odd N"));
    assert!(s.contains("N=27"), "{s}");
    insta::assert_snapshot!("flow_odd_cursor_80x24", s);
}

#[test]
fn thermo_80x24() {
    let s = screen("80x24", "<wait>2");
    assert!(s.contains("[2 Thermo]"));
    for needle in [
        "S_imp", "C_imp", "n_d", "Tχ_imp", "docc", "ln4", "ln2", "1/4", "1/8",
    ] {
        assert!(s.contains(needle), "{needle} missing:\n{s}");
    }
    assert!(s.contains("log10 T"));
    assert!(s.contains("T_K 2.95e-6"), "{s}");
    insta::assert_snapshot!("thermo_80x24", s);
}

#[test]
fn sensitivities_80x24() {
    let s = screen("80x24", "<wait>3<Down>");
    assert!(s.contains("∂S_imp/∂eps_d"), "{s}");
    assert!(s.contains("dE/deps_d"));
    insta::assert_snapshot!("sensitivities_80x24", s);
}

#[test]
fn sensitivities_second_parameter_80x24() {
    let s = screen("80x24", "<wait>3<Down><Down><Down><Down>t");
    assert!(s.contains("∂n_d/∂U"), "{s}");
    insta::assert_snapshot!("sensitivities_dU_80x24", s);
}

#[test]
fn parameters_80x24() {
    let s = screen("80x24", "<wait>4");
    assert!(s.contains("[4 Parameters]"));
    for needle in [
        "kind",
        "Gamma",
        "Lambda",
        "discretization",
        "T_min",
        "[x] U",
    ] {
        assert!(s.contains(needle), "{needle} missing:\n{s}");
    }
    insta::assert_snapshot!("parameters_80x24", s);
}

#[test]
fn help_80x24() {
    let s = screen("80x24", "<wait>?");
    assert!(s.contains("Help"));
    insta::assert_snapshot!("help_80x24", s);
}

#[test]
fn help_lists_every_key_and_the_script_syntax() {
    let s = screen("120x60", "<wait>?");
    for key in [
        "q  Esc", "? ", "Tab", "Home", "+  -", "r ", "P ", "p ", "s ", "e ", "o ", "t ", "d ",
        "m ", "M ", "f ", "a ", "Enter",
    ] {
        assert!(s.contains(key), "{key:?} missing from the help:\n{s}");
    }
    for token in [
        "<wait>",
        "<wait:500ms>",
        "<shells:N>",
        "<spectrum:N>",
        "<Enter>",
        "<C-x>",
    ] {
        assert!(s.contains(token), "{token} missing from the help:\n{s}");
    }
}

// ---- the large layout -------------------------------------------------------------------

#[test]
fn all_panels_160x48() {
    let s = screen("160x48", "<wait>");
    assert_size(&s, "160x48");
    for title in ["1 Flow", "2 Thermo", "3 Sensitivities", "4 Parameters"] {
        assert!(s.contains(title), "{title} missing:\n{s}");
    }
    assert!(s.contains("even N") && s.contains("odd N"), "both parities");
    insta::assert_snapshot!("all_panels_160x48", s);
}

#[test]
fn sensitivities_focused_160x48() {
    let s = screen("160x48", "<wait>3<Down><Down><Left><Left><Left>");
    assert!(s.contains("∂C_imp/∂eps_d"), "{s}");
    insta::assert_snapshot!("sensitivities_focused_160x48", s);
}

// ---- monochrome (NO_COLOR): series told apart by glyphs ---------------------------------

#[test]
fn flow_no_color_80x24() {
    let s = Sandbox::new().screen("80x24", "<wait>", true);
    // sectors Q = 0, ±1 as o, +, x in the legend and in the plot
    assert!(s.contains("o0 ++1 x-1"), "{s}");
    insta::assert_snapshot!("flow_no_color_80x24", s);
}

#[test]
fn thermo_no_color_80x24() {
    let s = Sandbox::new().screen("80x24", "<wait>2", true);
    assert!(s.contains("• S_imp") && s.contains("+ C_imp"), "{s}");
    insta::assert_snapshot!("thermo_no_color_80x24", s);
}

#[test]
fn all_panels_no_color_160x48() {
    let s = Sandbox::new().screen("160x48", "<wait>", true);
    insta::assert_snapshot!("all_panels_no_color_160x48", s);
}

// ---- interactions -----------------------------------------------------------------------

#[test]
fn invalid_value_is_refused_inline_with_the_cli_reason() {
    let s = screen("80x24", "<wait>4<Down><Down><Enter>-1<Enter>");
    assert!(
        s.contains("model.Gamma = -1.0: must be ≥ 0 (Γ = πρV²)"),
        "{s}"
    );
    assert!(s.contains("done"), "the run was not restarted:\n{s}");
    insta::assert_snapshot!("refused_value_80x24", s);
}

#[test]
fn the_refusal_matches_the_cli() {
    let sandbox = Sandbox::new();
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["run", "snap.toml", "--set", "model.Gamma=-1"])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    let cli = String::from_utf8(out.stderr).unwrap();
    assert!(
        cli.contains("model.Gamma = -1.0: must be ≥ 0 (Γ = πρV²)"),
        "{cli}"
    );
    let s = screen("80x24", "<wait>4<Down><Down><Enter>abc<Enter>");
    assert!(
        s.contains("model.Gamma: expected a number, found string"),
        "{s}"
    );
    let s = screen("80x24", "<wait>4<PgDn><PgDn><Up><Up><Enter>300.5<Enter>");
    assert!(
        s.contains("nrg.keep: expected a positive integer, found float"),
        "{s}"
    );
}

#[test]
fn editing_restarts_and_the_new_run_replaces_the_old() {
    let s = screen("80x24", "<wait>4<Enter>0.2<Enter><wait>");
    assert!(s.contains("model.U = 0.2  → restarted"), "{s}");
    assert!(s.contains("U                     0.2"), "{s}");
    assert!(s.contains("done"));
}

#[test]
fn stepping_and_the_derive_toggle() {
    let s = screen("80x24", "<wait>4<Down><Down>++d<wait>");
    assert!(s.contains("derive = eps_d, U, Gamma"), "{s}");
    assert!(s.contains("[x] Gamma                 0.0078125"), "{s}");
}

#[test]
fn pinned_comparison_160x48() {
    let s = screen("160x48", "<wait>P4<Enter>0.15<Enter><wait>2");
    assert!(s.contains("pinned: U 0.1→0.15"), "{s}");
    assert!(s.contains("· pinned"), "{s}");
    insta::assert_snapshot!("pinned_160x48", s);
}

#[test]
fn preset_picker_shows_broken_presets_and_keeps_running() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "config/presets/broken.toml",
        "description = \"x\"\n[nrg]\nLambda = = 2\n",
    );
    sandbox.write(
        "config/presets/mine.toml",
        "description = \"my own preset\"\n[model]\nU = 0.2\n[nrg]\nT_min = 1e-4\n",
    );
    // open the picker, try the broken one (error shown, still open)
    let s = sandbox.screen("100x30", "<wait>p<End><Up><Enter>", false);
    assert!(
        s.contains("cannot load 'broken': config/presets/broken.toml: invalid TOML at line 3"),
        "{s}"
    );
    assert!(s.contains("my own preset"));
    for name in ["kondo-symmetric", "resonant-level", "broken", "mine"] {
        assert!(s.contains(name), "{name} missing:\n{s}");
    }
    // then load the good one
    let s = sandbox.screen("100x30", "<wait>p<End><Enter><wait>4", false);
    assert!(
        s.contains("loaded preset 'mine'") || s.contains(" mine "),
        "{s}"
    );
    assert!(s.contains("U                     0.2"), "{s}");
}

#[test]
fn save_refuses_to_overwrite_without_confirmation() {
    let sandbox = Sandbox::new();
    let s = sandbox.screen("80x24", "<wait>4<Enter>0.3<Enter>smine<Enter>", false);
    assert!(s.contains("saved preset 'mine'"), "{s}");
    let saved = sandbox.path().join("config/presets/mine.toml");
    assert!(fs::read_to_string(&saved).unwrap().contains("U = 0.3"));
    // saving again asks; n keeps the file
    sandbox.write("config/presets/mine.toml", "description = \"keep me\"\n");
    let s = sandbox.screen("80x24", "<wait>smine<Enter>", false);
    assert!(s.contains("Overwrite?"), "{s}");
    let s = sandbox.screen("80x24", "<wait>smine<Enter>n", false);
    assert!(s.contains("not overwritten"), "{s}");
    assert_eq!(
        fs::read_to_string(&saved).unwrap(),
        "description = \"keep me\"\n"
    );
    // y overwrites
    let s = sandbox.screen("80x24", "<wait>smine<Enter>y", false);
    assert!(s.contains("saved preset 'mine'"), "{s}");
    assert!(fs::read_to_string(&saved).unwrap().contains("keep = 120"));
    // a shipped name asks too: the user preset would shadow it
    let s = sandbox.screen("80x24", "<wait>skondo-symmetric<Enter>", false);
    assert!(
        s.contains("exists (shipped with dnrg; a user preset of that"),
        "{s}"
    );
}

#[test]
fn export_writes_the_same_records_as_dnrg_run() {
    let sandbox = Sandbox::new();
    let s = sandbox.screen("80x24", "<wait>e<Enter>", false);
    assert!(
        s.contains("exported 33 shells as jsonl to dnrg-export.jsonl"),
        "{s}"
    );
    let s = sandbox.screen("80x24", "<wait>e<Tab><Enter>", false);
    assert!(s.contains("as csv to dnrg-export.csv"), "{s}");
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
            .arg("run")
            .args(PRESET)
            .args(["--format", format, "--quiet"])
            .current_dir(sandbox.path())
            .env("DNRG_CONFIG_DIR", "config")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let exported = fs::read_to_string(sandbox.path().join("dnrg-export.jsonl")).unwrap();
    assert_eq!(exported, run("jsonl"));
    let exported = fs::read_to_string(sandbox.path().join("dnrg-export.csv")).unwrap();
    assert_eq!(exported, run("csv"));
    // an existing file needs a confirmation
    let s = sandbox.screen("80x24", "<wait>e<Enter>", false);
    assert!(s.contains("dnrg-export.jsonl exists. Overwrite?"), "{s}");
    // and a running job cannot be exported
    let s = sandbox.screen("80x24", "r<shells:1>e<Enter>", false);
    assert!(
        s.contains("still computing") || s.contains("exists. Overwrite?"),
        "{s}"
    );
}

#[test]
fn export_draws_the_panel_in_focus_as_the_dnrg_plot_figure() {
    let sandbox = Sandbox::new();
    // Thermo: the same figure as `dnrg plot --what thermo`, from the explorer's records
    let s = sandbox.screen("80x24", "<wait>2ethermo.svg<Enter>", false);
    assert!(
        s.contains("exported Thermo panel as svg to thermo.svg"),
        "{s}"
    );
    let (texts, lines) = svg(&sandbox.path().join("thermo.svg"));
    assert!(lines >= 2, "{lines} curves");
    for label in ["S_imp", "T chi_imp", "ln 2", "1/4", "T_K"] {
        assert!(texts.iter().any(|t| t == label), "no {label} in {texts:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["run", "snap.toml", "--quiet", "--out", "run.jsonl"])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["plot", "run.jsonl", "--what", "thermo", "-o", "cli.svg"])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    assert!(out.status.success());
    // the explorer's header names its preset like `dnrg run` does: same records, same figure
    assert_eq!(
        fs::read_to_string(sandbox.path().join("thermo.svg")).unwrap(),
        fs::read_to_string(sandbox.path().join("cli.svg")).unwrap()
    );
    // Flow and Sensitivities
    let s = sandbox.screen("80x24", "<wait>1eflow.svg<Enter>", false);
    assert!(s.contains("exported Flow panel as svg"), "{s}");
    let (texts, lines) = svg(&sandbox.path().join("flow.svg"));
    assert!(lines >= 10, "{lines} level lines");
    assert!(texts.iter().any(|t| t.starts_with("(0,0")), "{texts:?}");
    let s = sandbox.screen("80x24", "<wait>3esens.svg<Enter>", false);
    assert!(s.contains("exported Sensitivities panel as svg"), "{s}");
    let (texts, _) = svg(&sandbox.path().join("sens.svg"));
    assert!(
        texts.iter().any(|t| t == "dn_d/dU") && texts.iter().any(|t| t == "dS_imp/deps_d"),
        "{texts:?}"
    );
    // PNG: a real image of the right size with coloured curves in it
    let s = sandbox.screen("80x24", "<wait>2ethermo.png<Enter>", false);
    assert!(s.contains("exported Thermo panel as png"), "{s}");
    let (coloured, size) = coloured_pixels(&sandbox.path().join("thermo.png"));
    assert_eq!(size, (960, 600));
    // same threshold as tests/plot.rs (measured ~4000 there): a blank canvas has none
    assert!(coloured > 1000, "{coloured} coloured pixels");
    // the Parameters panel has no figure; an existing file needs a confirmation
    let s = sandbox.screen("80x24", "<wait>4ex.svg<Enter>", false);
    assert!(s.contains("focus Flow (1), Thermo (2)"), "{s}");
    assert!(!sandbox.path().join("x.svg").exists());
    let s = sandbox.screen("80x24", "<wait>2ethermo.svg<Enter>", false);
    assert!(s.contains("thermo.svg exists. Overwrite?"), "{s}");
    // no derivatives: the sensitivities figure is refused with the reason
    let s = sandbox.screen("80x24", "<wait>4d<Down>d<wait>3enone.svg<Enter>", false);
    assert!(s.contains("no sensitivities figure"), "{s}");
    assert!(!sandbox.path().join("none.svg").exists());
}

/// Mixed valence (n_d ≈ 0.80 at ε_d = −0.02), small: Λ = 3, keep = 150, 27 shells.
const FIT_PRESET: &str = r#"description = "SIAM, mixed valence, small (fit tests)"
derive = ["eps_d"]

[model]
kind = "siam"
U = 0.1
eps_d = -0.02
Gamma = 0.01
h = 0.0
field = "total"

[nrg]
Lambda = 3.0
discretization = "wilson"
z = 1.0
keep = 150
e_cut = 0.0
beta_bar = 0.75
T_min = 1e-6
gap_window = 0.2

[output]
levels = 16
impurity_observables = true
"#;

fn fit_screen(sandbox: &Sandbox, keys: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args([
            "tui",
            "--headless",
            "fit.toml",
            "--size",
            "80x24",
            "--keys",
            keys,
        ])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The last shell's ⟨n_d⟩ and the header's ε_d of a JSONL run.
fn last_n_d_and_eps_d(path: &Path) -> (f64, f64) {
    let text = fs::read_to_string(path).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let header = records.iter().find(|r| r["type"] == "header").unwrap();
    let last = records.iter().rev().find(|r| r["type"] == "shell").unwrap();
    (
        last["obs"]["n_d"].as_f64().unwrap(),
        header["model"]["eps_d"].as_f64().unwrap(),
    )
}

#[test]
fn a_fit_from_the_explorer_reaches_the_marked_target() {
    let sandbox = Sandbox::new();
    sandbox.write("fit.toml", FIT_PRESET);
    // mark ⟨n_d⟩ at the last shell as 0.7 (σ 0.001 by default), fit ε_d, export the result
    let s = fit_screen(
        &sandbox,
        "<wait>2mn_d = 0.7<Enter>f<wait>efitted.jsonl<Enter>",
    );
    assert_size(&s, "80x24");
    // the fit strip: the target, the result with its standard error, χ² run by run
    assert!(s.contains("Fit targets: n_d=0.7±0.001@last"), "{s}");
    assert!(s.contains("converged after"), "{s}");
    assert!(s.contains("χ² by run: "), "{s}");
    let runs: usize = s
        .split("converged after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{s}"));
    // measured 4 derivative runs (χ² 1.1e4 → 564 → 0.23 → 5.8e-8); LM with the exact Jacobian
    assert!(runs <= 8, "{runs} runs");
    // the panels show the fitted run: its records carry the fitted ε_d and reach the target
    let (n_d, eps_d) = last_n_d_and_eps_d(&sandbox.path().join("fitted.jsonl"));
    // measured |n_d − 0.7| = 2.4e-7 (the fit stops once a step would move n_d by < 0.1σ =
    // 1e-4); 1e-5 is 40× the measured value
    assert!((n_d - 0.7).abs() < 1e-5, "n_d = {n_d}");
    assert!(eps_d > -0.02 && eps_d < 0.0, "eps_d = {eps_d}");
    // and they are what `dnrg run` computes at that ε_d
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args([
            "run",
            "fit.toml",
            "--quiet",
            "--out",
            "check.jsonl",
            "--set",
        ])
        .arg(format!("model.eps_d={eps_d:e}"))
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (check, _) = last_n_d_and_eps_d(&sandbox.path().join("check.jsonl"));
    assert_eq!(check, n_d);
}

#[test]
fn fit_refusals_and_cancel_are_explained() {
    let sandbox = Sandbox::new();
    sandbox.write("fit.toml", FIT_PRESET);
    let s = fit_screen(&sandbox, "<wait>f");
    assert!(s.contains("no fit targets: on Thermo (2) select"), "{s}");
    // U derived too: two free parameters, one target
    let s = fit_screen(&sandbox, "<wait>4d<wait>2mn_d = 0.7<Enter>f");
    assert!(
        s.contains("2 free parameters (eps_d, U) but 1 target"),
        "{s}"
    );
    let s = fit_screen(&sandbox, "<wait>2mn_d = seven<Enter>");
    assert!(s.contains("value: expected a number, found 'seven'"), "{s}");
    let s = fit_screen(&sandbox, "<wait>2mchi_loc = 1<Enter>");
    assert!(s.contains("'chi_loc' cannot be a target"), "{s}");
    // ↑↓ on Thermo select the observable that m marks
    let s = fit_screen(&sandbox, "<wait>2<Down>m");
    assert!(s.contains("target: S_imp = "), "{s}");
    // Esc cancels a running fit (and does not quit); the parameters stay those before it
    let s = fit_screen(&sandbox, "<wait>2mn_d = 0.5<Enter>f<Esc>");
    assert!(s.contains("cancelled (Esc)"), "{s}");
    assert!(s.contains("fit cancelled"), "{s}");
    // a parameter change cancels it like a run
    let s = fit_screen(&sandbox, "<wait>2mn_d = 0.5<Enter>f+<wait>2");
    assert!(s.contains("cancelled (parameters changed)"), "{s}");
}

#[test]
fn resize_switches_layouts() {
    let s = screen("80x24", "<wait><resize:160x48>");
    assert_size(&s, "160x48");
    assert!(s.contains("4 Parameters ─"), "framed panels:\n{s}");
    let s = screen("160x48", "<wait><resize:50x12>");
    assert!(s.contains("terminal too small: 50×12 (need 60×16"), "{s}");
}

// ---- the Spectrum panel -----------------------------------------------------------------

/// Symmetric SIAM with a Kondo scale far above T_min (T_K ≈ 0.04, U = 0.4, Γ = 0.1), small:
/// Λ = 3, keep 150, 23 shells; run and spectrum together take about half a second.
const SPECTRUM_PRESET: &str = r#"description = "Symmetric SIAM, T_K ≫ T_min, small (spectrum tests)"
derive = ["eps_d"]

[model]
kind = "siam"
U = 0.4
eps_d = -0.2
Gamma = 0.1
h = 0.0
field = "total"

[nrg]
Lambda = 3.0
discretization = "wilson"
z = 1.0
keep = 150
e_cut = 0.0
beta_bar = 0.75
T_min = 1e-5
gap_window = 0.2

[output]
levels = 16
impurity_observables = true
"#;

fn spectrum_screen(sandbox: &Sandbox, size: &str, keys: &str, mono: bool) -> String {
    preset_screen(sandbox, SPECTRUM_PRESET, size, keys, mono)
}

/// The Kondo model with T_K ≈ 2e-2 ≫ T_min (ρJ = 0.3), small like [`SPECTRUM_PRESET`], its
/// exchange derived.
const KONDO_SPECTRUM_PRESET: &str = r#"description = "Kondo model, T_K ≫ T_min, small (spectrum tests)"
derive = ["J"]

[model]
kind = "kondo"
J = 0.3
K = 0.0
h = 0.0
field = "total"

[nrg]
Lambda = 3.0
discretization = "wilson"
z = 1.0
keep = 150
e_cut = 0.0
beta_bar = 0.75
T_min = 1e-5
gap_window = 0.2

[output]
levels = 16
impurity_observables = true
"#;

fn preset_screen(sandbox: &Sandbox, preset: &str, size: &str, keys: &str, mono: bool) -> String {
    sandbox.write("spec.toml", preset);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnrg"));
    cmd.args([
        "tui",
        "--headless",
        "spec.toml",
        "--size",
        size,
        "--keys",
        keys,
    ])
    .current_dir(sandbox.path())
    .env("DNRG_CONFIG_DIR", "config");
    if mono {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn spectrum_80x24() {
    let s = spectrum_screen(&Sandbox::new(), "80x24", "a<wait>", false);
    assert_size(&s, "80x24");
    assert!(s.contains("[3 Spectrum]"), "{s}");
    assert!(s.contains("T = 1e-5"), "T defaults to T_min:\n{s}");
    assert!(
        s.contains("FDM b=0.6 · 50 bins/dec · Nz=1 · Σ trick"),
        "{s}"
    );
    // the Friedel sum rule at T ≪ T_K: πΓA(0) = sin²(π/2) = 1
    assert!(s.contains("πΓA(0)=0.99"), "{s}");
    // the second chart: ∂A/∂ε_d, odd in ω at the particle–hole symmetric point
    assert!(s.contains("∂A/∂eps_d  at ω=0: ≈0"), "{s}");
    assert_eq!(s.matches("└┬").count(), 2, "two charts:\n{s}");
    insta::assert_snapshot!("spectrum_80x24", s);
}

/// The rows of the plot area of a screen: from the legend line to the x-axis line.
fn plot_rows(screen: &str) -> Vec<&str> {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines.iter().position(|l| l.contains("πΓA(ω)")).unwrap() + 1;
    let bottom = lines.iter().position(|l| l.contains("└┬")).unwrap();
    lines[top..bottom].to_vec()
}

#[test]
fn opening_the_spectrum_panel_draws_a_of_omega() {
    let sandbox = Sandbox::new();
    // opened while the run computes: it says so, then the spectrum follows the last shell
    let s = spectrum_screen(&sandbox, "80x24", "a", false);
    assert!(
        s.contains("A(ω) is computed once the run reaches its last shell")
            || s.contains("computing A(ω)")
            || s.contains("πΓA(ω)"),
        "{s}"
    );
    let s = spectrum_screen(&sandbox, "80x24", "<wait>a<wait>", false);
    let rows = plot_rows(&s);
    // curves in Braille on both sides of the zero marker (│ in the middle column), the Friedel
    // line labelled on the y axis, the decades of ±ω on the x axis
    let braille = |l: &str| {
        l.chars()
            .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
            .count()
    };
    let dots: usize = rows.iter().map(|l| braille(l)).sum();
    assert!(dots > 60, "{dots} Braille cells:\n{s}");
    // the zero marker: a │ after the y axis, in every row the curve does not cross
    let marker = |l: &str| -> Option<usize> {
        let chars: Vec<char> = l.chars().collect();
        let axis = chars.iter().position(|&c| c == '│' || c == '┤')?;
        chars[axis + 1..]
            .iter()
            .position(|&c| c == '│')
            .map(|i| axis + 1 + i)
    };
    let column = marker(rows[rows.len() / 2]).unwrap_or_else(|| panic!("zero marker:\n{s}"));
    let side = |from: usize, to: usize| -> usize {
        rows.iter()
            .map(|l| braille(&l.chars().skip(from).take(to - from).collect::<String>()))
            .sum()
    };
    assert!(
        side(9, column) > 20 && side(column + 1, 80) > 20,
        "both signs of ω:\n{s}"
    );
    assert!(rows[0].starts_with("Friedel┤"), "{s}");
    assert!(
        s.contains("-1e-2") && s.contains(" 0 ") && s.contains("1e-2"),
        "{s}"
    );
    assert!(s.contains("n_d=1 "), "{s}");
    // NO_COLOR: the curve is told apart by its glyph
    let s = spectrum_screen(&sandbox, "80x24", "a<wait>", true);
    assert!(s.contains("• πΓA(ω)"), "{s}");
    assert!(plot_rows(&s).iter().any(|l| l.contains('•')), "{s}");
    // the large layout: the Spectrum takes the lower right place, its settings in the title
    let s = spectrum_screen(&sandbox, "160x48", "a<wait>", false);
    assert!(s.contains("3 Spectrum FDM b=0.6"), "{s}");
    assert!(
        s.contains("2 Thermo") && !s.contains("3 Sensitivities"),
        "{s}"
    );
    // a again: back to Sensitivities
    let s = spectrum_screen(&sandbox, "80x24", "a<wait>a", false);
    assert!(s.contains("[3 Sensitivities]"), "{s}");
}

#[test]
fn the_spectrum_temperature_is_a_parameter_of_the_panel() {
    let sandbox = Sandbox::new();
    // ← from T_min would go below the last shell's scale: refused with the reason
    let s = spectrum_screen(&sandbox, "80x24", "a<wait><Left>", false);
    assert!(s.contains("spectrum T = 5e-6 is below ω_N = "), "{s}");
    assert!(s.contains("T = 1e-5"), "{s}");
    // → steps along 1-2-5 and recomputes; Enter types a value
    let s = spectrum_screen(&sandbox, "80x24", "a<wait><Right><wait>", false);
    assert!(s.contains("T = 2e-5") && s.contains("πΓA(0)="), "{s}");
    let s = spectrum_screen(&sandbox, "80x24", "a<wait><Enter>1e-3<Enter><wait>", false);
    assert!(s.contains("T = 0.001"), "{s}");
    // T ≈ T_K/40: the Kondo peak is lower than at T = 1e-5
    let a0 = |s: &str| -> f64 {
        let at = s.find("πΓA(0)=").unwrap() + "πΓA(0)=".len();
        s[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let cold = spectrum_screen(&sandbox, "80x24", "a<wait>", false);
    assert!(a0(&s) < a0(&cold), "{} vs {}", a0(&s), a0(&cold));
    let s = spectrum_screen(&sandbox, "80x24", "a<wait><Enter>2<Enter>", false);
    assert!(s.contains("must be below the band edge D = 1"), "{s}");
    // the Kondo model: its T-matrix
    let s = spectrum_screen(&sandbox, "80x24", "4<Home>+a<wait>", false);
    assert!(s.contains("−πρ₀ImT"), "{s}");
}

#[test]
fn kondo_spectrum_80x24() {
    // the Kondo model's T-matrix: −πρ_0 Im T with the unitarity line at 1, reached at T ≪ T_K
    let s = preset_screen(
        &Sandbox::new(),
        KONDO_SPECTRUM_PRESET,
        "80x24",
        "a<wait>",
        false,
    );
    assert_size(&s, "80x24");
    assert!(s.contains("[3 Spectrum]"), "{s}");
    assert!(s.contains("FDM b=0.6 · 50 bins/dec · Nz=1"), "{s}");
    assert!(
        !s.contains("Σ trick"),
        "no self-energy trick for the T-matrix:\n{s}"
    );
    assert!(s.contains("−πρ₀ImT(ω)") && s.contains("unitarity"), "{s}");
    assert!(s.contains("ΣW−⟨{O,O†}⟩ ≈0"), "{s}");
    // the second chart: ∂A_T/∂J
    assert!(s.contains("∂A/∂J"), "{s}");
    insta::assert_snapshot!("kondo_spectrum_80x24", s);
}

// ---- the headless contract --------------------------------------------------------------

#[test]
fn bad_key_scripts_exit_2_with_the_syntax() {
    let out = Sandbox::new().headless("80x24", "<Bogus>", false, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: key script: <Bogus>: unknown key"),
        "{err}"
    );
    assert!(err.contains("<shells:N>"), "{err}");
}

#[test]
fn a_wait_that_cannot_succeed_exits_2() {
    let out = Sandbox::new().headless("80x24", "<shells:99>", false, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("<shells:99>: the run ended with 33 shells"),
        "{err}"
    );
    // the screen is still printed
    assert!(String::from_utf8(out.stdout).unwrap().contains("done"));
}

#[test]
fn keys_need_headless_and_a_bad_preset_is_an_error() {
    let sandbox = Sandbox::new();
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["tui", "--keys", "q"])
        .current_dir(sandbox.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["tui", "--headless", "no-such-preset"])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown preset 'no-such-preset'")
    );
}

#[test]
fn without_a_terminal_the_explorer_exits_1() {
    let sandbox = Sandbox::new();
    let out = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("needs a terminal"), "{err}");
}

#[test]
fn quitting_ends_the_script() {
    let s = screen("80x24", "<wait>q4");
    assert!(s.contains("[1 Flow]"), "keys after q are not handled:\n{s}");
}

#[test]
fn z_averaged_thermodynamics_run_in_the_explorer_as_in_dnrg_run() {
    // `nrg.z_average = 2`: the explorer streams the averaged records of `dnrg run` (its T_K,
    // 4.0e-6 here against 2.95e-6 of the single chain, is the CLI's to the digits shown)
    let sandbox = Sandbox::new();
    let out = sandbox.headless("80x24", "<wait>2", false, &["--set", "nrg.z_average=2"]);
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{s}");
    assert!(s.contains(" done ") && s.contains("Nz=2"), "{s}");
    let run = Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(["run", "snap.toml", "--set", "nrg.z_average=2"])
        .current_dir(sandbox.path())
        .env("DNRG_CONFIG_DIR", "config")
        .output()
        .unwrap();
    let text = String::from_utf8(run.stdout).unwrap();
    let done: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let t_k = done["T_K"].as_f64().unwrap();
    assert!((t_k - 4.0e-6).abs() < 0.05e-6, "T_K = {t_k}");
    assert!(s.contains(&format!("T_K {t_k:.0e}")), "{t_k:.0e}:\n{s}");
}
