//! Star representation of the discretized flat band: one representative energy and one
//! weight per logarithmic interval, mirrored at negative energies.
//!
//! Intervals (D = 1, twist z ∈ (0, 1]): I_1 = [Λ^(−z), 1], I_j = [Λ^(1−j−z), Λ^(2−j−z)] for j ≥ 2.
//! Weight of an interval (one sign of energy) = ∫ρ = width/2 with ρ = 1/2, so the weights of
//! both sides sum to one and site 0 is the normalized local band state.
//! Representative energies:
//! - Wilson (Yoshida–Whitaker–Oliveira for z ≠ 1): the interval mid-point;
//! - Campo–Oliveira: width / ln(upper/lower), i.e. 1/ε is the interval average of 1/ω;
//! - Žitko–Pruschke: the flat-band solution of their ODE with x = j + z:
//!   ε(x) = (1−Λ⁻¹)/ln Λ · Λ^(2−x) for x ≥ 2 and ε(x) = (2−x) + (1 − Λ^(1−x))/ln Λ for 1 < x < 2.

use super::lanczos::Big;
use crate::params::Discretization;

/// Positive half of a symmetric star; level j couples to site 0 with amplitude √weight_j.
/// The last level stands for the remainder of the band below the last interval.
#[derive(Debug, Clone)]
pub struct Star {
    pub energy: Vec<Big>,
    pub weight: Vec<Big>,
}

/// Λ^(−x) in working precision.
fn pow_neg(ln_lambda: &Big, x: &Big) -> Big {
    (-(x * ln_lambda)).exp()
}

/// Star with `intervals` intervals per side, in `bits` of precision.
pub fn star_with_bits(
    scheme: Discretization,
    lambda: f64,
    z: f64,
    intervals: usize,
    bits: usize,
) -> Star {
    let big = |x: f64| super::lanczos::big(x, bits);
    let one = big(1.0);
    let two = big(2.0);
    let ln_l = big(lambda).ln();
    let z_big = big(z);
    let mut energy = Vec::with_capacity(intervals);
    let mut weight = Vec::with_capacity(intervals);
    for j in 1..=intervals {
        let jj = big(j as f64);
        // interval edges: upper = Λ^(2−j−z) (1 for j = 1), lower = Λ^(1−j−z)
        let upper = if j == 1 {
            one.clone()
        } else {
            pow_neg(&ln_l, &(&jj + &z_big - &two))
        };
        let lower = pow_neg(&ln_l, &(&jj + &z_big - &one));
        let width = &upper - &lower;
        let e = match scheme {
            Discretization::Wilson => (&upper + &lower) / &two,
            Discretization::CampoOliveira => {
                // ln(upper/lower) = (1 for j ≥ 2, z for j = 1) · ln Λ
                let ratio_ln = if j == 1 { &z_big * &ln_l } else { ln_l.clone() };
                &width / &ratio_ln
            }
            Discretization::ZitkoPruschke => {
                let x = &jj + &z_big;
                if x >= two {
                    (&one - &one / big(lambda)) / &ln_l * pow_neg(&ln_l, &(&x - &two))
                } else {
                    (&two - &x) + (&one - pow_neg(&ln_l, &(&x - &one))) / &ln_l
                }
            }
        };
        energy.push(e);
        weight.push(width / &two);
    }
    // The rest of the band, [0, Λ^(1−M−z)], as one last level at its mid-point: without it the
    // weights would not sum to one and every hopping would be off by ~Λ^(−M). It only shapes the
    // far end of the chain, beyond the sites that are used.
    let rest = pow_neg(&ln_l, &(big(intervals as f64) + &z_big - &one));
    energy.push(&rest / &two);
    weight.push(rest / &two);
    Star { energy, weight }
}
