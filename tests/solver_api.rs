//! The incremental solver API that every front end uses.

mod common;

use dnrg::solver::Run;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn shells_arrive_one_by_one_and_the_run_ends() {
    let c = common::siam(0.1, -0.05, 0.01, 3.0, 100, 1e-6);
    let mut run = Run::new(&c).unwrap();
    let n_max = run.n_max();
    for n in 0..=n_max {
        assert_eq!(run.next_shell().expect("a shell").n, n);
    }
    assert!(run.next_shell().is_none());
    assert_eq!(run.summary(false).shells, n_max + 1);
}

#[test]
fn a_cancel_flag_stops_the_run_inside_a_shell() {
    // a heavy run: 1500 kept states with a Hessian take a good fraction of a second per shell
    let mut c = common::siam(0.1, -0.05, 0.01, 2.0, 1500, 1e-10);
    c.derive = vec![dnrg::params::Param::EpsD, dnrg::params::Param::U];
    let flag = Arc::new(AtomicBool::new(false));
    let mut run = Run::new(&c).unwrap().with_cancel_flag(flag.clone());
    for _ in 0..7 {
        run.next_shell().unwrap();
    }
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        })
    };
    let mut shells = 0;
    while run.next_shell().is_some() {
        shells += 1;
    }
    setter.join().unwrap();
    assert!(run.is_cancelled());
    assert!(shells < 3, "kept going for {shells} shells");
    assert!(run.next_shell().is_none(), "a cancelled run stays finished");
    assert_eq!(run.summary(true).status, "cancelled");
}

#[test]
fn a_decoupled_impurity_is_a_free_atom() {
    // Γ = 0 is allowed: the impurity decouples. √Γ has an infinite derivative there, which must
    // not leak NaN into the other directions. At T ≪ U/2 the free atom is a bare moment:
    // S = ln 2, n_d = 1, no double occupancy; with the field derivative its Curie law Tχ = 1/4.
    let mut c = common::siam(0.1, -0.05, 0.0, 3.0, 300, 1e-5);
    c.nrg.beta_bar = 1.2;
    c.derive = vec![
        dnrg::params::Param::EpsD,
        dnrg::params::Param::U,
        dnrg::params::Param::H,
    ];
    let records = common::run(&c);
    for r in &records {
        let all = r.obs.entries().into_iter().filter_map(|(_, v)| v);
        let derivatives = r.grad.values().chain(r.hess.values());
        assert!(
            all.chain(derivatives.copied()).all(f64::is_finite),
            "N = {}",
            r.n
        );
    }
    let last = records.last().unwrap();
    // The empty and doubly occupied states are out of reach (e^(−U/2T) = e^(−5000)), so the
    // rest is truncation, made worse by the free spin doubling every chain level (measured
    // here 1.3e-6 in S; 8e-4 with 400 states at Λ = 2.5, β̄ = 1), asserted at 1e-4
    assert!((last.obs.s_imp - std::f64::consts::LN_2).abs() < 1e-4);
    assert!((last.obs.tchi_imp - 0.25).abs() < 1e-4);
    assert!((last.obs.n_d.unwrap() - 1.0).abs() < 1e-12);
    assert!(last.obs.docc.unwrap().abs() < 1e-12);
}
