//! Wigner 6j and 9j symbols and the recoupling coefficients of the vector sector (design note
//! `su2-derivatives.md`, §2.4, toolkit T3–T7). Every angular momentum is passed doubled (2j, an
//! integer), so half-integers are exact.

/// n! for n ≤ 170 (the spins here stay far below: 2S ≤ 40 needs n ≤ 61).
fn factorial(n: i32) -> f64 {
    debug_assert!(n >= 0);
    (1..=n).map(f64::from).product()
}

/// (−1)^(x2/2) for an even `x2`.
fn phase(x2: i32) -> f64 {
    debug_assert!(x2 % 2 == 0, "a phase needs an integer exponent");
    if (x2 / 2).rem_euclid(2) == 0 {
        1.0
    } else {
        -1.0
    }
}

/// Whether (a, b, c) (doubled) satisfy the triangle rule with an integer sum.
fn triangle(a: i32, b: i32, c: i32) -> bool {
    a >= 0 && b >= 0 && c >= 0 && (a + b + c) % 2 == 0 && c >= (a - b).abs() && c <= a + b
}

/// Δ(abc) = √[(a+b−c)!(a−b+c)!(−a+b+c)!/(a+b+c+1)!] (doubled arguments).
fn delta(a: i32, b: i32, c: i32) -> f64 {
    (factorial((a + b - c) / 2) * factorial((a - b + c) / 2) * factorial((-a + b + c) / 2)
        / factorial((a + b + c) / 2 + 1))
    .sqrt()
}

/// {a b c; d e f} by Racah's formula (doubled arguments).
pub fn sixj(a: i32, b: i32, c: i32, d: i32, e: i32, f: i32) -> f64 {
    if !(triangle(a, b, c) && triangle(a, e, f) && triangle(d, b, f) && triangle(d, e, c)) {
        return 0.0;
    }
    let alpha = [
        (a + b + c) / 2,
        (a + e + f) / 2,
        (d + b + f) / 2,
        (d + e + c) / 2,
    ];
    let beta = [
        (a + b + d + e) / 2,
        (a + c + d + f) / 2,
        (b + c + e + f) / 2,
    ];
    let lo = *alpha.iter().max().expect("four");
    let hi = *beta.iter().min().expect("three");
    let mut sum = 0.0;
    for t in lo..=hi {
        let den: f64 = alpha.iter().map(|&x| factorial(t - x)).product::<f64>()
            * beta.iter().map(|&x| factorial(x - t)).product::<f64>();
        let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
        sum += sign * factorial(t + 1) / den;
    }
    delta(a, b, c) * delta(a, e, f) * delta(d, b, f) * delta(d, e, c) * sum
}

/// {a b c; d e f; g h i} as a sum over products of three 6j symbols (doubled arguments).
#[allow(clippy::too_many_arguments)]
pub fn ninej(a: i32, b: i32, c: i32, d: i32, e: i32, f: i32, g: i32, h: i32, i: i32) -> f64 {
    let lo = (a - i).abs().max((d - h).abs()).max((b - f).abs());
    let hi = (a + i).min(d + h).min(b + f);
    let mut sum = 0.0;
    let mut x = lo;
    while x <= hi {
        let sign = if x % 2 == 0 { 1.0 } else { -1.0 };
        sum += sign
            * f64::from(x + 1)
            * sixj(a, b, c, f, i, x)
            * sixj(d, e, f, b, x, h)
            * sixj(g, h, i, x, a, d);
        x += 2;
    }
    sum
}

/// (T6) A rank-k operator of the old system embedded in the product basis (same site state of
/// spin `site`): the factor between ⟨(A, s) S‖X‖(A′, s) S′⟩ and ⟨A‖X‖A′⟩ (CG convention).
pub fn c6(sa: i32, s: i32, site: i32, sp: i32, sap: i32, k: i32) -> f64 {
    phase(sa + site + sp + k)
        * (f64::from((sa + 1) * (sp + 1))).sqrt()
        * sixj(sa, s, site, sp, sap, k)
}

/// (T3) R_{jj″j′}(k1, k2, k) for spins S = `s` (j), S″ = `smid` (j″), S′ = `sp` (j′): the
/// coupling [A^{k1} ⊗ B^{k2}]^k has [j←j′] = Σ_{j″} R A[j←j″] B[j″←j′].
pub fn r3(s: i32, smid: i32, sp: i32, k1: i32, k2: i32, k: i32) -> f64 {
    phase(s + sp + k) * (f64::from((smid + 1) * (k + 1))).sqrt() * sixj(k1, k2, k, sp, s, smid)
}

/// (T4) Σ_q S_q O S_q† with S of rank 1 and O of rank ½: the factor of
/// S[j←j1] O[j1←j2] S[j′←j2]ᵀ for spins S (j), S1 (j1), S2 (j2), S′ (j′).
pub fn c3(s: i32, s1: i32, s2: i32, sp: i32) -> f64 {
    phase(s1 + sp + 3) * (f64::from((s1 + 1) * (sp + 1))).sqrt() * sixj(s, s1, 2, s2, sp, 1)
}

/// (T5) The Cartesian adjoint of a rank-1 operator, Y_q = (−1)^q X_{−q}†:
/// Y[j←j′] = t5(S, S′)·X[j′←j]ᵀ.
pub fn t5(s: i32, sp: i32) -> f64 {
    phase(sp - s) * (f64::from(sp + 1) / f64::from(s + 1)).sqrt()
}

/// (T7) X_q = Σ_σ O_{q,σ} f_{N+1,σ} with O_{q,σ} = Σ_k ⟨1 q; ½ σ|k, q+σ⟩ T^(k)_{q+σ}: the factor
/// c9_k of T^(k)[A←A′] in X[J←J′] (without the parity of the ket's old multiplet). `k` is 1 or
/// 3 (k = ½, 3/2); `sa`, `sap` the old blocks' spins, `site`, `sitep` the site spins of the bra
/// and ket types, `s`, `sp` the spins of J and J′, `f_red` = ⟨s‖f̃‖s′⟩.
#[allow(clippy::too_many_arguments)]
pub fn c9(k: i32, sa: i32, sap: i32, site: i32, sitep: i32, s: i32, sp: i32, f_red: f64) -> f64 {
    let ck = if k == 1 {
        (2.0f64 / 3.0).sqrt()
    } else {
        -2.0 / 3f64.sqrt()
    };
    ck * f_red
        * (3.0 * f64::from((sp + 1) * (sa + 1) * (site + 1))).sqrt()
        * ninej(sa, sap, k, site, sitep, 1, s, sp, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_and_nine_j_values() {
        // {a b c; b a 0} = (−1)^{a+b+c}/√((2a+1)(2b+1))
        assert!((sixj(1, 1, 2, 1, 1, 0) - 0.5).abs() < 1e-15);
        assert!((sixj(2, 1, 1, 1, 2, 0) - 1.0 / 6f64.sqrt()).abs() < 1e-15);
        // {1 1 1; 1 1 1} = 1/6, {½ ½ 1; ½ ½ 1} = 1/6
        assert!((sixj(2, 2, 2, 2, 2, 2) - 1.0 / 6.0).abs() < 1e-15);
        assert!((sixj(1, 1, 2, 1, 1, 2) - 1.0 / 6.0).abs() < 1e-15);
        // {a b e; c d e; f f 0} = (−1)^{b+c+e+f} {a b e; d c f}/√((2e+1)(2f+1))
        for (a, b, e, c, d, f) in [(1, 2, 1, 2, 1, 1), (2, 1, 3, 3, 2, 2), (3, 2, 1, 2, 1, 2)] {
            let lhs = ninej(a, b, e, c, d, e, f, f, 0);
            let rhs =
                phase(b + c + e + f) * sixj(a, b, e, d, c, f) / f64::from((e + 1) * (f + 1)).sqrt();
            assert!((lhs - rhs).abs() < 1e-14, "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn scalar_embedding_is_the_identity() {
        // c6 with k = 0 is 1: a scalar of the old system is the identity on the site
        for (sa, site, s) in [(1, 1, 0), (1, 1, 2), (2, 1, 1), (2, 1, 3), (3, 0, 3)] {
            assert!((c6(sa, s, site, s, sa, 0) - 1.0).abs() < 1e-14);
        }
    }
}
