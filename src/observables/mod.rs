//! What is read off each shell: the free energy and its derivatives (`thermo`), the bare chain
//! subtracted for impurity contributions (`bare`, `free_chain`), the observables (`readout`),
//! the levels of the flow diagram (`levels`), the run's own diagnosis (`diagnostics`), and the
//! impurity spectral function, which needs every shell at once (`spectral`), and the average
//! of the thermodynamics over twisted chains (`z_average`).

pub mod bare;
pub mod broadening;
pub mod diagnostics;
pub mod fdm;
pub mod frames;
pub mod free_chain;
pub mod levels;
pub mod poles;
pub mod readout;
pub mod spectral;
pub mod spill;
pub mod thermo;
pub mod z_average;
