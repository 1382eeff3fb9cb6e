//! The editable parameters: their TOML keys (the same as `--set KEY=VALUE`), labels, how they
//! are shown and how +/− steps them. Values are applied through the preset machinery (see
//! `App::apply`), so the explorer accepts and refuses exactly what the CLI does.

use super::plot::fmt_exact;
use dnrg::params::{Discretization, ModelKind, Param, RunConfig, SymmetryChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Kind,
    U,
    EpsD,
    Gamma,
    J,
    K,
    H,
    ActsOn,
    Lambda,
    Discretization,
    Z,
    Keep,
    ECut,
    BetaBar,
    TMin,
    GapWindow,
    Symmetry,
    Levels,
    ImpurityObservables,
}

/// How +/− changes a numeric value.
#[derive(Debug, Clone, Copy)]
enum StepRule {
    /// × or ÷ the factor; from zero, + jumps to the seed.
    Mul { factor: f64, seed: f64 },
    /// ± the amount.
    Add(f64),
    /// ×2 away from zero, ÷2 towards it (to exactly zero below `floor`), for signed small
    /// values such as the field.
    SignedLog { floor: f64 },
    /// Integers: × or ÷ the factor, by at least one.
    Count { factor: f64, min: usize },
}

impl Field {
    pub const ALL: [Field; 19] = [
        Field::Kind,
        Field::U,
        Field::EpsD,
        Field::Gamma,
        Field::J,
        Field::K,
        Field::H,
        Field::ActsOn,
        Field::Lambda,
        Field::Discretization,
        Field::Z,
        Field::Keep,
        Field::ECut,
        Field::BetaBar,
        Field::TMin,
        Field::GapWindow,
        Field::Symmetry,
        Field::Levels,
        Field::ImpurityObservables,
    ];

    /// The dotted key, as in presets and `--set`.
    pub fn key(self) -> &'static str {
        match self {
            Field::Kind => "model.kind",
            Field::U => "model.U",
            Field::EpsD => "model.eps_d",
            Field::Gamma => "model.Gamma",
            Field::J => "model.J",
            Field::K => "model.K",
            Field::H => "model.h",
            Field::ActsOn => "model.field",
            Field::Lambda => "nrg.Lambda",
            Field::Discretization => "nrg.discretization",
            Field::Z => "nrg.z",
            Field::Keep => "nrg.keep",
            Field::ECut => "nrg.e_cut",
            Field::BetaBar => "nrg.beta_bar",
            Field::TMin => "nrg.T_min",
            Field::GapWindow => "nrg.gap_window",
            Field::Symmetry => "nrg.symmetry",
            Field::Levels => "output.levels",
            Field::ImpurityObservables => "output.impurity_observables",
        }
    }

    /// The key without its section.
    pub fn name(self) -> &'static str {
        self.key().split_once('.').map_or("", |(_, name)| name)
    }

    pub fn section(self) -> &'static str {
        self.key()
            .split_once('.')
            .map_or("", |(section, _)| section)
    }

    /// What the parameter means (one short line).
    pub fn description(self) -> &'static str {
        match self {
            Field::Kind => "siam (Anderson) or kondo",
            Field::U => "Coulomb repulsion U",
            Field::EpsD => "level ε_d (−U/2: symmetric)",
            Field::Gamma => "hybridization Γ = πρV²",
            Field::J => "exchange ρJ",
            Field::K => "potential scattering ρK",
            Field::H => "Zeeman field h (−h S_z)",
            Field::ActsOn => "h acts on total/impurity spin",
            Field::Lambda => "discretization Λ > 1",
            Field::Discretization => "logarithmic grid",
            Field::Z => "twist z in (0, 1]",
            Field::Keep => "states kept per shell",
            Field::ECut => "energy cutoff/ω_N (0: none)",
            Field::BetaBar => "T_N = ω_N / beta_bar",
            Field::TMin => "lowest T (last shell)",
            Field::GapWindow => "cut at a gap ≤ keep·(1+w)",
            Field::Symmetry => "blocks: (Q,S) or (Q,S_z)",
            Field::Levels => "levels per shell (flow)",
            Field::ImpurityObservables => "n_d, docc, χ_loc, χ_c by AD",
        }
    }

    /// How +/− acts, for the help line of the parameters panel.
    pub fn step_hint(self) -> String {
        match self.rule() {
            Some(StepRule::Mul { factor, .. }) => format!("+/− ×{factor} ÷{factor}"),
            Some(StepRule::Add(d)) => format!("+/− ±{d}"),
            Some(StepRule::SignedLog { .. }) => "+/− ×2 away from 0, ÷2 towards it".into(),
            Some(StepRule::Count { factor, .. }) => format!("+/− ×{factor} ÷{factor}"),
            None => "Enter, +/− cycle the choices".into(),
        }
    }

    /// Parameters of the other model kind are hidden.
    pub fn visible(self, kind: ModelKind) -> bool {
        match self {
            Field::U | Field::EpsD | Field::Gamma => kind == ModelKind::Siam,
            Field::J | Field::K => kind == ModelKind::Kondo,
            _ => true,
        }
    }

    /// The derivative parameter of this row, if it can be differentiated (`d` toggles it).
    pub fn param(self) -> Option<Param> {
        match self {
            Field::U => Some(Param::U),
            Field::EpsD => Some(Param::EpsD),
            Field::Gamma => Some(Param::Gamma),
            Field::J => Some(Param::J),
            Field::K => Some(Param::K),
            Field::H => Some(Param::H),
            _ => None,
        }
    }

    /// Choices of a selection row (cycled, not typed).
    pub fn choices(self) -> Option<Vec<&'static str>> {
        match self {
            Field::Kind => Some(ModelKind::ALL.iter().map(|k| k.name()).collect()),
            Field::ActsOn => Some(vec!["total", "impurity"]),
            Field::Discretization => Some(Discretization::ALL.iter().map(|d| d.name()).collect()),
            Field::Symmetry => Some(SymmetryChoice::ALL.iter().map(|s| s.name()).collect()),
            Field::ImpurityObservables => Some(vec!["true", "false"]),
            _ => None,
        }
    }

    /// Integer-valued (typed values are passed on as written, so `300.0` is refused like in
    /// a preset file).
    pub fn is_integer(self) -> bool {
        matches!(self, Field::Keep | Field::Levels)
    }

    /// The current value as text (exact, so that editing starts from the true value).
    pub fn value(self, c: &RunConfig) -> String {
        let m = &c.model;
        let n = &c.nrg;
        match self {
            Field::Kind => m.kind.name().into(),
            Field::U => fmt_exact(m.u),
            Field::EpsD => fmt_exact(m.eps_d),
            Field::Gamma => fmt_exact(m.gamma),
            Field::J => fmt_exact(m.j),
            Field::K => fmt_exact(m.k),
            Field::H => fmt_exact(m.h),
            Field::ActsOn => m.field.name().into(),
            Field::Lambda => fmt_exact(n.lambda),
            Field::Discretization => n.discretization.name().into(),
            Field::Z => fmt_exact(n.z),
            Field::Keep => n.keep.to_string(),
            Field::ECut => fmt_exact(n.e_cut),
            Field::BetaBar => fmt_exact(n.beta_bar),
            Field::TMin => fmt_exact(n.t_min),
            Field::GapWindow => fmt_exact(n.gap_window),
            Field::Symmetry => n.symmetry.name().into(),
            Field::Levels => c.output.levels.to_string(),
            Field::ImpurityObservables => c.output.impurity_observables.to_string(),
        }
    }

    fn number(self, c: &RunConfig) -> f64 {
        let m = &c.model;
        let n = &c.nrg;
        match self {
            Field::U => m.u,
            Field::EpsD => m.eps_d,
            Field::Gamma => m.gamma,
            Field::J => m.j,
            Field::K => m.k,
            Field::H => m.h,
            Field::Lambda => n.lambda,
            Field::Z => n.z,
            Field::Keep => n.keep as f64,
            Field::ECut => n.e_cut,
            Field::BetaBar => n.beta_bar,
            Field::TMin => n.t_min,
            Field::GapWindow => n.gap_window,
            Field::Levels => c.output.levels as f64,
            _ => f64::NAN,
        }
    }

    fn rule(self) -> Option<StepRule> {
        Some(match self {
            Field::U => StepRule::Mul {
                factor: 1.25,
                seed: 0.01,
            },
            Field::Gamma => StepRule::Mul {
                factor: 1.25,
                seed: 0.001,
            },
            Field::J => StepRule::Mul {
                factor: 1.25,
                seed: 0.01,
            },
            Field::EpsD => StepRule::Add(0.005),
            Field::K => StepRule::Add(0.01),
            Field::H => StepRule::SignedLog { floor: 1e-7 },
            Field::Lambda => StepRule::Add(0.1),
            Field::Z => StepRule::Add(0.05),
            Field::ECut => StepRule::Add(0.5),
            Field::BetaBar => StepRule::Add(0.05),
            Field::TMin => StepRule::Mul {
                factor: 10.0,
                seed: 1e-8,
            },
            Field::GapWindow => StepRule::Add(0.05),
            Field::Keep => StepRule::Count {
                factor: 1.25,
                min: 1,
            },
            Field::Levels => StepRule::Count {
                factor: 1.0,
                min: 0,
            },
            _ => return None,
        })
    }

    /// The value one step up or down, as text to apply; `Err` when a step is impossible.
    pub fn step(self, c: &RunConfig, up: bool) -> Result<String, String> {
        if let Some(choices) = self.choices() {
            let current = self.value(c);
            let i = choices.iter().position(|&s| s == current).unwrap_or(0);
            let n = choices.len();
            let j = if up { (i + 1) % n } else { (i + n - 1) % n };
            return Ok(choices[j].to_string());
        }
        let v = self.number(c);
        let rule = self.rule().ok_or("not a number")?;
        let next = match rule {
            StepRule::Mul { factor, seed } => {
                if v == 0.0 {
                    if up {
                        seed
                    } else {
                        return Err(format!("{} is 0; type a value (Enter)", self.key()));
                    }
                } else if up {
                    v * factor
                } else {
                    v / factor
                }
            }
            StepRule::Add(d) => {
                if up {
                    v + d
                } else {
                    v - d
                }
            }
            StepRule::SignedLog { floor } => {
                let away = up == (v >= 0.0);
                if v == 0.0 {
                    if up { floor } else { -floor }
                } else if away {
                    v * 2.0
                } else if v.abs() / 2.0 < floor {
                    0.0
                } else {
                    v / 2.0
                }
            }
            StepRule::Count { factor, min } => {
                let n = v as usize;
                let scaled = if up {
                    ((n as f64) * factor).round() as usize
                } else {
                    ((n as f64) / factor).round() as usize
                };
                let next = if up {
                    scaled.max(n + 1)
                } else {
                    scaled.min(n.saturating_sub(1))
                };
                return Ok(next.max(min).to_string());
            }
        };
        Ok(fmt_exact(round_sig(next)))
    }
}

/// Rounded to 12 significant digits, so that repeated steps do not accumulate binary noise
/// (0.1 + 0.1 + 0.1 shows as 0.3).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// The rows of the parameters panel for a model kind, in display order.
pub fn visible(kind: ModelKind) -> Vec<Field> {
    Field::ALL.into_iter().filter(|f| f.visible(kind)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        let mut c = RunConfig::default();
        c.model.u = 0.1;
        c.model.eps_d = -0.05;
        c.model.h = 0.0;
        c.nrg.lambda = 2.5;
        c.nrg.t_min = 1e-8;
        c.nrg.keep = 300;
        c.nrg.discretization = Discretization::Wilson;
        c.model.kind = ModelKind::Siam;
        c.output.levels = 16;
        assert_eq!(Field::U.step(&c, true).unwrap(), "0.125");
        assert_eq!(Field::U.step(&c, false).unwrap(), "0.08");
        assert_eq!(Field::EpsD.step(&c, true).unwrap(), "-0.045");
        assert_eq!(Field::Lambda.step(&c, true).unwrap(), "2.6");
        assert_eq!(Field::TMin.step(&c, false).unwrap(), "1e-9");
        assert_eq!(Field::Keep.step(&c, true).unwrap(), "375");
        assert_eq!(Field::Levels.step(&c, false).unwrap(), "15");
        assert_eq!(Field::H.step(&c, true).unwrap(), "1e-7");
        assert_eq!(Field::H.step(&c, false).unwrap(), "-1e-7");
        assert_eq!(Field::Kind.step(&c, true).unwrap(), "kondo");
        assert_eq!(
            Field::Discretization.step(&c, false).unwrap(),
            "zitko-pruschke"
        );
        assert_eq!(Field::Symmetry.step(&c, true).unwrap(), "QS");
        assert_eq!(Field::Symmetry.step(&c, false).unwrap(), "QSZ");
        let mut z = c.clone();
        z.model.u = 0.0;
        assert!(Field::U.step(&z, false).is_err());
        assert_eq!(Field::U.step(&z, true).unwrap(), "0.01");
        let mut h = c.clone();
        h.model.h = 1e-7;
        assert_eq!(Field::H.step(&h, false).unwrap(), "0");
    }

    #[test]
    fn keys_are_the_preset_keys() {
        // a preset leaves `symmetry` out while it is the default `auto`
        let mut c = RunConfig::default();
        c.nrg.symmetry = SymmetryChoice::Qsz;
        let text = dnrg::preset::to_toml(&c, "");
        for f in Field::ALL {
            assert!(
                text.contains(&format!("\n{} = ", f.name())),
                "{} not in a preset file",
                f.key()
            );
        }
    }
}
