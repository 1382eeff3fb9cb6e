//! The `dnrg` binary end to end. Every test runs in a sandbox: its own working directory and
//! its own `DNRG_CONFIG_DIR`, so the user's presets never leak in.
//!
//! Tests that compute shells are marked `// needs the solver`; everything else stops before
//! the solver starts.

mod common;

use serde_json::Value;
use std::fs;
use std::process::{Command, Output};

use common::sandbox::Sandbox;

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Bad input: exit code 2, one `error: …` message naming everything in `needles`, no panic,
/// nothing on stdout.
fn assert_bad_input(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr {err:?} should mention {needle:?}"
        );
    }
    assert_eq!(stdout(out), "", "nothing on stdout");
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        stderr(out)
    );
    assert!(!stderr(out).contains("panicked"));
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// The shipped presets (tests/presets.rs pins the list itself).
fn shipped() -> Vec<&'static str> {
    dnrg::preset::shipped_names().collect()
}

/// A fast run for the tests that need the solver.
const QUICK: [&str; 5] = [
    "run",
    "resonant-level",
    "--set",
    "nrg.T_min=1e-4",
    "--quiet",
];

// ---- bad input: exit 2 with a clear message --------------------------------------------

#[test]
fn malformed_toml() {
    let s = Sandbox::new();
    s.write("broken.toml", "description = \"x\"\n[nrg]\nLambda = = 2\n");
    let out = s.run(&["run", "broken.toml"]);
    assert_bad_input(&out, &["broken.toml", "invalid TOML at line 3, column 10"]);
}

#[test]
fn unknown_key_in_a_file() {
    let s = Sandbox::new();
    s.write("presets/typo.toml", "[nrg]\nlamda = 2.0\n");
    let out = s.run(&["run", "presets/typo.toml"]);
    assert_bad_input(
        &out,
        &[
            "presets/typo.toml",
            "unknown key 'nrg.lamda'",
            "valid keys in [nrg]: Lambda",
        ],
    );
}

#[test]
fn unknown_key_in_set() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "model.UU=1"]);
    assert_bad_input(
        &out,
        &[
            "--set model.UU=1",
            "unknown key 'model.UU'",
            "kind, U, eps_d, Gamma",
        ],
    );
}

#[test]
fn wrong_type() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "nrg.keep=abc"]);
    assert_bad_input(
        &out,
        &["--set nrg.keep=abc: nrg.keep: expected a positive integer, found string"],
    );
    s.write("t.toml", "[nrg]\nkeep = \"abc\"\n");
    let out = s.run(&["run", "t.toml"]);
    assert_bad_input(
        &out,
        &["t.toml: nrg.keep: expected a positive integer, found string"],
    );
    let out = s.run(&["run", "--set", "nrg.keep=300.0"]);
    assert_bad_input(
        &out,
        &["nrg.keep: expected a positive integer, found float"],
    );
}

#[test]
fn lambda_at_or_below_one() {
    let s = Sandbox::new();
    s.write("presets/bad.toml", "[nrg]\nLambda = 0.5\n");
    let out = s.run(&["run", "presets/bad.toml"]);
    assert_bad_input(
        &out,
        &["presets/bad.toml: nrg.Lambda = 0.5: must be greater than 1"],
    );
    let out = s.run(&["run", "--set", "nrg.Lambda=1.0"]);
    assert_bad_input(
        &out,
        &[
            "--set nrg.Lambda=1.0: nrg.Lambda = 1",
            "must be greater than 1",
        ],
    );
}

#[test]
fn negative_gamma() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "model.Gamma=-0.01"]);
    assert_bad_input(
        &out,
        &[
            "--set model.Gamma=-0.01",
            "model.Gamma = -0.01",
            "must be ≥ 0",
        ],
    );
}

#[test]
fn keep_zero() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "nrg.keep=0"]);
    assert_bad_input(
        &out,
        &["--set nrg.keep=0: nrg.keep = 0: must keep at least one state"],
    );
}

#[test]
fn t_min_not_positive() {
    let s = Sandbox::new();
    for value in ["0", "-1e-9"] {
        let arg = format!("nrg.T_min={value}");
        let out = s.run(&["run", "--set", &arg]);
        assert_bad_input(
            &out,
            &[&format!("--set {arg}"), "nrg.T_min", "must be positive"],
        );
    }
}

#[test]
fn twist_outside_zero_one() {
    let s = Sandbox::new();
    for value in ["0", "1.5", "-0.5"] {
        let arg = format!("nrg.z={value}");
        let out = s.run(&["run", "--set", &arg]);
        assert_bad_input(
            &out,
            &[
                &format!("--set {arg}"),
                "nrg.z",
                "twist must lie in [0.01, 1]",
            ],
        );
    }
}

#[test]
fn unknown_parameter_in_derive() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--derive", "foo"]);
    assert_bad_input(
        &out,
        &["--derive: unknown parameter 'foo' (expected one of eps_d, U, Gamma, h)"],
    );
}

#[test]
fn parameter_of_the_other_model_in_derive() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--derive", "eps_d,J"]);
    assert_bad_input(
        &out,
        &[
            "--derive",
            "'J' is not a parameter of the siam model",
            "eps_d, U, Gamma, h",
        ],
    );
    let out = s.run(&["run", "kondo-model", "--derive", "U"]);
    assert_bad_input(&out, &["--derive", "'U'", "kondo model", "J, K, h"]);
}

#[test]
fn unknown_preset_name() {
    let s = Sandbox::new();
    s.write_user_preset("mine", "");
    let out = s.run(&["run", "xyz"]);
    assert_bad_input(
        &out,
        &[
            "unknown preset 'xyz'",
            "shipped: kondo-symmetric, mixed-valence",
            "user: mine",
        ],
    );
}

#[test]
fn missing_preset_file() {
    let s = Sandbox::new();
    let out = s.run(&["run", "nowhere/p.toml"]);
    assert_bad_input(&out, &["nowhere/p.toml", "cannot read"]);
}

#[test]
fn bad_format() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--format", "xml"]);
    assert_bad_input(&out, &["--format", "xml", "expected jsonl or csv"]);
}

#[cfg(unix)]
#[test]
fn out_through_a_link_writes_its_target_and_refuses_pipes() {
    let s = Sandbox::new();
    s.write("real.jsonl", "old\n");
    std::os::unix::fs::symlink("real.jsonl", s.work().join("link.jsonl")).unwrap();
    let out = s.run(&[&QUICK[..], &["--out", "link.jsonl"]].concat());
    assert_success(&out);
    let meta = fs::symlink_metadata(s.work().join("link.jsonl")).unwrap();
    assert!(meta.file_type().is_symlink(), "the link survives");
    let text = fs::read_to_string(s.work().join("real.jsonl")).unwrap();
    assert!(text.starts_with("{\"type\":\"header\""));
    let fifo = s.work().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = s.run(&[&QUICK[..], &["--out", "pipe"]].concat());
    assert_bad_input(&out, &["--out pipe", "not a regular file"]);
}

#[test]
fn out_into_a_missing_directory() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--out", "missing/out.jsonl"]);
    assert_bad_input(
        &out,
        &["--out missing/out.jsonl", "'missing' does not exist"],
    );
    assert!(!s.work().join("missing").exists());
    assert_eq!(s.files(&s.work()), Vec::<String>::new(), "nothing created");
}

#[test]
fn out_onto_a_directory() {
    let s = Sandbox::new();
    fs::create_dir(s.work().join("dir")).unwrap();
    let out = s.run(&["run", "--out", "dir"]);
    assert_bad_input(&out, &["--out dir", "is a directory"]);
}

#[test]
fn unknown_discretization() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "nrg.discretization=logarithmic"]);
    assert_bad_input(
        &out,
        &[
            "--set nrg.discretization=logarithmic",
            "nrg.discretization",
            "unknown value 'logarithmic'",
            "wilson, campo-oliveira, zitko-pruschke",
        ],
    );
}

#[test]
fn set_without_a_value() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "model.U"]);
    assert_bad_input(&out, &["--set model.U", "expected KEY=VALUE"]);
}

#[test]
fn usage_errors_exit_2() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("panicked"));
    let out = s.run(&["tui", "--size", "wide"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("WIDTHxHEIGHT"));
}

#[test]
fn failed_validation_with_out_leaves_no_file() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--set", "nrg.Lambda=0.5", "--out", "out.jsonl"]);
    assert_bad_input(&out, &["nrg.Lambda = 0.5"]);
    assert_eq!(
        s.files(&s.work()),
        Vec::<String>::new(),
        "no output or temp file"
    );
}

// ---- presets and show ------------------------------------------------------------------

#[test]
fn presets_lists_every_shipped_preset() {
    let s = Sandbox::new();
    let out = s.run(&["presets"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), shipped().len(), "{text}");
    for (line, name) in lines.iter().zip(shipped()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], name);
        assert_eq!(fields[1], "shipped");
        assert!(fields.len() > 2, "has a description: {line}");
    }
}

#[test]
fn presets_lists_broken_user_presets_with_their_error() {
    let s = Sandbox::new();
    s.write_user_preset("good", "description = \"my own\"\n");
    s.write_user_preset("broken", "[nrg\n");
    s.write_user_preset("wrong", "[nrg]\nkeep = 0\n");
    let out = s.run(&["presets"]);
    assert_success(&out);
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
            .to_string()
    };
    assert!(line("good").contains("user") && line("good").contains("my own"));
    let broken = line("broken");
    assert!(
        broken.contains("user") && broken.contains("error:"),
        "{broken}"
    );
    assert!(
        broken.contains("broken.toml") && broken.contains("invalid TOML"),
        "{broken}"
    );
    assert!(line("wrong").contains("nrg.keep = 0: must keep at least one state"));
    assert_eq!(text.lines().count(), shipped().len() + 3);
}

#[test]
fn show_prints_the_resolved_preset_as_toml() {
    let s = Sandbox::new();
    let out = s.run(&[
        "show",
        "mixed-valence",
        "--set",
        "model.U=0.2",
        "--derive",
        "U",
        "--plain",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["model"]["U"].as_float(), Some(0.2));
    assert_eq!(table["derive"].as_array().unwrap().len(), 1);
    assert_eq!(
        table["output"]["impurity_observables"].as_bool(),
        Some(false)
    );

    // What `show` prints is a preset: save it and show it again.
    s.write_user_preset("variant", &text);
    let again = s.run(&["show", "variant"]);
    assert_success(&again);
    assert_eq!(stdout(&again), text);
}

#[test]
fn show_defaults_to_the_default_preset() {
    let s = Sandbox::new();
    let out = s.run(&["show"]);
    assert_success(&out);
    assert!(stdout(&out).contains("Gamma = 0.005"));
}

#[test]
fn show_rejects_bad_input_like_run() {
    let s = Sandbox::new();
    let out = s.run(&["show", "--set", "nrg.keep=0"]);
    assert_bad_input(&out, &["--set nrg.keep=0: nrg.keep = 0"]);
}

#[test]
fn user_presets_shadow_shipped_ones() {
    let s = Sandbox::new();
    s.write_user_preset(
        "kondo-symmetric",
        "description = \"shadow\"\n[model]\nU = 0.3\n",
    );
    let out = s.run(&["show"]);
    assert_success(&out);
    assert!(stdout(&out).contains("description = \"shadow\""));
}

#[test]
fn explorer_needs_a_terminal_or_headless() {
    let s = Sandbox::new();
    // `output()` gives no terminal: exit 1 and a pointer to the alternatives
    for args in [&[][..], &["tui"][..]] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("the explorer needs a terminal"));
    }
    let out = s.run(&[
        "tui",
        "kondo-model",
        "--headless",
        "--size",
        "100x30",
        "--set",
        "nrg.T_min=1e-3",
        "--keys",
        "<wait>",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out).lines().count(), 30);
    assert!(stdout(&out).contains("done"));
}

// ---- runs ------------------------------------------------------------------------------

#[test]
fn jsonl_run_has_the_contract_fields() {
    // needs the solver
    let s = Sandbox::new();
    let out = s.run(&[&QUICK[..], &["--format", "jsonl"]].concat());
    assert_success(&out);
    let records = json_lines(&stdout(&out));
    assert!(records.len() >= 3);

    let header = &records[0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["preset"], "resonant-level");
    for key in ["V0", "hopping", "onsite"] {
        assert!(header["chain"].get(key).is_some(), "chain.{key}");
    }
    assert_eq!(header["nrg"]["T_min"], 1e-4);

    let shells = &records[1..records.len() - 1];
    for (i, shell) in shells.iter().enumerate() {
        assert_eq!(shell["type"], "shell");
        assert_eq!(shell["N"], i);
        for key in ["T", "kept", "states", "levels", "obs", "grad", "hess"] {
            assert!(shell.get(key).is_some(), "shell.{key}");
        }
        for level in shell["levels"].as_array().unwrap() {
            for key in ["E", "Q", "Sz", "deg", "dE"] {
                assert!(level.get(key).is_some(), "level.{key}");
            }
        }
        for key in [
            "F_imp", "S_imp", "C_imp", "Tchi_imp", "chi_loc", "n_d", "docc",
        ] {
            assert!(shell["obs"].get(key).is_some(), "obs.{key}");
        }
    }
    let done = records.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["status"], "complete");
    assert_eq!(done["shells"], shells.len());
}

#[test]
fn csv_has_one_row_per_shell() {
    // needs the solver
    let s = Sandbox::new();
    let jsonl = s.run(&[&QUICK[..], &["--derive", "eps_d,U"]].concat());
    assert_success(&jsonl);
    let shells = json_lines(&stdout(&jsonl)).len() - 2;

    let csv = s.run(&[&QUICK[..], &["--derive", "eps_d,U", "--format", "csv"]].concat());
    assert_success(&csv);
    let text = stdout(&csv);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), shells + 1, "header row + one row per shell");
    let columns: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(columns[..3], ["N", "T", "omega"]);
    for c in ["grad_eps_d", "grad_U", "hess_eps_d_U", "dn_d_deps_d"] {
        assert!(columns.contains(&c), "column {c}");
    }
    for row in &rows[1..] {
        assert_eq!(row.split(',').count(), columns.len());
    }
}

#[test]
fn derive_gives_gradient_and_hessian_keys() {
    // needs the solver
    let s = Sandbox::new();
    let out = s.run(&[&QUICK[..], &["--derive", "eps_d,U"]].concat());
    assert_success(&out);
    let records = json_lines(&stdout(&out));
    assert_eq!(records[0]["derive"], serde_json::json!(["eps_d", "U"]));
    for shell in &records[1..records.len() - 1] {
        assert_eq!(keys(&shell["grad"]), ["eps_d", "U"]);
        assert_eq!(keys(&shell["hess"]), ["eps_d,eps_d", "eps_d,U", "U,U"]);
    }
}

#[test]
fn identical_runs_give_identical_bytes() {
    // needs the solver
    let s = Sandbox::new();
    for format in ["jsonl", "csv"] {
        let args = [&QUICK[..], &["--derive", "eps_d,U", "--format", format]].concat();
        let a = s.run(&args);
        let b = s.run(&args);
        assert_success(&a);
        assert!(!a.stdout.is_empty());
        assert_eq!(a.stdout, b.stdout, "{format}");
    }
}

#[test]
fn out_writes_the_complete_file() {
    // needs the solver
    let s = Sandbox::new();
    s.write("out.jsonl", "stale\n");
    let out = s.run(&[&QUICK[..], &["--out", "out.jsonl"]].concat());
    assert_success(&out);
    assert_eq!(stdout(&out), "", "records go to the file only");
    let records = json_lines(&fs::read_to_string(s.work().join("out.jsonl")).unwrap());
    assert_eq!(records[0]["type"], "header");
    assert_eq!(records.last().unwrap()["type"], "done");
    assert_eq!(s.files(&s.work()), ["out.jsonl"], "no temporary file left");
}

#[test]
fn plain_runs_skip_the_impurity_observables() {
    // needs the solver
    let s = Sandbox::new();
    let out = s.run(&[&QUICK[..], &["--plain"]].concat());
    assert_success(&out);
    let records = json_lines(&stdout(&out));
    assert_eq!(records[0]["nrg"]["keep"], 400);
    assert!(records[1]["obs"]["n_d"].is_null());
}

#[cfg(unix)]
mod interrupt {
    //! Ctrl-C: the run stops after the current shell; with --out nothing is written.
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    /// Start a long run, send SIGINT once a few shells are done, return (exit code, stdout).
    fn interrupted(s: &Sandbox, extra: &[&str]) -> (Option<i32>, String) {
        let args = [
            &[
                "run",
                "--verbose",
                "--set",
                "nrg.keep=1000",
                "--set",
                "nrg.T_min=1e-14",
            ][..],
            extra,
        ]
        .concat();
        let mut child = s
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            text
        });
        let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
        for line in progress.by_ref() {
            if line.unwrap().starts_with("shell 4/") {
                break;
            }
        }
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let rest: Vec<String> = progress.map(Result::unwrap).collect();
        let status = child.wait().unwrap();
        assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");
        (status.code(), reader.join().unwrap())
    }

    #[test]
    fn ctrl_c_on_stdout_ends_with_a_cancelled_summary() {
        // needs the solver
        let s = Sandbox::new();
        let (code, text) = interrupted(&s, &[]);
        assert_eq!(code, Some(130));
        let records = json_lines(&text);
        assert_eq!(records[0]["type"], "header");
        let done = records.last().unwrap();
        assert_eq!(done["type"], "done");
        assert_eq!(done["status"], "cancelled");
        assert_eq!(done["shells"], records.len() - 2);
    }

    #[test]
    fn ctrl_c_with_out_leaves_no_file() {
        // needs the solver
        let s = Sandbox::new();
        let (code, text) = interrupted(&s, &["--out", "out.jsonl"]);
        assert_eq!(code, Some(130));
        assert_eq!(text, "");
        assert_eq!(s.files(&s.work()), Vec::<String>::new());
    }
}
