//! A run is a deterministic function of its parameters, and derivatives never feed back into
//! values: the real part of a dual run is a plain run, bit for bit.

mod common;

use dnrg::params::{Param, SymmetryChoice};
use dnrg::record::ShellRecord;

fn asymmetric() -> dnrg::params::RunConfig {
    common::siam(0.08, -0.02, 0.01, 2.5, 200, 1e-7)
}

#[test]
fn real_part_of_a_dual_run_is_the_plain_run() {
    let plain = common::run(&common::plain(asymmetric()));
    let dual = common::run(&common::with_derive(
        asymmetric(),
        &[Param::EpsD, Param::U, Param::Gamma, Param::H],
    ));
    assert_eq!(plain.len(), dual.len());
    for (p, d) in plain.iter().zip(&dual) {
        assert_eq!((p.kept, p.states), (d.kept, d.states), "N = {}", p.n);
        // exact equality of f64 values, not a tolerance
        assert_eq!(p.gap_cut, d.gap_cut);
        assert_eq!(p.e_cut, d.e_cut);
        let (po, dobs) = (&p.obs, &d.obs);
        assert_eq!(
            (po.f_imp, po.s_imp, po.c_imp, po.tchi_imp),
            (dobs.f_imp, dobs.s_imp, dobs.c_imp, dobs.tchi_imp),
            "N = {}",
            p.n
        );
        let energies = |r: &ShellRecord| {
            r.levels
                .iter()
                .map(|l| (l.e, l.q, l.sz, l.deg))
                .collect::<Vec<_>>()
        };
        assert_eq!(energies(p), energies(d), "N = {}", p.n);
    }
}

#[test]
fn two_runs_give_identical_records() {
    let c = common::with_derive(asymmetric(), &[Param::EpsD, Param::Gamma]);
    let a = serde_json::to_string(&common::run(&c)).unwrap();
    let b = serde_json::to_string(&common::run(&c)).unwrap();
    assert!(a == b, "records differ between two identical runs");
}

#[test]
fn two_runs_in_multiplet_blocks_give_identical_records() {
    // (Q, S) blocks with χ_loc through the vector sector: its sums over block pairs once ran in a
    // hash map's (per-instance random) order and differed in the last bit between runs
    let mut c = asymmetric();
    c.nrg.symmetry = SymmetryChoice::Qs;
    assert!(c.output.impurity_observables, "χ_loc is computed");
    let a = serde_json::to_string(&common::run(&c)).unwrap();
    let b = serde_json::to_string(&common::run(&c)).unwrap();
    assert!(a == b, "records differ between two identical (Q, S) runs");
}
