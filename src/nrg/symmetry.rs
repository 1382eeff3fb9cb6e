//! Conserved quantum numbers and the fermionic bookkeeping of adding a chain site.
//!
//! Every Hamiltonian here conserves the charge Q = Σ_orbitals (n_i − 1) (zero at half filling)
//! and the spin projection S_z, so all matrices are block-diagonal in (Q, S_z) for every
//! parameter value, and so are all their derivatives. Without a field they also conserve the
//! total spin S: then blocks can be (Q, S) multiplets instead ([`Symmetry::QS`], design note
//! `su2-derivatives.md`), each basis vector standing for the 2S+1 states of a multiplet.
//!
//! Fermion ordering (Jordan–Wigner): orbitals in the order impurity, site 0, site 1, …, and ↑
//! before ↓ inside an orbital. A newly added site is the last orbital, so its creation operator
//! acting on |r⟩⊗|s⟩ picks up the sign (−1)^(electrons in r).

/// Which conserved quantities label the blocks of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Symmetry {
    /// (Q, S_z): one basis vector per state. Needed whenever a field breaks SU(2).
    QSz,
    /// (Q, S): one basis vector per multiplet, matrices are reduced matrices (Wigner–Eckart).
    QS,
}

/// How the states of one basis vector of a block couple to a field on the total spin.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Zeeman {
    /// One state with this S_z.
    Projection(f64),
    /// The 2S+1 states of a multiplet of spin S (the value is 2S).
    Multiplet(i32),
}

impl Symmetry {
    /// The name used by `nrg.symmetry` and the header.
    pub fn name(self) -> &'static str {
        match self {
            Symmetry::QSz => "QSZ",
            Symmetry::QS => "QS",
        }
    }

    /// States per basis vector of block `qn`: 1 in (Q, S_z), d_j = 2S+1 in (Q, S). Every trace,
    /// mean and state count over blocks carries this weight.
    pub fn degeneracy(self, qn: Qn) -> usize {
        match self {
            Symmetry::QSz => 1,
            Symmetry::QS => (qn.sz2 + 1) as usize,
        }
    }

    /// How block `qn` couples to a field on the total spin.
    pub fn zeeman(self, qn: Qn) -> Zeeman {
        match self {
            Symmetry::QSz => Zeeman::Projection(qn.sz()),
            Symmetry::QS => Zeeman::Multiplet(qn.sz2),
        }
    }
}

/// Quantum numbers of a symmetry block.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Qn {
    /// Charge relative to half filling.
    pub q: i32,
    /// Twice the spin projection (an integer); in (Q, S) blocks twice the total spin S.
    pub sz2: i32,
}

impl Qn {
    pub fn new(q: i32, sz2: i32) -> Qn {
        Qn { q, sz2 }
    }

    /// S_z as a number.
    pub fn sz(self) -> f64 {
        0.5 * self.sz2 as f64
    }

    /// Quantum numbers after adding `other`.
    pub fn plus(self, other: Qn) -> Qn {
        Qn::new(self.q + other.q, self.sz2 + other.sz2)
    }

    pub fn minus(self, other: Qn) -> Qn {
        Qn::new(self.q - other.q, self.sz2 - other.sz2)
    }
}

/// Spin index: 0 = ↑, 1 = ↓.
pub const SPINS: [usize; 2] = [0, 1];

/// Quantum numbers carried by c†_σ.
pub fn creation_qn(sigma: usize) -> Qn {
    Qn::new(1, if sigma == 0 { 1 } else { -1 })
}

/// The four states of one chain site: |0⟩, |↑⟩ = c†↑|0⟩, |↓⟩ = c†↓|0⟩, |↑↓⟩ = c†↑c†↓|0⟩.
pub const SITE_STATES: usize = 4;

/// Quantum numbers of site state `s`.
pub fn site_qn(s: usize) -> Qn {
    match s {
        0 => Qn::new(-1, 0),
        1 => Qn::new(0, 1),
        2 => Qn::new(0, -1),
        3 => Qn::new(1, 0),
        _ => unreachable!("a site has four states"),
    }
}

/// Number of electrons in site state `s`.
pub fn site_electrons(s: usize) -> usize {
    [0, 1, 1, 2][s]
}

/// Non-zero matrix elements ⟨s|c†_σ|s′⟩ of one site, as (s, s′, sign).
/// c†↓|↑⟩ = c†↓c†↑|0⟩ = −|↑↓⟩ gives the only minus sign.
pub fn site_creation(sigma: usize) -> [(usize, usize, f64); 2] {
    if sigma == 0 {
        [(1, 0, 1.0), (3, 2, 1.0)]
    } else {
        [(2, 0, 1.0), (3, 1, -1.0)]
    }
}

/// (−1)^(number of electrons) of a block with charge `q` on `orbitals` orbitals.
pub fn fermion_sign(q: i32, orbitals: usize) -> f64 {
    if (q + orbitals as i32).rem_euclid(2) == 0 {
        1.0
    } else {
        -1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_raises_quantum_numbers() {
        for sigma in SPINS {
            for (s, sp, _) in site_creation(sigma) {
                assert_eq!(site_qn(s), site_qn(sp).plus(creation_qn(sigma)));
                assert_eq!(site_electrons(s), site_electrons(sp) + 1);
            }
        }
    }

    #[test]
    fn site_operators_anticommute() {
        // {c†↑, c†↓} = 0 on the four-dimensional site space
        let mat = |sigma| {
            let mut m = [[0.0; 4]; 4];
            for (s, sp, v) in site_creation(sigma) {
                m[s][sp] = v;
            }
            m
        };
        let (a, b) = (mat(0), mat(1));
        for i in 0..4 {
            for j in 0..4 {
                let ab: f64 = (0..4).map(|k| a[i][k] * b[k][j] + b[i][k] * a[k][j]).sum();
                assert_eq!(ab, 0.0);
            }
        }
    }
}
