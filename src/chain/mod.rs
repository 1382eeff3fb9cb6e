//! The Wilson chain: logarithmic discretization of a flat band (D = 1) and its hoppings.
//!
//! Inputs: Λ, the discretization scheme, the twist z, and how many sites are needed.
//! Outputs (physical units): the hoppings t_n between sites n and n+1, the on-site energies
//! (zero for the symmetric flat band), the factor multiplying every coupling to site 0
//! (A_Λ for Wilson's scheme) and the shell scales ω_N that define rescaled energies.
//!
//! Conventions (see `physics-reference.md`):
//! - Wilson, z = 1: t_n = (1+Λ⁻¹)/2 · Λ^(−n/2) · ξ_n in closed form,
//!   ξ_n = (1−Λ^(−n−1)) / sqrt[(1−Λ^(−2n−1))(1−Λ^(−2n−3))], ω_N = (1+Λ⁻¹)/2 · Λ^(−(N−1)/2).
//! - Campo–Oliveira and Žitko–Pruschke at z = 1 use the same intervals and weights with every
//!   representative energy scaled by c = [(1−Λ⁻¹)/ln Λ] / [(1+Λ⁻¹)/2], so their chain is c times
//!   Wilson's: closed form again. ω_N = (1−Λ⁻¹)/ln Λ · Λ^(−(N−1)/2).
//! - Any z ≠ 1: the star (representative energies ±ε_j, weights = interval widths) is
//!   tridiagonalized by Lanczos in extended precision ([`lanczos`]), so no digits are lost at
//!   large n. ω_N gets the extra factor Λ^(−(z−1)).

mod lanczos;
mod star;

pub use star::{Star, star_with_bits};

use crate::params::{Discretization, NrgParams};

/// Wilson's correction to the hybridization for his discretization:
/// A_Λ = ½ (1+1/Λ)/(1−1/Λ) ln Λ.
pub fn a_lambda(lambda: f64) -> f64 {
    0.5 * (1.0 + 1.0 / lambda) / (1.0 - 1.0 / lambda) * lambda.ln()
}

/// Prefactor of the shell scale: ω_N = prefactor · Λ^(−(N−1)/2).
fn omega_prefactor(p: &NrgParams) -> f64 {
    let lambda = p.lambda;
    let base = match p.discretization {
        Discretization::Wilson => 0.5 * (1.0 + 1.0 / lambda),
        Discretization::CampoOliveira | Discretization::ZitkoPruschke => {
            (1.0 - 1.0 / lambda) / lambda.ln()
        }
    };
    base * lambda.powf(-(p.z - 1.0))
}

/// Shell scale ω_N.
pub fn omega(p: &NrgParams, n: usize) -> f64 {
    omega_prefactor(p) * p.lambda.powf(-(n as f64 - 1.0) / 2.0)
}

/// Index of the last shell: the first N with T_N = ω_N/β̄ ≤ T_min.
///
/// Computed in logarithms, so that no ratio can overflow; absurd parameters give a huge count
/// (which validation refuses) rather than a long loop.
pub fn last_shell(p: &NrgParams) -> usize {
    // ω_N/β̄ ≤ T_min  ⇔  (N−1)/2 · ln Λ ≥ ln(prefactor) − ln β̄ − ln T_min
    let x = (omega_prefactor(p).ln() - p.beta_bar.ln() - p.t_min.ln()) / p.lambda.ln();
    let estimate = 2.0 * x + 1.0;
    if !estimate.is_finite() || estimate > 1e9 {
        return usize::MAX / 2;
    }
    let mut n = estimate.ceil().max(0.0) as usize;
    // the estimate can be off by one at the boundary through rounding
    for _ in 0..3 {
        if n > 0 && omega(p, n - 1) / p.beta_bar <= p.t_min {
            n -= 1;
        }
    }
    for _ in 0..3 {
        if omega(p, n) / p.beta_bar > p.t_min {
            n += 1;
        }
    }
    n
}

/// Number of shells a run computes (N = 0 ..= last_shell).
pub fn shells_needed(p: &NrgParams) -> usize {
    last_shell(p).saturating_add(1)
}

/// A Wilson chain with enough sites for `n_sites` shells.
#[derive(Debug, Clone, PartialEq)]
pub struct WilsonChain {
    pub lambda: f64,
    /// Multiplies every coupling to site 0 (A_Λ for Wilson's scheme, 1 otherwise).
    pub coupling_factor: f64,
    /// t_n, hopping between sites n and n+1 (physical units).
    pub hopping: Vec<f64>,
    /// ε_n, on-site energy of site n (physical units).
    pub onsite: Vec<f64>,
    /// ω_N for every shell.
    pub omega: Vec<f64>,
}

impl WilsonChain {
    /// Build the chain for sites 0..n_sites.
    pub fn new(p: &NrgParams, n_sites: usize) -> WilsonChain {
        let n_sites = n_sites.max(1);
        let lambda = p.lambda;
        let hops = n_sites - 1;
        let hopping: Vec<f64> = if p.z == 1.0 {
            let scale = match p.discretization {
                Discretization::Wilson => 1.0,
                Discretization::CampoOliveira | Discretization::ZitkoPruschke => {
                    ((1.0 - 1.0 / lambda) / lambda.ln()) / (0.5 * (1.0 + 1.0 / lambda))
                }
            };
            (0..hops)
                .map(|n| scale * wilson_hopping(lambda, n))
                .collect()
        } else {
            twisted_hoppings(p, hops)
        };
        let coupling_factor = match p.discretization {
            Discretization::Wilson => a_lambda(lambda),
            _ => 1.0,
        };
        WilsonChain {
            lambda,
            coupling_factor,
            hopping,
            // the symmetric flat band has exactly zero on-site energies (the star is symmetric)
            onsite: vec![0.0; n_sites],
            omega: (0..n_sites).map(|n| omega(p, n)).collect(),
        }
    }
}

/// Hoppings of a twisted (z ≠ 1) chain: Lanczos in extended precision up to the site where the
/// chain has become self-similar, t_{n+2} = t_n/Λ to f64 round-off, then that recursion.
///
/// Why: the precision Lanczos needs grows with the square of the chain length (see
/// [`lanczos`]), so 130 sites (T ~ 1e-20 at Λ = 2) took 2 s and 200 sites minutes. The
/// deviation from self-similarity falls like Λ^(−n) (measured: |t_{n+2}Λ/t_n − 1| = 1e-7,
/// 5e-10, 2e-12 at n = 20, 28, 36 for Λ = 2), so it is below 1e-17 after
/// n* = 17 ln 10/ln Λ + 8 sites; the recursion is checked there before it is used.
fn twisted_hoppings(p: &NrgParams, hops: usize) -> Vec<f64> {
    let lambda = p.lambda;
    let self_similar_from = (17.0 * 10f64.ln() / lambda.ln()).ceil() as usize + 8;
    let computed = hops.min(self_similar_from + 2);
    // 40 intervals beyond the last site computed: the finite star then changes the hoppings
    // by ~Λ^(−40) relative, far below round-off
    let bits = lanczos::bits_for(computed, lambda);
    let star = star_with_bits(p.discretization, lambda, p.z, computed / 2 + 40, bits);
    let mut t = lanczos::tridiagonalize(&star, computed, bits).hopping;
    if computed < hops {
        let n = computed - 1;
        let deviation = (t[n] * lambda / t[n - 2] - 1.0).abs();
        assert!(
            deviation < 1e-14,
            "chain not self-similar at n = {n}: {deviation:e}"
        );
        for n in computed..hops {
            t.push(t[n - 2] / lambda);
        }
    }
    t
}

/// Wilson's closed form t_n = (1+Λ⁻¹)/2 · Λ^(−n/2) · ξ_n.
pub fn wilson_hopping(lambda: f64, n: usize) -> f64 {
    let n = n as f64;
    // 1 − Λ^(−k) evaluated as −expm1(−k ln Λ): no cancellation for large Λ^(−k)
    let one_minus = |k: f64| -(-k * lambda.ln()).exp_m1();
    let xi = one_minus(n + 1.0) / (one_minus(2.0 * n + 1.0) * one_minus(2.0 * n + 3.0)).sqrt();
    0.5 * (1.0 + 1.0 / lambda) * lambda.powf(-n / 2.0) * xi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(lambda: f64, disc: Discretization, z: f64) -> NrgParams {
        NrgParams {
            lambda,
            discretization: disc,
            z,
            ..NrgParams::default()
        }
    }

    #[test]
    fn a_lambda_matches_reference_values() {
        // physics-reference.md quotes four digits
        assert!((a_lambda(2.0) - 1.0397).abs() < 5e-5);
        assert!((a_lambda(2.5) - 1.0690).abs() < 5e-5);
        assert!((a_lambda(3.0) - 1.0986).abs() < 5e-5);
    }

    #[test]
    fn wilson_xi_tends_to_one() {
        let lambda: f64 = 2.5;
        let t = wilson_hopping(lambda, 60);
        let xi = t / (0.5 * (1.0 + 1.0 / lambda) * lambda.powf(-30.0));
        assert!((xi - 1.0).abs() < 1e-15);
    }

    #[test]
    fn last_shell_reaches_t_min() {
        let p = NrgParams {
            lambda: 2.0,
            t_min: 1e-10,
            beta_bar: 0.75,
            ..NrgParams::default()
        };
        let n = last_shell(&p);
        assert!(omega(&p, n) / p.beta_bar <= p.t_min);
        assert!(omega(&p, n - 1) / p.beta_bar > p.t_min);
    }

    /// Lanczos chain of a star with enough intervals that its end does not matter.
    fn lanczos_chain(
        disc: Discretization,
        lambda: f64,
        z: f64,
        hops: usize,
        bits: usize,
    ) -> Vec<f64> {
        let star = star_with_bits(disc, lambda, z, hops / 2 + 40, bits);
        lanczos::tridiagonalize(&star, hops, bits).hopping
    }

    #[test]
    fn absurd_parameters_do_not_loop() {
        // ratios that overflow f64 used to drive a counting loop for ~1e19 steps
        for (t_min, beta_bar, lambda) in [
            (1e-309, 1.0, 2.0),
            (1e-9, 1e-300, 2.0),
            (1e-9, 1.0, 1.0000001),
        ] {
            let p = NrgParams {
                t_min,
                beta_bar,
                lambda,
                ..NrgParams::default()
            };
            assert!(shells_needed(&p) > 1000);
        }
    }

    #[test]
    fn lanczos_reproduces_wilson_closed_form() {
        // Wilson's star at z = 1 tridiagonalized numerically must give the closed form to
        // round-off (1e-14 allows a few ulps from the closed form's own pow/sqrt).
        let lambda = 2.0;
        let hops = 60;
        let chain = lanczos_chain(
            Discretization::Wilson,
            lambda,
            1.0,
            hops,
            lanczos::bits_for(hops, lambda),
        );
        for (n, t) in chain.iter().enumerate() {
            let exact = wilson_hopping(lambda, n);
            assert!(
                (t / exact - 1.0).abs() < 1e-14,
                "n = {n}: lanczos {t} vs {exact}"
            );
        }
    }

    #[test]
    fn campo_oliveira_z1_is_scaled_wilson() {
        let lambda = 3.0;
        let hops = 50;
        let chain = lanczos_chain(
            Discretization::CampoOliveira,
            lambda,
            1.0,
            hops,
            lanczos::bits_for(hops, lambda),
        );
        let p = params(lambda, Discretization::CampoOliveira, 1.0);
        let closed = WilsonChain::new(&p, hops + 1);
        for n in 0..hops {
            // same round-off allowance as above
            assert!(
                (chain[n] / closed.hopping[n] - 1.0).abs() < 1e-14,
                "n = {n}"
            );
        }
    }

    #[test]
    fn twisted_chains_scale_like_omega() {
        // ξ_n = t_n/ω_{n+1} must approach a constant of order one for every scheme and z.
        for disc in Discretization::ALL {
            for z in [0.25, 0.5, 0.75] {
                let p = params(2.0, disc, z);
                let chain = WilsonChain::new(&p, 61);
                let xi: Vec<f64> = (0..60)
                    .map(|n| chain.hopping[n] / chain.omega[n + 1])
                    .collect();
                assert!((xi[59] / xi[57] - 1.0).abs() < 1e-8, "{disc:?} z={z}");
                assert!(
                    xi[59] > 0.5 && xi[59] < 2.0,
                    "{disc:?} z={z}: ξ = {}",
                    xi[59]
                );
            }
        }
    }

    #[test]
    fn self_similar_tail_matches_full_lanczos() {
        // Λ = 3: the recursion takes over after 44 sites; full Lanczos to 90 sites must agree
        // to round-off (a few ulps: both sides are correctly rounded from different paths)
        let p = params(3.0, Discretization::ZitkoPruschke, 0.4);
        let chain = WilsonChain::new(&p, 91);
        let full = lanczos_chain(
            Discretization::ZitkoPruschke,
            3.0,
            0.4,
            90,
            lanczos::bits_for(90, 3.0),
        );
        for n in 0..90 {
            assert!((chain.hopping[n] / full[n] - 1.0).abs() < 1e-15, "n = {n}");
        }
    }

    #[test]
    fn lanczos_precision_is_converged() {
        // Doubling the working precision must not change any hopping at f64 level.
        let hops = 60;
        let bits = lanczos::bits_for(hops, 2.0);
        let a = lanczos_chain(Discretization::ZitkoPruschke, 2.0, 0.4, hops, bits);
        let b = lanczos_chain(Discretization::ZitkoPruschke, 2.0, 0.4, hops, 2 * bits);
        assert_eq!(a, b);
    }
}
