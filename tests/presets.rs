//! Presets at the library level: parsing, overrides, error messages, listing and saving.
//! Nothing here runs the solver.

use dnrg::params::{Discretization, FieldKind, ModelKind, Param, RunConfig};
use dnrg::preset::{self, LoadedPreset, Origin, Override, PresetError, PresetSource, PresetStore};
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A store with an empty config dir of its own, so the user's real presets never leak in.
fn store() -> (TempDir, PresetStore) {
    let dir = TempDir::new().unwrap();
    let store = PresetStore::with_config_dir(dir.path());
    (dir, store)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn sets(args: &[&str]) -> Vec<Override> {
    args.iter().map(|a| Override::set(a).unwrap()).collect()
}

/// Load TOML text from a file in a fresh temp dir.
fn load_text(text: &str, overrides: &[Override]) -> Result<LoadedPreset, PresetError> {
    let (dir, store) = store();
    let path = write(dir.path(), "p.toml", text);
    store.load(path.to_str().unwrap(), overrides)
}

fn load_err(text: &str, overrides: &[Override]) -> String {
    load_text(text, overrides).unwrap_err().to_string()
}

fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "message {message:?} should mention {needle:?}"
        );
    }
}

const SHIPPED: [&str; 6] = [
    "kondo-symmetric",
    "mixed-valence",
    "resonant-level",
    "strong-field",
    "kondo-model",
    "zitko-pruschke",
];

// ---- shipped presets -------------------------------------------------------------------

#[test]
fn every_shipped_preset_loads_and_validates() {
    let (_dir, store) = store();
    assert_eq!(preset::shipped_names().collect::<Vec<_>>(), SHIPPED);
    for name in SHIPPED {
        let p = store
            .load(name, &[])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        p.config.validate().unwrap();
        assert_eq!(p.name, name);
        assert!(!p.description.is_empty(), "{name} has a description");
        assert!(
            !p.description.contains('\n'),
            "{name}: one-line description"
        );
        assert!(p.config.nrg.keep <= 400, "{name}: keep ≤ 400");
    }
}

#[test]
fn default_preset_is_the_kondo_symmetric_one() {
    let (_dir, store) = store();
    assert_eq!(preset::default_preset_name(), "kondo-symmetric");
    let c = store.load("kondo-symmetric", &[]).unwrap().config;
    assert_eq!(c.model.kind, ModelKind::Siam);
    assert_eq!(
        (c.model.u, c.model.gamma, c.model.eps_d),
        (0.1, 0.005, -0.05)
    );
    assert_eq!(c.nrg.lambda, 2.5);
    assert_eq!(c.nrg.discretization, Discretization::Wilson);
    assert_eq!((c.nrg.keep, c.nrg.beta_bar, c.nrg.t_min), (400, 1.0, 1e-9));
}

#[test]
fn shipped_presets_have_the_advertised_physics() {
    let (_dir, store) = store();
    let load = |name| store.load(name, &[]).unwrap().config;

    let mv = load("mixed-valence");
    assert_ne!(mv.model.eps_d, -mv.model.u / 2.0, "asymmetric");
    assert_eq!(mv.derive, [Param::EpsD, Param::Gamma]);

    let rl = load("resonant-level");
    assert_eq!(
        (rl.model.u, rl.model.eps_d, rl.model.gamma),
        (0.0, 0.0, 0.01)
    );

    let sf = load("strong-field");
    assert_eq!(sf.model.field, FieldKind::Impurity);
    assert!(sf.model.h >= 1e-3);

    let km = load("kondo-model");
    assert_eq!(km.model.kind, ModelKind::Kondo);
    assert_eq!((km.model.j, km.model.k), (0.2, 0.0));

    let zp = load("zitko-pruschke");
    let ks = load("kondo-symmetric");
    assert_eq!(zp.model, ks.model);
    assert_eq!(zp.nrg.discretization, Discretization::ZitkoPruschke);
    assert_eq!((zp.nrg.z, zp.nrg.lambda), (0.5, 2.5));
}

#[test]
fn listing_has_every_shipped_preset_in_order() {
    let (_dir, store) = store();
    let list = store.list();
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, SHIPPED);
    for p in &list {
        assert_eq!(p.source, PresetSource::Shipped);
        assert_eq!(p.error, None);
        assert!(!p.description.is_empty());
    }
}

// ---- file format -----------------------------------------------------------------------

#[test]
fn missing_fields_take_the_defaults() {
    let p = load_text("", &[]).unwrap();
    assert_eq!(p.config, RunConfig::default());
    assert_eq!(p.description, "");
    let p = load_text("[model]\n[nrg]\n[output]\n", &[]).unwrap();
    assert_eq!(p.config, RunConfig::default());
}

#[test]
fn eps_d_defaults_to_the_symmetric_point_when_only_u_is_given() {
    let c = load_text("[model]\nU = 0.3\n", &[]).unwrap().config;
    assert_eq!(c.model.eps_d, -0.15);
    let c = load_text("[model]\nU = 0.3\neps_d = 0.01\n", &[])
        .unwrap()
        .config;
    assert_eq!(c.model.eps_d, 0.01);
    // Also when U comes from --set.
    let c = load_text("", &sets(&["model.U=0.4"])).unwrap().config;
    assert_eq!(c.model.eps_d, -0.2);
}

#[test]
fn integers_are_accepted_for_float_parameters() {
    let c = load_text("[model]\nU = 0\neps_d = 0\n[nrg]\nLambda = 3\nz = 1\n", &[])
        .unwrap()
        .config;
    assert_eq!(
        (c.model.u, c.model.eps_d, c.nrg.lambda, c.nrg.z),
        (0.0, 0.0, 3.0, 1.0)
    );
}

#[test]
fn keys_of_the_other_model_are_ignored() {
    let c = load_text(
        "[model]\nkind = \"kondo\"\nU = 0.5\nGamma = 0.1\nJ = 0.1\n",
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.model.kind, ModelKind::Kondo);
    assert_eq!(c.model.j, 0.1);
}

#[test]
fn a_full_preset_is_read_field_by_field() {
    let text = r#"
description = "everything"
derive = ["J", "h"]
[model]
kind = "kondo"
J = 0.15
K = 0.02
h = 1e-4
field = "impurity"
[nrg]
Lambda = 3.0
discretization = "campo-oliveira"
z = 0.25
keep = 123
e_cut = 8.0
beta_bar = 0.6
T_min = 1e-6
gap_window = 0.1
[output]
levels = 7
impurity_observables = false
"#;
    let p = load_text(text, &[]).unwrap();
    assert_eq!(p.description, "everything");
    let c = p.config;
    assert_eq!(c.derive, [Param::J, Param::H]);
    assert_eq!((c.model.j, c.model.k, c.model.h), (0.15, 0.02, 1e-4));
    assert_eq!(c.model.field, FieldKind::Impurity);
    assert_eq!(c.nrg.lambda, 3.0);
    assert_eq!(c.nrg.discretization, Discretization::CampoOliveira);
    assert_eq!((c.nrg.z, c.nrg.keep, c.nrg.e_cut), (0.25, 123, 8.0));
    assert_eq!(
        (c.nrg.beta_bar, c.nrg.t_min, c.nrg.gap_window),
        (0.6, 1e-6, 0.1)
    );
    assert_eq!((c.output.levels, c.output.impurity_observables), (7, false));
}

// ---- overrides -------------------------------------------------------------------------

#[test]
fn set_values_are_toml_when_they_parse_and_bare_strings_otherwise() {
    let c = load_text(
        "",
        &sets(&[
            "model.kind=kondo",
            "nrg.discretization=zitko-pruschke",
            "model.J=0.25",
            "nrg.keep=200",
            "nrg.T_min=1e-6",
            "output.impurity_observables=false",
            r#"derive=["J","K"]"#,
            r#"description="quoted""#,
            "model.field=\"impurity\"",
        ]),
    )
    .unwrap();
    assert_eq!(c.description, "quoted");
    let c = c.config;
    assert_eq!(c.model.kind, ModelKind::Kondo);
    assert_eq!(c.nrg.discretization, Discretization::ZitkoPruschke);
    assert_eq!((c.model.j, c.nrg.keep, c.nrg.t_min), (0.25, 200, 1e-6));
    assert!(!c.output.impurity_observables);
    assert_eq!(c.derive, [Param::J, Param::K]);
    assert_eq!(c.model.field, FieldKind::Impurity);
}

#[test]
fn overrides_apply_in_order_and_beat_the_file() {
    let c = load_text("[model]\nU = 0.2\n", &sets(&["model.U=0.3", "model.U=0.4"]))
        .unwrap()
        .config;
    assert_eq!(c.model.u, 0.4);
}

#[test]
fn derive_flag_replaces_or_clears_the_list() {
    let (_dir, store) = store();
    let mv = |o: Override| store.load("mixed-valence", &[o]).unwrap().config.derive;
    assert_eq!(mv(Override::derive("U, eps_d")), [Param::U, Param::EpsD]);
    assert_eq!(mv(Override::derive("none")), []);
    assert_eq!(mv(Override::derive("")), []);
    // A comma list also works through --set.
    assert_eq!(
        mv(Override::set("derive=h,U").unwrap()),
        [Param::H, Param::U]
    );
}

#[test]
fn flag_overrides_set_one_key() {
    let o = Override::flag("--plain", "output.impurity_observables", false);
    assert_eq!(o.key(), "output.impurity_observables");
    assert_eq!(o.origin(), &Origin::Flag("--plain".into()));
    let c = load_text("", &[o]).unwrap().config;
    assert!(!c.output.impurity_observables);
}

#[test]
fn malformed_set_arguments_are_rejected() {
    for arg in ["model.U", "=3", "model..U=3", ".U=1", "model. U=1"] {
        let e = Override::set(arg).unwrap_err().to_string();
        assert_mentions(&e, &["--set", arg]);
        assert!(e.contains("KEY=VALUE") || e.contains("dotted key"), "{e}");
    }
}

// ---- error messages --------------------------------------------------------------------

#[test]
fn malformed_toml_reports_file_line_and_column() {
    let (dir, store) = store();
    let path = write(
        dir.path(),
        "broken.toml",
        "[nrg]\nkeep = 300\nLambda = = 2\n",
    );
    let e = store.load(path.to_str().unwrap(), &[]).unwrap_err();
    assert!(matches!(e, PresetError::Syntax { .. }));
    let e = e.to_string();
    assert_mentions(
        &e,
        &[path.to_str().unwrap(), "invalid TOML at line 3, column 10"],
    );
}

#[test]
fn duplicate_keys_are_a_syntax_error() {
    let e = load_err("[nrg]\nkeep = 1\nkeep = 2\n", &[]);
    assert_mentions(&e, &["invalid TOML at line 3"]);
}

#[test]
fn unknown_keys_are_named_with_the_valid_ones() {
    let e = load_err("[nrg]\nlambda = 2.0\n", &[]);
    assert_mentions(
        &e,
        &[
            "unknown key 'nrg.lambda'",
            "did you mean 'Lambda'?",
            "valid keys in [nrg]: Lambda, discretization, z, keep",
        ],
    );
    let e = load_err("[solver]\nx = 1\n", &[]);
    assert_mentions(
        &e,
        &[
            "unknown key 'solver'",
            "description, derive, model, nrg, output",
        ],
    );
    let e = load_err("", &sets(&["output.colour=red"]));
    assert_mentions(
        &e,
        &[
            "--set output.colour=red",
            "unknown key 'output.colour'",
            "levels, impurity_observables",
        ],
    );
}

#[test]
fn wrong_types_name_the_key_and_both_types() {
    assert!(
        load_err("[nrg]\nkeep = \"abc\"\n", &[])
            .ends_with(": nrg.keep: expected a positive integer, found string")
    );
    assert_mentions(
        &load_err("", &sets(&["nrg.keep=abc"])),
        &["--set nrg.keep=abc: nrg.keep: expected a positive integer, found string"],
    );
    assert_mentions(
        &load_err("[nrg]\nkeep = 300.0\n", &[]),
        &["nrg.keep: expected a positive integer, found float", "300"],
    );
    assert_mentions(
        &load_err("[nrg]\nkeep = -3\n", &[]),
        &["nrg.keep: expected a positive integer, found integer -3"],
    );
    assert_mentions(
        &load_err("[model]\nU = \"big\"\n", &[]),
        &["model.U: expected a number, found string"],
    );
    assert_mentions(
        &load_err("[output]\nimpurity_observables = 1\n", &[]),
        &["output.impurity_observables: expected true or false, found integer 1"],
    );
    assert_mentions(&load_err("model = 3\n", &[]), &["model: expected a table"]);
    assert_mentions(
        &load_err("description = 3\n", &[]),
        &["description: expected a string"],
    );
    assert_mentions(
        &load_err("derive = \"eps_d\"\nderive2 = 1\n", &[]),
        &["unknown key 'derive2'"],
    );
    assert_mentions(
        &load_err("derive = 3\n", &[]),
        &["derive: expected an array"],
    );
    assert_mentions(
        &load_err("[model]\nU = 0.1\n", &sets(&["model.U.x=1"])),
        &["--set model.U.x=1: model.U: expected a table, found float"],
    );
    assert_mentions(
        &load_err("", &sets(&["model.U.x=1"])),
        &["--set model.U.x=1: model.U: expected a number, found table"],
    );
}

#[test]
fn unknown_choices_list_the_valid_ones() {
    assert_mentions(
        &load_err("[nrg]\ndiscretization = \"log\"\n", &[]),
        &[
            "nrg.discretization: unknown value 'log'",
            "wilson, campo-oliveira, zitko-pruschke",
        ],
    );
    assert_mentions(
        &load_err("", &sets(&["model.kind=hubbard"])),
        &[
            "--set model.kind=hubbard: model.kind: unknown value 'hubbard'",
            "siam, kondo",
        ],
    );
    assert_mentions(
        &load_err("[model]\nfield = \"local\"\n", &[]),
        &["model.field: unknown value 'local'", "total, impurity"],
    );
}

#[test]
fn out_of_range_values_name_origin_key_value_and_reason() {
    let (dir, store) = store();
    let path = write(dir.path(), "bad.toml", "[nrg]\nLambda = 0.5\n");
    let e = store.load(path.to_str().unwrap(), &[]).unwrap_err();
    assert!(matches!(e, PresetError::Invalid { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: nrg.Lambda = 0.5: must be greater than 1",
            path.display()
        )
    );

    // (flag, key, reason); how params.rs prints the value (1 or 1.0, 1e-9 or 0.000000001) is
    // its own business, so only the key and the reason are pinned here.
    let cases = [
        ("nrg.Lambda=1.0", "nrg.Lambda", "must be greater than 1"),
        ("nrg.Lambda=1", "nrg.Lambda", "must be greater than 1"),
        ("model.Gamma=-0.01", "model.Gamma", "must be ≥ 0"),
        ("nrg.keep=0", "nrg.keep", "must keep at least one state"),
        ("nrg.T_min=0", "nrg.T_min", "must be positive"),
        ("nrg.T_min=-1e-9", "nrg.T_min", "must be positive"),
        ("nrg.z=0", "nrg.z", "twist must lie in [0.01, 1]"),
        ("nrg.z=1.5", "nrg.z", "twist must lie in [0.01, 1]"),
        ("nrg.beta_bar=0", "nrg.beta_bar", "must lie in [0.01, 100]"),
        (
            "nrg.beta_bar=1e-300",
            "nrg.beta_bar",
            "must lie in [0.01, 100]",
        ),
        ("nrg.T_min=1e-309", "nrg.T_min", "must be at least 1e-100"),
        ("model.eps_d=-1e200", "model.eps_d", "must lie within ±1e4"),
        ("model.U=nan", "model.U", "must be a finite number"),
    ];
    for (arg, key, reason) in cases {
        let e = store
            .load("kondo-symmetric", &sets(&[arg]))
            .unwrap_err()
            .to_string();
        let prefix = format!("--set {arg}: {key} = ");
        assert!(e.starts_with(&prefix), "{e:?} should start with {prefix:?}");
        assert!(
            e.contains(&format!(": {reason}")),
            "{e:?} should give {reason:?}"
        );
    }
}

#[test]
fn range_errors_from_the_file_name_the_file_even_with_other_overrides() {
    let e = load_err("[nrg]\nkeep = 0\n", &sets(&["nrg.Lambda=3"]));
    assert!(
        e.contains("p.toml: nrg.keep = 0: must keep at least one state"),
        "{e}"
    );
}

#[test]
fn bad_derive_entries_name_the_flag_and_the_expected_parameters() {
    let (_dir, store) = store();
    let err = |o: Override| store.load("kondo-symmetric", &[o]).unwrap_err().to_string();
    assert_eq!(
        err(Override::derive("foo")),
        "--derive: unknown parameter 'foo' (expected one of eps_d, U, Gamma, h)"
    );
    assert_eq!(
        err(Override::derive("eps_d,J")),
        "--derive: 'J' is not a parameter of the siam model (expected one of eps_d, U, Gamma, h)"
    );
    assert_mentions(
        &err(Override::derive("U,U")),
        &["--derive: 'U' is listed twice"],
    );
    assert_mentions(&err(Override::derive("gamma")), &["did you mean 'Gamma'?"]);
    let e = store
        .load("kondo-model", &[Override::derive("eps_d")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--derive: 'eps_d' is not a parameter of the kondo model (expected one of J, K, h)"
    );
    // From a file or --set the key is spelled out.
    assert_mentions(
        &load_err("derive = [\"foo\"]\n", &[]),
        &["p.toml: derive: unknown parameter 'foo'"],
    );
    assert_mentions(
        &load_err("", &sets(&["derive=J"])),
        &["--set derive=J: derive: 'J' is not a parameter of the siam model"],
    );
}

#[test]
fn unknown_presets_list_what_exists() {
    let (dir, store) = store();
    let e = store.load("xyz", &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "unknown preset 'xyz' (shipped: {}; user: none)",
            SHIPPED.join(", ")
        )
    );
    write(dir.path(), "presets/mine.toml", "");
    let e = store.load("xyz", &[]).unwrap_err().to_string();
    assert!(e.ends_with("; user: mine)"), "{e}");
    // A missing file is a read error naming the path.
    let e = store.load("no/such.toml", &[]).unwrap_err().to_string();
    assert_mentions(&e, &["no/such.toml: cannot read"]);
}

// ---- user presets ----------------------------------------------------------------------

#[test]
fn user_presets_are_found_by_name_and_shadow_shipped_ones() {
    let (dir, store) = store();
    write(
        dir.path(),
        "presets/mine.toml",
        "description = \"mine\"\n[model]\nU = 0.2\n",
    );
    write(
        dir.path(),
        "presets/kondo-symmetric.toml",
        "description = \"shadow\"\n",
    );
    let mine = store.load("mine", &[]).unwrap();
    assert_eq!(
        (mine.name.as_str(), mine.description.as_str()),
        ("mine", "mine")
    );
    assert_eq!(mine.config.model.u, 0.2);
    assert_eq!(
        store.load("kondo-symmetric", &[]).unwrap().description,
        "shadow"
    );
    // Every listed user preset can be loaded by the listed name.
    write(
        dir.path(),
        "presets/my.run v2.toml",
        "description = \"odd name\"\n",
    );
    let user = store
        .list()
        .into_iter()
        .filter(|p| matches!(p.source, PresetSource::User(_)));
    for info in user {
        let loaded = store.load(&info.name, &[]).unwrap();
        assert_eq!(loaded.description, info.description);
    }
}

#[test]
fn broken_user_presets_are_listed_with_their_error() {
    let (dir, store) = store();
    write(dir.path(), "presets/good.toml", "description = \"fine\"\n");
    let broken = write(
        dir.path(),
        "presets/broken.toml",
        "description = \"half\"\n[nrg\n",
    );
    write(
        dir.path(),
        "presets/range.toml",
        "description = \"bad Λ\"\n[nrg]\nLambda = 1.0\n",
    );
    write(dir.path(), "presets/notes.txt", "not a preset");
    let list = store.list();
    let user: Vec<_> = list
        .iter()
        .filter(|p| matches!(p.source, PresetSource::User(_)))
        .collect();
    let names: Vec<&str> = user.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["broken", "good", "range"]);
    assert_eq!(user[0].source, PresetSource::User(broken.clone()));
    let error = user[0].error.as_deref().unwrap();
    assert_mentions(error, &[broken.to_str().unwrap(), "invalid TOML"]);
    assert_eq!(user[1].error, None);
    assert_eq!(user[1].description, "fine");
    assert_eq!(
        user[2].description, "bad Λ",
        "description survives a range error"
    );
    assert_mentions(
        user[2].error.as_deref().unwrap(),
        &["nrg.Lambda = 1", "must be greater than 1"],
    );
    assert_eq!(list.len(), SHIPPED.len() + 3);
}

#[test]
fn save_round_trips_through_load() {
    let (dir, store) = store();
    let mut config = store.load("mixed-valence", &[]).unwrap().config;
    config.model.u = 0.1 + 0.2; // needs all 17 digits
    config.model.h = 1e-300;
    config.nrg.t_min = 3.3e-9;
    config.nrg.keep = 123;
    config.output.impurity_observables = false;
    let description = "with \"quotes\", a \\ and ünïcödé";
    let path = store.save("my-run_2", description, &config, false).unwrap();
    assert_eq!(path, dir.path().join("presets").join("my-run_2.toml"));
    let loaded = store.load("my-run_2", &[]).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.description, description);

    let mut kondo = store.load("kondo-model", &[]).unwrap().config;
    kondo.derive = vec![Param::J, Param::H];
    kondo.model.u = 0.7; // ignored by the model but still round-trips
    store.save("k", "", &kondo, false).unwrap();
    assert_eq!(store.load("k", &[]).unwrap().config, kondo);
}

#[test]
fn every_shipped_preset_round_trips_through_to_toml() {
    let (dir, store) = store();
    for name in SHIPPED {
        let p = store.load(name, &[]).unwrap();
        let text = preset::to_toml(&p.config, &p.description);
        let path = write(dir.path(), &format!("{name}-copy.toml"), &text);
        let back = store.load(path.to_str().unwrap(), &[]).unwrap();
        assert_eq!(back.config, p.config, "{name}");
        assert_eq!(back.description, p.description, "{name}");
        assert!(
            text.contains("T_min = 1e-"),
            "small floats use an exponent:\n{text}"
        );
    }
}

#[test]
fn saving_twice_needs_overwrite_and_leaves_no_temp_files() {
    let (dir, store) = store();
    let config = RunConfig::default();
    store.save("twice", "first", &config, false).unwrap();
    let e = store.save("twice", "second", &config, false).unwrap_err();
    assert!(matches!(e, PresetError::Exists { .. }));
    assert_mentions(&e.to_string(), &["'twice' already exists", "overwrite"]);
    assert_eq!(store.load("twice", &[]).unwrap().description, "first");

    store.save("twice", "second", &config, true).unwrap();
    assert_eq!(store.load("twice", &[]).unwrap().description, "second");

    let files: Vec<String> = fs::read_dir(dir.path().join("presets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["twice.toml"], "no temporary files left behind");
}

#[test]
fn saving_does_not_shadow_a_shipped_preset_by_accident() {
    let (_dir, store) = store();
    let config = RunConfig::default();
    let e = store
        .save("kondo-symmetric", "", &config, false)
        .unwrap_err();
    assert_mentions(
        &e.to_string(),
        &["'kondo-symmetric' already exists", "shipped"],
    );
    store
        .save("kondo-symmetric", "mine now", &config, true)
        .unwrap();
    assert_eq!(
        store.load("kondo-symmetric", &[]).unwrap().description,
        "mine now"
    );
}

#[test]
fn saving_checks_the_name_and_the_values() {
    let (dir, store) = store();
    for name in ["", "a b", "../up", "x.toml", "ü"] {
        let e = store
            .save(name, "", &RunConfig::default(), false)
            .unwrap_err();
        assert!(matches!(e, PresetError::BadName { .. }), "{name:?}: {e}");
        assert_mentions(&e.to_string(), &["invalid preset name"]);
    }
    let mut bad = RunConfig::default();
    bad.nrg.lambda = 0.5;
    let e = store.save("bad", "", &bad, false).unwrap_err().to_string();
    assert_mentions(&e, &["nrg.Lambda = 0.5: must be greater than 1"]);
    assert!(!dir.path().join("presets/bad.toml").exists());
}

#[test]
fn origins_display_as_file_or_flag() {
    assert_eq!(Origin::File("a/b.toml".into()).to_string(), "a/b.toml");
    assert_eq!(
        Origin::Set("nrg.keep=0".into()).to_string(),
        "--set nrg.keep=0"
    );
    assert_eq!(Origin::Flag("--derive".into()).to_string(), "--derive");
    assert_eq!(
        Origin::Shipped("kondo-model".into()).to_string(),
        "shipped preset kondo-model"
    );
}
