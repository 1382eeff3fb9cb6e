//! Spin-1/2 Kondo model: H_imp = J_phys S·s_0 + K_phys (n_0 − 1) − (h_imp + h_tot) S_z,
//! with the dimensionless couplings ρJ, ρK of the parameters (ρ = 1/2D = 1/2):
//! J_phys = 2·ρJ·A, K_phys = 2·ρK·A (A = A_Λ for Wilson's discretization, else 1; the same
//! correction as V² in the Anderson model, so that ρJ = 8Γ/(πU) maps the two models onto each
//! other). The impurity is an orbital restricted to single occupancy.

use super::{
    IMPURITY, ImpurityModel, LocalOp, LocalSpace, Multiplets, SITE0, SiteZero, Term, Variable,
};
use crate::params::ModelKind;
use crate::symmetry::Qn;
use nalgebra::DMatrix;
use num_dual::Dual2DVec64;

#[derive(Debug, Clone)]
pub struct Kondo {
    /// ρJ.
    pub j: f64,
    /// ρK.
    pub k: f64,
    /// Field on the impurity spin only.
    pub h_imp: f64,
}

impl ImpurityModel for Kondo {
    fn kind(&self) -> ModelKind {
        ModelKind::Kondo
    }

    fn variables(&self) -> Vec<(Variable, f64)> {
        vec![
            (Variable::J, self.j),
            (Variable::K, self.k),
            (Variable::HImp, self.h_imp),
        ]
    }

    fn space(&self) -> LocalSpace {
        LocalSpace::restricted(2, |occ| occ[IMPURITY] == 1)
    }

    fn hamiltonian(&self, s: &LocalSpace, x: &[Dual2DVec64], site0: SiteZero) -> Vec<Term> {
        let [j, k, h_imp] = x else {
            unreachable!("the Kondo model has three variables")
        };
        let scale = 2.0 * site0.coupling_factor;
        let n0_minus_1 = s.occupation(SITE0) - DMatrix::identity(s.dim(), s.dim());
        vec![
            Term {
                coef: j.clone() * scale,
                op: s.spin_dot(IMPURITY, SITE0),
            },
            Term {
                coef: k.clone() * scale,
                op: n0_minus_1,
            },
            Term {
                coef: -(h_imp.clone() + site0.h_total),
                op: s.sz(IMPURITY),
            },
        ]
    }

    fn spin_flip_symmetric(&self) -> bool {
        self.h_imp == 0.0
    }

    /// The impurity is one doublet (0, ½) (its orbital singly occupied).
    fn multiplets(&self, x: &[Dual2DVec64], site0: SiteZero) -> Option<Multiplets> {
        let [j, k, _] = x else {
            unreachable!("the Kondo model has three variables")
        };
        let scale = 2.0 * site0.coupling_factor;
        Some(Multiplets {
            blocks: vec![(Qn::new(0, 1), 1)],
            terms: vec![
                (j.clone() * scale, LocalOp::Exchange),
                (k.clone() * scale, LocalOp::SiteCharge),
            ],
        })
    }

    fn v0(&self, _site0: SiteZero) -> Option<f64> {
        None
    }
}
