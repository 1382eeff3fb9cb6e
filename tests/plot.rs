//! `dnrg plot`: SVG that parses with the expected elements, PNG whose pixels show the curves,
//! and clear errors. Small runs (Λ = 3, 120 kept, T_min = 1e-6).

mod common;

use common::figures::{coloured_pixels, svg};

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

fn dnrg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dnrg"))
        .args(args)
        .current_dir(dir)
        .env("DNRG_CONFIG_DIR", dir.join("config"))
        .output()
        .unwrap()
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn small_run(dir: &Path) {
    ok(dnrg(
        dir,
        &[
            "run",
            "kondo-symmetric",
            "--set",
            "nrg.keep=120",
            "--set",
            "nrg.Lambda=3",
            "--set",
            "nrg.T_min=1e-6",
            "--derive",
            "eps_d,U",
            "--out",
            "run.jsonl",
        ],
    ));
}

#[test]
fn svg_figures_parse_and_hold_their_elements() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    small_run(d);
    ok(dnrg(
        d,
        &["plot", "run.jsonl", "--what", "thermo", "-o", "thermo.svg"],
    ));
    let (texts, lines) = svg(&d.join("thermo.svg"));
    // two panels: a curve each, plus the dashed reference lines and T_K markers
    assert!(lines >= 2, "{lines} polylines");
    for label in [
        "S_imp",
        "T chi_imp",
        "ln 4",
        "ln 2",
        "1/8",
        "1/4",
        "T_K",
        "T / D",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "no '{label}' in {texts:?}"
        );
    }
    ok(dnrg(
        d,
        &["plot", "run.jsonl", "--what", "flow", "-o", "flow.svg"],
    ));
    let (texts, lines) = svg(&d.join("flow.svg"));
    assert!(lines >= 10, "{lines} level lines");
    // the ground state of the even shells is the singlet (Q, Sz) = (0, 0)
    assert!(texts.iter().any(|t| t.starts_with("(0,0")), "{texts:?}");
    ok(dnrg(
        d,
        &["plot", "run.jsonl", "--what", "sens", "-o", "sens.svg"],
    ));
    let (texts, _) = svg(&d.join("sens.svg"));
    assert!(
        texts.iter().any(|t| t == "dn_d/dU") && texts.iter().any(|t| t == "dS_imp/deps_d"),
        "{texts:?}"
    );
    ok(dnrg(
        d,
        &["plot", "run.jsonl", "--what", "levels", "-o", "levels.svg"],
    ));
    let (texts, _) = svg(&d.join("levels.svg"));
    assert!(
        texts.iter().any(|t| t.starts_with("(Q, Sz) = ")),
        "{texts:?}"
    );
    // default output name
    ok(dnrg(d, &["plot", "run.jsonl"]));
    svg(&d.join("run-thermo.svg"));
}

#[test]
fn png_pixels_show_the_curves() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    small_run(d);
    ok(dnrg(
        d,
        &["plot", "run.jsonl", "--what", "thermo", "-o", "thermo.png"],
    ));
    let (coloured, size) = coloured_pixels(&d.join("thermo.png"));
    eprintln!("thermo.png: {coloured} coloured pixels");
    assert_eq!(size, (960, 600));
    // measured 4172 coloured pixels (two 2-px curves, T_K markers); a blank or grey-only
    // canvas has none
    assert!(coloured > 1000, "{coloured} coloured pixels");

    // a sweep: one line per point, coloured by the swept parameter
    fs::write(
        d.join("s.toml"),
        "preset = \"kondo-symmetric\"\n[set]\n\"nrg.keep\" = 100\n\"nrg.Lambda\" = 3.0\n\"nrg.T_min\" = 1e-6\n\
         [axes]\n\"model.Gamma\" = { log = [0.004, 0.02], n = 3 }\n",
    )
    .unwrap();
    ok(dnrg(d, &["sweep", "s.toml", "--out", "sw", "--quiet"]));
    ok(dnrg(d, &["plot", "sw", "-o", "sweep.png"]));
    let (coloured_sweep, _) = coloured_pixels(&d.join("sweep.png"));
    eprintln!("sweep.png: {coloured_sweep} coloured pixels");
    // measured 10623 (three curves per panel and the legend)
    assert!(coloured_sweep > 2000, "{coloured_sweep} coloured pixels");
    ok(dnrg(d, &["plot", "sw", "-o", "sweep.svg"]));
    let (texts, _) = svg(&d.join("sweep.svg"));
    assert!(texts.iter().any(|t| t == "Gamma=0.004"), "{texts:?}");
}

#[test]
fn bad_plot_requests_exit_2_with_a_reason() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    small_run(d);
    fs::write(
        d.join("plain.jsonl"),
        fs::read_to_string(d.join("run.jsonl"))
            .unwrap()
            .replace("\"derive\":[\"eps_d\",\"U\"]", "\"derive\":[]"),
    )
    .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["plot", "run.jsonl", "--what", "heat"], "unknown figure"),
        (
            &["plot", "run.jsonl", "-o", "fig.pdf"],
            "use a .svg or .png",
        ),
        (&["plot", "missing.jsonl"], "missing.jsonl: cannot read"),
        (
            &["plot", "plain.jsonl", "--what", "sens", "-o", "x.svg"],
            "no derivatives",
        ),
    ];
    for (args, needle) in cases {
        let out = dnrg(d, args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.starts_with("error: ") && e.contains(needle),
            "{args:?}: {e}"
        );
    }
}
