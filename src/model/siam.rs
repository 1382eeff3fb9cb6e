//! Single-impurity Anderson model:
//! H_imp = ε_d n_d + U n_d↑ n_d↓ − (h_imp + h_tot) S_z,d + V Σ_σ (d†_σ f_0σ + h.c.),
//! with V = sqrt(2Γ A/π) (Γ = πρV², ρ = 1/2, A = A_Λ for Wilson's discretization, else 1).
//! U = 0 is the resonant level model.

use super::{
    IMPURITY, ImpurityModel, LocalOp, LocalSpace, Multiplets, SITE0, SiteZero, Term, Variable,
};
use crate::params::ModelKind;
use crate::symmetry::Qn;
use nalgebra::DMatrix;
use num_dual::{Derivative, Dual2DVec64};

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
        let v = hybridization(gamma, 2.0 * site0.coupling_factor / PI);
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

    fn spin_flip_symmetric(&self) -> bool {
        self.h_imp == 0.0
    }

    /// The impurity orbital in (Q, S): |0⟩ (−1, 0), the doublet (0, ½) and |↑↓⟩ (1, 0), with
    /// ⟨(0,½)‖d†‖(−1,0)⟩ = 1 and ⟨(1,0)‖d†‖(0,½)⟩ = −√2 (the orbital added to the vacuum as a
    /// site, design note su2 §1.3–1.4).
    fn multiplets(&self, x: &[Dual2DVec64], site0: SiteZero) -> Option<Multiplets> {
        let [eps_d, u, gamma, _] = x else {
            unreachable!("SIAM has four variables")
        };
        let v = hybridization(gamma, 2.0 * site0.coupling_factor / PI);
        let one = |x: f64| DMatrix::from_element(1, 1, x);
        Some(Multiplets {
            blocks: vec![(Qn::new(-1, 0), 1), (Qn::new(0, 1), 1), (Qn::new(1, 0), 1)],
            terms: vec![
                (
                    eps_d.clone(),
                    LocalOp::Impurity(vec![vec![0.0], vec![1.0], vec![2.0]]),
                ),
                (
                    u.clone(),
                    LocalOp::Impurity(vec![vec![0.0], vec![0.0], vec![1.0]]),
                ),
                (
                    v,
                    LocalOp::Hopping(vec![(1, 0, one(1.0)), (2, 1, one(-2f64.sqrt()))]),
                ),
            ],
        })
    }

    fn v0(&self, site0: SiteZero) -> Option<f64> {
        Some((2.0 * self.gamma * site0.coupling_factor / PI).sqrt())
    }
}

/// V = √(cΓ) with its first and second derivatives, by the chain rule written out so that the
/// derivatives of √ never multiply a zero: at tiny Γ, d²V/dΓ² = −c²/(4V³) overflows, and the
/// generic rule would turn the zero entries of every *other* direction into 0·∞ = NaN. At Γ = 0
/// the impurity is decoupled: V = 0 with no derivative parts (derivatives with respect to Γ
/// are refused there by validation).
fn hybridization(gamma: &Dual2DVec64, c: f64) -> Dual2DVec64 {
    if gamma.re <= 0.0 {
        return Dual2DVec64::from_re(0.0);
    }
    let v = (c * gamma.re).sqrt();
    let d1 = c / (2.0 * v);
    let d2 = -d1 * d1 / v;
    let v1 = gamma.v1.0.as_ref().map(|g| g.map(|x| d1 * x));
    let v2 = gamma.v1.0.as_ref().map(|g| {
        let n = g.ncols();
        let mut out = gamma
            .v2
            .0
            .as_ref()
            .map_or_else(|| nalgebra::DMatrix::zeros(n, n), |h| h.map(|x| d1 * x));
        for i in 0..n {
            for j in 0..n {
                let gg = g[i] * g[j];
                if gg != 0.0 {
                    out[(i, j)] += d2 * gg;
                }
            }
        }
        out
    });
    Dual2DVec64::new(v, Derivative::new(v1), Derivative::new(v2))
}
