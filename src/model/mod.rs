//! Impurity models behind one small trait.
//!
//! A model describes the impurity and its coupling to chain site 0: the local Fock space and
//! the Hamiltonian H_0 = Σ_t c_t(x) O_t as a sum of constant operators O_t with coefficients
//! that depend on the model's variables x. Coefficients are num-dual numbers, so the solver
//! gets ∂H_0/∂x_i and ∂²H_0/∂x_i∂x_j exactly without any model writing a derivative.
//!
//! What the solver adds itself (it is the same for every model): the chain, the on-site energy
//! of site 0 and the total field on the chain sites.

mod fock;
mod kondo;
mod siam;

pub use fock::{IMPURITY, LocalSpace, SITE0};
pub use kondo::Kondo;
pub use siam::Siam;

use crate::params::{FieldKind, ModelKind, ModelParams};
use crate::symmetry::Qn;
use nalgebra::DMatrix;
use num_dual::Dual2DVec64;

/// A parameter the Hamiltonian matrices depend on, i.e. a direction for matrix-level
/// derivatives. (The field on the *total* spin is not one: it commutes with H and is handled
/// as an explicit scalar dependence of the traces.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variable {
    EpsD,
    U,
    Gamma,
    J,
    K,
    /// Field on the impurity spin only (the model's `h` when `field = "impurity"`, and the
    /// direction of χ_loc always).
    HImp,
}

/// One term c(x)·O of the local Hamiltonian.
pub struct Term {
    pub coef: Dual2DVec64,
    pub op: DMatrix<f64>,
}

/// The impurity alone in (Q, S) multiplet blocks and its coupling to chain site 0, for the
/// SU(2) iteration (design note `su2-derivatives.md` §1.4). The solver builds shell 0 from it as
/// it adds any site (old system = the impurity, which counts as one orbital).
pub struct Multiplets {
    /// (Q, 2S) and the number of multiplets of every impurity block.
    pub blocks: Vec<(Qn, usize)>,
    /// H_0 = Σ coef·operator (the solver adds the chain's own on-site energy of site 0).
    pub terms: Vec<(Dual2DVec64, LocalOp)>,
}

/// A scalar (spin-rotation invariant) operator of impurity + site 0, in the product multiplet
/// basis of [`Multiplets`].
pub enum LocalOp {
    /// Diagonal on the impurity's multiplets: one value per multiplet of every block.
    Impurity(Vec<Vec<f64>>),
    /// Σ_σ (d†_σ f_0σ + h.c.) with the reduced matrices ⟨j‖d†‖j′⟩ given as (j, j′, matrix).
    Hopping(Vec<(usize, usize, DMatrix<f64>)>),
    /// S_imp·s_0, for an impurity that is one spin (the spin of its block).
    Exchange,
    /// n_0 − 1 of site 0.
    SiteCharge,
}

/// What the chain tells the model about site 0.
#[derive(Debug, Clone, Copy)]
pub struct SiteZero {
    /// Multiplies every coupling to site 0 (A_Λ for Wilson's discretization).
    pub coupling_factor: f64,
    /// Field on the total spin; the model applies it to the impurity spin.
    pub h_total: f64,
}

/// An impurity model: local space, variables, and the impurity + site-0 Hamiltonian.
pub trait ImpurityModel: Send + Sync {
    fn kind(&self) -> ModelKind;

    /// Variables of this model with their values, in a fixed order.
    fn variables(&self) -> Vec<(Variable, f64)>;

    /// Fock space of the impurity and chain site 0 (orbitals [`IMPURITY`], [`SITE0`]).
    fn space(&self) -> LocalSpace;

    /// Impurity Hamiltonian plus its coupling to site 0. `x` holds the variables in the order of
    /// [`ImpurityModel::variables`], already seeded for differentiation.
    fn hamiltonian(&self, space: &LocalSpace, x: &[Dual2DVec64], site0: SiteZero) -> Vec<Term>;

    /// Amplitude V0 of the impurity–site-0 hopping, for the header (None if not a hopping).
    fn v0(&self, site0: SiteZero) -> Option<f64>;

    /// Whether the Hamiltonian (without the solver's total field) is invariant under the spin
    /// flip ↑ ↔ ↓ at the model's parameter values: then ±S_z blocks have identical spectra and
    /// every derivative odd under the flip vanishes. True for SIAM and Kondo without a field.
    fn spin_flip_symmetric(&self) -> bool;

    /// The model in (Q, S) multiplets at zero field, or `None` if it is not SU(2)-invariant.
    /// `x` as in [`ImpurityModel::hamiltonian`]; any field in it is ignored (a (Q, S) run has
    /// none, see `RunConfig::validate`).
    fn multiplets(&self, x: &[Dual2DVec64], site0: SiteZero) -> Option<Multiplets>;
}

impl Variable {
    /// Whether ∂H/∂(this variable) changes sign under the spin flip (a field does).
    pub fn spin_flip_odd(self) -> bool {
        self == Variable::HImp
    }
}

/// The model a parameter set describes.
pub fn build(p: &ModelParams) -> Box<dyn ImpurityModel> {
    let h_imp = match p.field {
        FieldKind::Impurity => p.h,
        FieldKind::Total => 0.0,
    };
    match p.kind {
        ModelKind::Siam => Box::new(Siam {
            u: p.u,
            eps_d: p.eps_d,
            gamma: p.gamma,
            h_imp,
        }),
        ModelKind::Kondo => Box::new(Kondo {
            j: p.j,
            k: p.k,
            h_imp,
        }),
    }
}

/// Index of a variable in the model's list.
pub fn variable_index(model: &dyn ImpurityModel, v: Variable) -> Option<usize> {
    model.variables().iter().position(|(w, _)| *w == v)
}
