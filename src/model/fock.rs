//! A small Fock space (impurity orbital plus chain site 0) in which models write their
//! Hamiltonians as products of creation and annihilation operators.
//!
//! Modes are ordered orbital by orbital, ↑ before ↓ (the Jordan–Wigner order of
//! [`crate::symmetry`]), so operators built here continue seamlessly with the chain sites.

use crate::symmetry::Qn;
use nalgebra::DMatrix;

/// Orbital index of the impurity.
pub const IMPURITY: usize = 0;
/// Orbital index of the first chain site.
pub const SITE0: usize = 1;

/// Fock space of `orbitals` spinful orbitals, possibly restricted to a subset of states
/// (the Kondo model keeps the impurity singly occupied).
#[derive(Debug, Clone)]
pub struct LocalSpace {
    orbitals: usize,
    /// Occupation bit patterns of the basis states (bit 2·orbital + σ).
    states: Vec<u32>,
}

impl LocalSpace {
    /// All 4^orbitals states.
    pub fn full(orbitals: usize) -> LocalSpace {
        LocalSpace {
            orbitals,
            states: (0..1u32 << (2 * orbitals)).collect(),
        }
    }

    /// Keep only the states for which `keep(occupation of each orbital)` holds.
    pub fn restricted(orbitals: usize, keep: impl Fn(&[u32]) -> bool) -> LocalSpace {
        let states = (0..1u32 << (2 * orbitals))
            .filter(|&bits| {
                let occ: Vec<u32> = (0..orbitals)
                    .map(|o| (bits >> (2 * o)) & 3)
                    .map(u32::count_ones)
                    .collect();
                keep(&occ)
            })
            .collect();
        LocalSpace { orbitals, states }
    }

    pub fn dim(&self) -> usize {
        self.states.len()
    }

    pub fn orbitals(&self) -> usize {
        self.orbitals
    }

    /// Quantum numbers of basis state `i`.
    pub fn qn(&self, i: usize) -> Qn {
        let bits = self.states[i];
        let mut q = -(self.orbitals as i32);
        let mut sz2 = 0;
        for o in 0..self.orbitals {
            let up = (bits >> (2 * o)) & 1;
            let dn = (bits >> (2 * o + 1)) & 1;
            q += (up + dn) as i32;
            sz2 += up as i32 - dn as i32;
        }
        Qn::new(q, sz2)
    }

    /// c†_{orbital,σ} as a matrix on this space (states that leave the space are dropped,
    /// which is the projection a restricted space asks for).
    pub fn cdag(&self, orbital: usize, sigma: usize) -> DMatrix<f64> {
        let mode = 2 * orbital + sigma;
        let n = self.dim();
        let mut m = DMatrix::zeros(n, n);
        for (j, &bits) in self.states.iter().enumerate() {
            if bits & (1 << mode) != 0 {
                continue;
            }
            let target = bits | (1 << mode);
            if let Some(i) = self.states.iter().position(|&b| b == target) {
                let before = (bits & ((1 << mode) - 1)).count_ones();
                m[(i, j)] = if before % 2 == 0 { 1.0 } else { -1.0 };
            }
        }
        m
    }

    /// c_{orbital,σ}.
    pub fn c(&self, orbital: usize, sigma: usize) -> DMatrix<f64> {
        self.cdag(orbital, sigma).transpose()
    }

    /// n_{orbital,σ}, computed directly so that it is exact on a restricted space.
    pub fn number(&self, orbital: usize, sigma: usize) -> DMatrix<f64> {
        let mode = 2 * orbital + sigma;
        DMatrix::from_diagonal(&nalgebra::DVector::from_iterator(
            self.dim(),
            self.states.iter().map(|&b| ((b >> mode) & 1) as f64),
        ))
    }

    /// Total occupation of an orbital.
    pub fn occupation(&self, orbital: usize) -> DMatrix<f64> {
        self.number(orbital, 0) + self.number(orbital, 1)
    }

    /// S_z of an orbital.
    pub fn sz(&self, orbital: usize) -> DMatrix<f64> {
        (self.number(orbital, 0) - self.number(orbital, 1)) * 0.5
    }

    /// S⁺ = c†↑ c↓ of an orbital, built on the full space then restricted (a spin flip never
    /// leaves a singly occupied orbital, so the restriction is exact).
    pub fn s_plus(&self, orbital: usize) -> DMatrix<f64> {
        let mode_up = 2 * orbital;
        let mode_dn = mode_up + 1;
        let n = self.dim();
        let mut m = DMatrix::zeros(n, n);
        for (j, &bits) in self.states.iter().enumerate() {
            if bits & (1 << mode_dn) == 0 || bits & (1 << mode_up) != 0 {
                continue;
            }
            let target = (bits & !(1 << mode_dn)) | (1 << mode_up);
            if let Some(i) = self.states.iter().position(|&b| b == target) {
                // c↓ passes the modes below ↓, c†↑ those below ↑; they differ by the ↑ mode,
                // which is empty, so the two signs cancel.
                m[(i, j)] = 1.0;
            }
        }
        m
    }

    /// S_a · S_b for two different orbitals: S_z S_z + ½(S⁺S⁻ + S⁻S⁺).
    pub fn spin_dot(&self, a: usize, b: usize) -> DMatrix<f64> {
        let (spa, spb) = (self.s_plus(a), self.s_plus(b));
        self.sz(a) * self.sz(b) + (&spa * spb.transpose() + spa.transpose() * &spb) * 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_anticommutation() {
        let space = LocalSpace::full(2);
        let id = DMatrix::<f64>::identity(16, 16);
        for m1 in 0..4 {
            for m2 in 0..4 {
                let (a, b) = (space.c(m1 / 2, m1 % 2), space.cdag(m2 / 2, m2 % 2));
                let anti = &a * &b + &b * &a;
                let expected = if m1 == m2 {
                    id.clone()
                } else {
                    DMatrix::zeros(16, 16)
                };
                assert_eq!(anti, expected, "modes {m1} {m2}");
                let cc = &a * space.c(m2 / 2, m2 % 2) + space.c(m2 / 2, m2 % 2) * &a;
                assert_eq!(cc, DMatrix::zeros(16, 16));
            }
        }
    }

    #[test]
    fn spin_operators_match_fermion_products() {
        let space = LocalSpace::full(2);
        for o in 0..2 {
            let sp = space.cdag(o, 0) * space.c(o, 1);
            assert_eq!(space.s_plus(o), sp);
        }
    }

    #[test]
    fn restricted_space_keeps_single_occupancy() {
        let space = LocalSpace::restricted(2, |occ| occ[IMPURITY] == 1);
        assert_eq!(space.dim(), 8);
        // S_imp · s_0 has eigenvalues 1/4 (triplet) and −3/4 (singlet) on the half-filled site
        let sd = space.spin_dot(IMPURITY, SITE0);
        let eig = sd.symmetric_eigenvalues();
        let mut v: Vec<f64> = eig.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        assert!((v[0] + 0.75).abs() < 1e-12);
        assert!((v[7] - 0.25).abs() < 1e-12);
    }
}
