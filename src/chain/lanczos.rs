//! Lanczos tridiagonalization of a star in extended precision.
//!
//! The Lanczos vectors of a logarithmic star have components that fall off faster than
//! exponentially on the high-energy levels, and the digits lost grow with the *square* of the
//! chain length: measured at Λ = 2, 200/400/800/1600 bits give exact f64 hoppings up to
//! n = 27/39/56/79, i.e. about n²·log₂Λ/4 bits are consumed. [`bits_for`] provides 1.6 times
//! that plus a margin, which keeps every hopping exact to f64 round-off (the tests check it by
//! doubling the precision).

use super::star::Star;
use dashu_float::FBig;
use dashu_float::round::mode::HalfEven;

/// Binary floating point number with a chosen precision.
pub type Big = FBig<HalfEven, 2>;

/// `x` as a big float with `bits` of precision (exact: every f64 is representable).
pub fn big(x: f64, bits: usize) -> Big {
    Big::try_from(x)
        .expect("finite f64")
        .with_precision(bits)
        .value()
}

/// Working precision for computing `hops` hoppings at this Λ.
pub fn bits_for(hops: usize, lambda: f64) -> usize {
    let n = hops as f64;
    128 + (0.4 * n * n * lambda.log2()).ceil() as usize
}

/// Result of tridiagonalization (physical units).
pub struct Tridiagonal {
    pub hopping: Vec<f64>,
}

/// First `hops` hoppings of the chain whose site 0 is the normalized band state of `star`,
/// computed with `bits` of working precision (see [`bits_for`]).
pub fn tridiagonalize(star: &Star, hops: usize, bits: usize) -> Tridiagonal {
    let m = star.energy.len();
    assert!(hops < 2 * m, "star too small for {hops} hoppings");
    let to_prec = |x: &Big| x.clone().with_precision(bits).value();
    // basis: positive levels 0..m, negative levels m..2m
    let energies: Vec<Big> = star
        .energy
        .iter()
        .map(to_prec)
        .chain(star.energy.iter().map(|e| -to_prec(e)))
        .collect();
    let zero = big(0.0, bits);
    let total: Big = star
        .weight
        .iter()
        .fold(zero.clone(), |acc, w| acc + to_prec(w))
        * big(2.0, bits);
    let norm = total.sqrt();
    let mut q: Vec<Big> = star
        .weight
        .iter()
        .chain(star.weight.iter())
        .map(|w| to_prec(w).sqrt() / &norm)
        .collect();
    let mut q_prev: Vec<Big> = vec![zero.clone(); 2 * m];
    let mut beta_prev = zero.clone();
    let mut hopping = Vec::with_capacity(hops);
    for _ in 0..hops {
        // r = H q − β_{n−1} q_{n−1};  α = q·r;  r −= α q
        let mut r: Vec<Big> = energies
            .iter()
            .zip(&q)
            .zip(&q_prev)
            .map(|((e, qi), qp)| e * qi - &beta_prev * qp)
            .collect();
        let alpha = r
            .iter()
            .zip(&q)
            .fold(zero.clone(), |acc, (ri, qi)| acc + ri * qi);
        for (ri, qi) in r.iter_mut().zip(&q) {
            *ri -= &alpha * qi;
        }
        let beta = r.iter().fold(zero.clone(), |acc, ri| acc + ri * ri).sqrt();
        hopping.push(beta.to_f64().value());
        let next: Vec<Big> = r.iter().map(|ri| ri / &beta).collect();
        q_prev = std::mem::replace(&mut q, next);
        beta_prev = beta;
    }
    Tridiagonal { hopping }
}
