//! The NRG iteration: Hilbert space of a shell, one step on hyper-dual matrices, the cut at a
//! gap, degenerate clusters, and the driver that advances a run shell by shell.

pub mod cluster;
pub mod complete_basis;
pub mod jet;
pub mod linalg;
pub mod parallel;
pub mod recoupling;
pub mod shell;
pub mod solver;
pub mod step;
pub mod su2;
pub mod symmetry;
pub mod truncation;
pub mod vector;
