//! z-averaged thermodynamics (`nrg.z_average = Nz`): Nz runs on twisted chains z_i = i/Nz
//! (i = 1…Nz, so the plain chain z = 1 is the last), each interpolated linearly in ln T onto the
//! temperatures T_N of the z = 1 chain, then averaged.
//!
//! A single chain's observables oscillate in ln T with the period of the discretization (ln Λ
//! per two shells); the twisted chains sample the same oscillation at shifted phases, and their
//! average cancels most of it. Derivatives (`grad`, `hess`, `obs_grad`) are averaged the same
//! way: the average and the interpolation are linear, so they stay the exact derivatives of the
//! averaged observables.
//!
//! The chains advance in lockstep, so each averaged record is emitted as soon as every chain has
//! passed its temperature. The twisted chains are run one shell further (T_min/√Λ) so that the
//! reference chain's last temperature is bracketed; a reference temperature outside some chain's
//! range is skipped. Levels, kept counts and per-shell warnings are those of the z = 1 chain;
//! T_K and the Wilson ratio come from the averaged values, and every chain's warnings are in the
//! summary, tagged with its z.

use crate::diagnostics::Diagnostics;
use crate::params::{InvalidParam, RunConfig};
use crate::record::{Header, Observables, ShellRecord, Summary};
use crate::solver::{Records, Run};
use indexmap::IndexMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// One chain of the average and the records it has produced.
struct Chain {
    z: f64,
    run: Run,
    records: Vec<ShellRecord>,
    finished: bool,
}

impl Chain {
    /// Advance until the chain's last record lies at or below `t` (or the chain ends).
    /// `false` if the run was cancelled in the middle.
    fn reach(&mut self, t: f64) -> bool {
        while !self.finished && self.records.last().is_none_or(|r| r.t > t) {
            match self.run.next_shell() {
                Some(r) => self.records.push(r),
                None => {
                    self.finished = true;
                    return !self.run.is_cancelled();
                }
            }
        }
        true
    }

    /// The chain's records interpolated at `t`: (lower-index record, upper-index record, weight
    /// of the upper one), or `None` if `t` is outside its range.
    fn bracket(&self, t: f64) -> Option<(&ShellRecord, &ShellRecord, f64)> {
        let j = self
            .records
            .windows(2)
            .position(|w| w[0].t >= t && t >= w[1].t)?;
        let (a, b) = (&self.records[j], &self.records[j + 1]);
        let s = (t.ln() - a.t.ln()) / (b.t.ln() - a.t.ln());
        Some((a, b, s))
    }
}

/// The z-averaged run: yields one record per temperature of the z = 1 chain.
pub struct ZAveragedRun {
    chains: Vec<Chain>,
    header: Header,
    /// Next record of the reference (z = 1, last) chain to average.
    next: usize,
    diagnostics: Diagnostics,
    emitted: usize,
    cancelled: bool,
}

impl ZAveragedRun {
    /// Validate the parameters and prepare the Nz chains.
    pub fn new(config: &RunConfig) -> Result<ZAveragedRun, InvalidParam> {
        config.validate()?;
        let nz = config.nrg.z_average;
        let mut chains = Vec::with_capacity(nz);
        for i in 1..=nz {
            let z = i as f64 / nz as f64;
            let mut c = config.clone();
            c.nrg.z_average = 1;
            c.nrg.z = z;
            if i < nz {
                // one shell further, so that the reference's last T is bracketed (unless that
                // would leave the accepted range)
                let lower = config.nrg.t_min / config.nrg.lambda.sqrt();
                let mut further = c.clone();
                further.nrg.t_min = lower;
                if further.validate().is_ok() {
                    c = further;
                }
            }
            chains.push(Chain {
                z,
                run: Run::new(&c)?,
                records: Vec::new(),
                finished: false,
            });
        }
        let mut header = chains[nz - 1].run.header().clone();
        header.nrg.z_average = nz;
        Ok(ZAveragedRun {
            chains,
            header,
            next: 0,
            diagnostics: Diagnostics::new(&config.nrg),
            emitted: 0,
            cancelled: false,
        })
    }

    /// Cancel every chain through `flag`.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> ZAveragedRun {
        self.chains = self
            .chains
            .into_iter()
            .map(|mut c| {
                c.run = c.run.with_cancel_flag(flag.clone());
                c
            })
            .collect();
        self
    }

    /// The header of the z = 1 chain, with `nrg.z_average` = Nz.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The last shell of the z = 1 chain (the averaged records are at most this many + 1).
    pub fn n_max(&self) -> usize {
        self.header.n_max
    }

    /// The next averaged record, or `None` when done (or cancelled).
    pub fn next_shell(&mut self) -> Option<ShellRecord> {
        loop {
            let last = self.chains.len() - 1;
            let (reference, others) = self.chains.split_last_mut()?;
            while reference.records.len() <= self.next {
                if reference.finished {
                    return None;
                }
                match reference.run.next_shell() {
                    Some(r) => reference.records.push(r),
                    None => {
                        reference.finished = true;
                        self.cancelled |= reference.run.is_cancelled();
                        return None;
                    }
                }
            }
            let t = reference.records[self.next].t;
            for chain in others.iter_mut() {
                if !chain.reach(t) {
                    self.cancelled = true;
                    return None;
                }
            }
            let k = self.next;
            self.next += 1;
            let brackets: Option<Vec<_>> =
                self.chains[..last].iter().map(|c| c.bracket(t)).collect();
            let Some(brackets) = brackets else {
                // outside some chain's range: above the twisted chains' first temperature, or
                // below the last one they reached
                if self.chains[..last].iter().all(|c| c.finished) {
                    return None;
                }
                continue;
            };
            let reference = &self.chains[last].records[k];
            let mut parts: Vec<(&ShellRecord, f64)> = vec![(reference, 1.0)];
            for (a, b, s) in brackets {
                parts.push((a, 1.0 - s));
                parts.push((b, s));
            }
            let record = average(reference, &parts, self.chains.len() as f64);
            self.diagnostics.observe(record.t, &record.obs);
            self.emitted += 1;
            return Some(record);
        }
    }

    /// The `done` record: T_K and the Wilson ratio from the averaged values; the warnings of
    /// every chain, tagged with its z.
    pub fn summary(&self, cancelled: bool) -> Summary {
        let applies = self.chains[self.chains.len() - 1]
            .run
            .wilson_ratio_applies();
        let mut summary = self
            .diagnostics
            .summary(cancelled || self.cancelled, applies);
        summary.shells = self.emitted;
        for chain in &self.chains {
            let s = chain.run.summary(false);
            summary.min_gap_cut = match (summary.min_gap_cut, s.min_gap_cut) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            summary.warnings.extend(
                s.warnings
                    .into_iter()
                    .map(|w| format!("z = {}: {w}", chain.z)),
            );
        }
        summary
    }
}

impl Records for ZAveragedRun {
    fn header(&self) -> &Header {
        ZAveragedRun::header(self)
    }
    fn n_max(&self) -> usize {
        ZAveragedRun::n_max(self)
    }
    fn summary(&self, cancelled: bool) -> Summary {
        ZAveragedRun::summary(self, cancelled)
    }
}

impl Iterator for ZAveragedRun {
    type Item = ShellRecord;
    fn next(&mut self) -> Option<ShellRecord> {
        self.next_shell()
    }
}

/// Σ weight·record / `count` of every averaged field; everything else from `reference`.
fn average(reference: &ShellRecord, parts: &[(&ShellRecord, f64)], count: f64) -> ShellRecord {
    let mean =
        |f: &dyn Fn(&ShellRecord) -> f64| parts.iter().map(|(r, w)| w * f(r)).sum::<f64>() / count;
    let mean_opt = |f: &dyn Fn(&Observables) -> Option<f64>| {
        let mut sum = 0.0;
        for (r, w) in parts {
            sum += w * f(&r.obs)?;
        }
        Some(sum / count)
    };
    let mean_map = |get: &dyn Fn(&ShellRecord) -> &IndexMap<String, f64>| {
        get(reference)
            .keys()
            .map(|k| {
                let v = mean(&|r| get(r).get(k).copied().unwrap_or(f64::NAN));
                (k.clone(), v)
            })
            .collect::<IndexMap<String, f64>>()
    };
    let obs = Observables {
        f_imp: mean(&|r| r.obs.f_imp),
        s_imp: mean(&|r| r.obs.s_imp),
        c_imp: mean(&|r| r.obs.c_imp),
        tchi_imp: mean(&|r| r.obs.tchi_imp),
        chi_loc: mean_opt(&|o| o.chi_loc),
        n_d: mean_opt(&|o| o.n_d),
        docc: mean_opt(&|o| o.docc),
        chi_c: mean_opt(&|o| o.chi_c),
        chi_cross: mean_opt(&|o| o.chi_cross),
    };
    let obs_grad = reference
        .obs_grad
        .keys()
        .map(|x| {
            let inner = mean_map(&|r: &ShellRecord| &r.obs_grad[x]);
            (x.clone(), inner)
        })
        .collect();
    ShellRecord {
        obs,
        grad: mean_map(&|r| &r.grad),
        hess: mean_map(&|r| &r.hess),
        obs_grad,
        ..reference.clone()
    }
}
