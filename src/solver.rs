//! The iteration driver: builds the chain and the model, then computes one shell per call.
//! (Under construction: the physics core lands in the next commits.)

use crate::params::{InvalidParam, RunConfig};
use crate::record::{Header, ShellRecord, Summary};

/// One NRG run, advanced shell by shell. Dropping it between shells cancels the run.
pub struct Run {
    header: Header,
}

impl Run {
    /// Validate the parameters and prepare the chain and the impurity model.
    pub fn new(config: &RunConfig) -> Result<Run, InvalidParam> {
        config.validate()?;
        unimplemented!("solver core under construction")
    }

    /// Resolved parameters and the Wilson chain (preset/description left for the caller).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Index of the last shell.
    pub fn n_max(&self) -> usize {
        self.header.n_max
    }

    /// Compute the next shell, or `None` when the run is complete.
    pub fn next_shell(&mut self) -> Option<ShellRecord> {
        None
    }

    /// The final record.
    pub fn summary(&self, _cancelled: bool) -> Summary {
        unimplemented!()
    }
}

impl Iterator for Run {
    type Item = ShellRecord;
    fn next(&mut self) -> Option<ShellRecord> {
        self.next_shell()
    }
}
