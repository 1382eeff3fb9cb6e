//! dnrg — differentiable numerical renormalization group for quantum impurity models.
//!
//! Data flows one way: [`params::RunConfig`] → [`chain`] + [`model`] → [`solver::Run`] (one
//! NRG step after another) → [`record::ShellRecord`]s → writers or the explorer.
//! The physics modules have no dependency on any front end; [`preset`] and [`output`] are the
//! file formats shared by the CLI and the explorer.

// Numerical kernels index matrices by (row, column); iterator rewrites of those loops are
// harder to check against the formulas they implement.
#![allow(clippy::needless_range_loop)]

pub mod bare;
pub mod chain;
pub mod cluster;
pub mod diagnostics;
pub mod estimate;
pub mod files;
pub mod free_chain;
pub mod jet;
pub mod levels;
pub mod linalg;
pub mod model;
pub mod output;
pub mod parallel;
pub mod params;
pub mod plot;
pub mod preset;
pub mod readout;
pub mod record;
pub mod shell;
pub mod solver;
pub mod step;
pub mod symmetry;
pub mod text;
pub mod thermo;
pub mod truncation;
pub mod workflow;
