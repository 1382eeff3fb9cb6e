//! Single-impurity Anderson model:
//! H_imp = ε_d n_d + U n_d↑ n_d↓ − (h_imp + h_tot) S_z,d + V Σ_σ (d†_σ f_0σ + h.c.),
//! with V = sqrt(2Γ A/π) (Γ = πρV², ρ = 1/2, A = A_Λ for Wilson's discretization, else 1).
//! U = 0 is the resonant level model.

use super::{IMPURITY, ImpurityModel, LocalSpace, SITE0, SiteZero, Term, Variable};
use crate::params::ModelKind;
use num_dual::{Dual2DVec64, DualNum};

use std::f64::consts::PI;

#[derive(Debug, Clone)]
pub struct Siam {
    pub u: f64,
    pub eps_d: f64,
    pub gamma: f64,
    /// Field on the impurity spin only (the total field arrives through [`SiteZero`]).
    pub h_imp: f64,
}

impl ImpurityModel for Siam {
    fn kind(&self) -> ModelKind {
        ModelKind::Siam
    }

    fn variables(&self) -> Vec<(Variable, f64)> {
        vec![
            (Variable::EpsD, self.eps_d),
            (Variable::U, self.u),
            (Variable::Gamma, self.gamma),
            (Variable::HImp, self.h_imp),
        ]
    }

    fn space(&self) -> LocalSpace {
        LocalSpace::full(2)
    }

    fn hamiltonian(&self, s: &LocalSpace, x: &[Dual2DVec64], site0: SiteZero) -> Vec<Term> {
        let [eps_d, u, gamma, h_imp] = x else {
            unreachable!("SIAM has four variables")
        };
        // V = √(2ΓA/π). √Γ has an infinite derivative at Γ = 0 (validation refuses derivatives
        // with respect to Γ there), and 0·∞ would poison every other direction: at Γ = 0 the
        // impurity is simply decoupled, V = 0 with no derivative parts.
        let v = if gamma.re > 0.0 {
            (gamma.clone() * (2.0 * site0.coupling_factor / PI)).sqrt()
        } else {
            Dual2DVec64::from_re(0.0)
        };
        let mut hyb = s.cdag(IMPURITY, 0) * s.c(SITE0, 0) + s.cdag(IMPURITY, 1) * s.c(SITE0, 1);
        hyb += hyb.transpose();
        vec![
            Term {
                coef: eps_d.clone(),
                op: s.occupation(IMPURITY),
            },
            Term {
                coef: u.clone(),
                op: s.number(IMPURITY, 0) * s.number(IMPURITY, 1),
            },
            Term { coef: v, op: hyb },
            Term {
                coef: -(h_imp.clone() + site0.h_total),
                op: s.sz(IMPURITY),
            },
        ]
    }

    fn v0(&self, site0: SiteZero) -> Option<f64> {
        Some((2.0 * self.gamma * site0.coupling_factor / PI).sqrt())
    }
}
