//! Learning-rate schedules: constant, cosine, step and exponential decay, each with an optional
//! linear warm-up, as one burn-train [`LrScheduler`].

use burn::lr_scheduler::LrScheduler;
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

/// How the learning rate moves during training (`train.schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `learning_rate` throughout.
    #[default]
    Constant,
    /// Cosine decay from `learning_rate` to `min_learning_rate` over the run, as
    /// `CosineAnnealingLR` with `T_max` = every step after the warm-up.
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs (`StepLR`).
    Step,
    /// Multiply by `gamma` every epoch (`ExponentialLR`).
    Exponential,
    /// The learning-rate range test: multiply by `gamma` every step (not a config value).
    #[serde(skip)]
    RangeTest,
}

/// A schedule over optimiser steps, with the run's length known up front.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The shape of the decay.
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub base: f64,
    /// Floor of the cosine decay.
    pub min: f64,
    /// Decay factor of step and exponential schedules.
    pub gamma: f64,
    /// Epochs between step decays.
    pub step_epochs: usize,
    /// Optimiser steps of linear warm-up from `base / warmup_steps` to `base`.
    pub warmup_steps: usize,
    /// Optimiser steps per epoch.
    pub steps_per_epoch: usize,
    /// Optimiser steps in the whole run.
    pub total_steps: usize,
    /// Steps taken so far.
    pub taken: usize,
}

impl Schedule {
    /// The learning rate of optimiser step `s` (0-based).
    pub fn rate_at(&self, s: usize) -> f64 {
        if s < self.warmup_steps {
            return self.base * (s + 1) as f64 / self.warmup_steps as f64;
        }
        let epoch = s / self.steps_per_epoch.max(1);
        match self.kind {
            ScheduleKind::Constant => self.base,
            ScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let t = ((s - self.warmup_steps) as f64 / span as f64).min(1.0);
                self.min + (self.base - self.min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            ScheduleKind::Step => {
                self.base * self.gamma.powi((epoch / self.step_epochs.max(1)) as i32)
            }
            ScheduleKind::Exponential => self.base * self.gamma.powi(epoch as i32),
            ScheduleKind::RangeTest => self.base * self.gamma.powi(s as i32),
        }
    }
}

impl LrScheduler for Schedule {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let rate = self.rate_at(self.taken);
        self.taken += 1;
        rate
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.taken
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.taken = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, warmup_steps: usize) -> Schedule {
        Schedule {
            kind,
            base: 1.0,
            min: 0.0,
            gamma: 0.5,
            step_epochs: 2,
            warmup_steps,
            steps_per_epoch: 10,
            total_steps: 50,
            taken: 0,
        }
    }

    #[test]
    fn rates_follow_the_pytorch_formulas() {
        let c = schedule(ScheduleKind::Cosine, 0);
        assert_eq!(c.rate_at(0), 1.0);
        assert!((c.rate_at(25) - 0.5).abs() < 1e-12);
        assert!(c.rate_at(50).abs() < 1e-12);
        let s = schedule(ScheduleKind::Step, 0);
        assert_eq!(
            [s.rate_at(0), s.rate_at(19), s.rate_at(20), s.rate_at(45)],
            [1.0, 1.0, 0.5, 0.25]
        );
        let e = schedule(ScheduleKind::Exponential, 0);
        assert_eq!(
            [e.rate_at(9), e.rate_at(10), e.rate_at(30)],
            [1.0, 0.5, 0.125]
        );
        let w = schedule(ScheduleKind::Constant, 4);
        assert_eq!([w.rate_at(0), w.rate_at(3), w.rate_at(4)], [0.25, 1.0, 1.0]);
        let wc = schedule(ScheduleKind::Cosine, 10);
        assert_eq!(wc.rate_at(10), 1.0);
        assert!(wc.rate_at(49) < 0.01);
    }

    #[test]
    fn stepping_counts_and_resumes() {
        let mut s = schedule(ScheduleKind::Exponential, 0);
        let rates: Vec<f64> = (0..12).map(|_| s.step()).collect();
        assert_eq!(rates[10], 0.5);
        let record = LrScheduler::to_record::<burn::backend::NdArray>(&s);
        let resumed =
            schedule(ScheduleKind::Exponential, 0).load_record::<burn::backend::NdArray>(record);
        assert_eq!(resumed.taken, 12);
    }
}
