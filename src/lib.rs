//! dnrg — differentiable numerical renormalization group for quantum impurity models.
//!
//! Data flows one way: [`params::RunConfig`] → [`chain`] + [`model`] → [`solver::Run`] (one
//! NRG step after another) → [`record::ShellRecord`]s → writers or the explorer.
//!
//! The folders are the parts of that flow:
//! - [`chain`] and [`model`]: what is solved (the Wilson chain; SIAM, Kondo behind one trait);
//! - [`nrg`]: the iteration itself (shells, one step on hyper-dual matrices, the cut, clusters);
//! - [`observables`]: what is read off each shell (thermodynamics, the bare chain subtracted,
//!   levels, diagnostics);
//! - [`io`]: parameters, presets, records and the files they travel in;
//! - [`workflow`] and [`plot`]: sweeps, merges, Slurm, fits and figures built on runs.
//!
//! The physics has no dependency on any front end (`src/cli`, `src/tui` belong to the binary).

// Numerical kernels index matrices by (row, column); iterator rewrites of those loops are
// harder to check against the formulas they implement.
#![allow(clippy::needless_range_loop)]

pub mod chain;
pub mod io;
pub mod model;
pub mod nrg;
pub mod observables;
pub mod plot;
pub mod workflow;

// The flat module paths are the public API (`dnrg::solver::Run`, `dnrg::params::RunConfig`, …)
// and stay valid whatever folder a module lives in.
pub use io::{estimate, files, output, params, preset, record, text};
pub use nrg::{
    cluster, complete_basis, jet, linalg, parallel, recoupling, shell, solver, step, su2, symmetry,
    truncation, vector,
};
pub use observables::{
    bare, broadening, diagnostics, fdm, frames, free_chain, levels, poles, readout, spectral,
    spill, thermo, z_average,
};
