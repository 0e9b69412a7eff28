//! The learning-rate range test (`ember lr-find`): train from the config's initial weights
//! while the rate grows exponentially from `min_lr` to `max_lr`, one step per batch, record the
//! smoothed loss, stop once it diverges, and suggest the rate where it fell fastest.

use std::path::Path;
use std::sync::Mutex;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{
    EventProcessorTraining, InferenceStep, Learner, LearnerEvent, LearningComponentsTypes,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainOutput,
    TrainStep, TrainingComponents, TrainingModel, ValidLoader,
};
use plotters::prelude::*;
use serde::Serialize;

use crate::output::TokenLossOutput;
use crate::strategy::CarryStep;
use crate::TrainError;

/// File name of the range test's table.
pub const LR_FIND_CSV: &str = "lr_find.csv";
/// File name of the range test's plot.
pub const LR_FIND_SVG: &str = "lr_find.svg";

/// The sweep of a range test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeSpec {
    /// First learning rate.
    pub min_lr: f64,
    /// Last learning rate.
    pub max_lr: f64,
    /// Optimiser steps (one batch each) from `min_lr` to `max_lr`.
    pub steps: usize,
}

impl RangeSpec {
    /// Checks that the sweep can run.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.min_lr > 0.0 && self.min_lr < self.max_lr && self.max_lr.is_finite()) {
            return Err(format!(
                "the learning rates must satisfy 0 < --min-lr < --max-lr, got {} and {}",
                self.min_lr, self.max_lr
            ));
        }
        if self.steps < 10 {
            return Err(format!("--steps must be at least 10, got {}", self.steps));
        }
        Ok(())
    }

    /// The factor between consecutive rates.
    pub fn ratio(&self) -> f64 {
        (self.max_lr / self.min_lr).powf(1.0 / (self.steps - 1) as f64)
    }
}

/// One step of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RangePoint {
    /// The step's learning rate.
    pub lr: f64,
    /// The batch's loss.
    pub loss: f64,
    /// Exponential moving average of the loss (β = 0.98, bias-corrected).
    pub smoothed: f64,
}

/// What a range test found.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeReport {
    /// Every step taken.
    pub points: Vec<RangePoint>,
    /// The rate where the smoothed loss fell fastest (per decade of rate).
    pub steepest: f64,
    /// The rate with the lowest smoothed loss.
    pub lowest: f64,
    /// Whether the loss diverged before `max_lr`.
    pub diverged: bool,
}

impl RangeReport {
    /// Reads the suggestion off `points`: the steepest descent before the minimum, both looked
    /// for after the first tenth of the sweep, where the average is still warming up.
    pub fn from_points(points: Vec<RangePoint>, diverged: bool) -> Result<Self, TrainError> {
        let usable = points.len();
        if usable < 5 {
            return Err(TrainError::RangeTest(format!(
                "the loss diverged after {usable} steps: lower --min-lr"
            )));
        }
        // The first tenth is left out: the moving average is still dominated by a few batches.
        let start = (usable / 10).max(1);
        let best = (start..usable)
            .min_by(|&a, &b| points[a].smoothed.total_cmp(&points[b].smoothed))
            .expect("points after the warm-up");
        let steepest = (start..=best)
            .min_by(|&a, &b| slope(&points, a).total_cmp(&slope(&points, b)))
            .map_or(points[best].lr, |i| points[i].lr);
        Ok(Self {
            steepest,
            lowest: points[best].lr,
            points,
            diverged,
        })
    }

    /// Writes `lr_find.csv` and `lr_find.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), TrainError> {
        let csv_path = dir.join(LR_FIND_CSV);
        let io = |path: &Path, e: &dyn std::fmt::Display| TrainError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut writer = csv::Writer::from_path(&csv_path).map_err(|e| io(&csv_path, &e))?;
        for p in &self.points {
            writer.serialize(p).map_err(|e| io(&csv_path, &e))?;
        }
        writer.flush().map_err(|e| io(&csv_path, &e))?;
        let svg = dir.join(LR_FIND_SVG);
        self.plot(&svg).map_err(|e| io(&svg, &e))
    }

    fn plot(&self, path: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
        let first = self.points.first().map_or(1e-6, |p| p.lr);
        let last = self.points.last().map_or(1.0, |p| p.lr).max(first * 1.01);
        let values: Vec<f64> = self
            .points
            .iter()
            .map(|p| p.smoothed)
            .filter(|v| v.is_finite())
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let start = values.first().copied().unwrap_or(lo);
        // Show the fall and the start of the rise, not the whole blow-up.
        let hi = values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .min(start + 2.0 * (start - lo).abs().max(0.1));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("learning-rate range test: suggested {:.2e}", self.steepest),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((first..last).log_scale(), (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("smoothed loss")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| err(&e))?;
        let curve = self
            .points
            .iter()
            .filter(|p| p.smoothed.is_finite() && p.smoothed <= hi + pad)
            .map(|p| (p.lr, p.smoothed));
        chart
            .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
            .map_err(|e| err(&e))?;
        let marker = self
            .points
            .iter()
            .find(|p| p.lr == self.steepest)
            .map(|p| (p.lr, p.smoothed));
        chart
            .draw_series(marker.map(|m| Circle::new(m, 5, RED.filled())))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))
    }
}

/// Change of the smoothed loss per decade of rate around point `i`.
fn slope(points: &[RangePoint], i: usize) -> f64 {
    let (a, b) = (i.saturating_sub(1), (i + 1).min(points.len() - 1));
    if a == b {
        return 0.0;
    }
    (points[b].smoothed - points[a].smoothed) / (points[b].lr.log10() - points[a].lr.log10())
}

/// The range test as a burn-train strategy: one optimiser step per batch (cycling over the
/// training loader), no validation, no checkpoint.
pub struct RangeTest {
    steps: usize,
    /// The steps taken and whether the loss diverged.
    result: Mutex<(Vec<RangePoint>, bool)>,
}

impl RangeTest {
    /// A test of `steps` steps.
    pub fn new(steps: usize) -> Self {
        Self {
            steps,
            result: Mutex::new((Vec::new(), false)),
        }
    }

    /// What the test recorded.
    pub fn take(&self) -> (Vec<RangePoint>, bool) {
        std::mem::take(&mut *self.result.lock().expect("result lock"))
    }
}

impl<LC> SupervisedLearningStrategy<LC> for RangeTest
where
    LC: LearningComponentsTypes,
    LC::TrainingModel: TrainStep<Output = TokenLossOutput<LC::Backend>>
        + CarryStep<
            <LC::TrainingModel as TrainStep>::Input,
            TrainOutput<TokenLossOutput<LC::Backend>>,
        >,
    LC::InferenceModel: InferenceStep,
    LC::TrainingModel: AutodiffModule<LC::Backend>,
    LC::Backend: AutodiffBackend,
{
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        mut learner: Learner<LC>,
        loader_train: TrainLoader<LC>,
        _loader_valid: ValidLoader<LC>,
        _starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let mut processor = components.event_processor;
        let beta = 0.98f64;
        let (mut average, mut best) = (0.0, f64::INFINITY);
        let mut points = Vec::with_capacity(self.steps);
        let mut diverged = false;
        'sweep: while points.len() < self.steps {
            let mut carry = None;
            let mut any = false;
            for batch in loader_train.iter() {
                any = true;
                learner.lr_step();
                let lr = learner.lr_current();
                let (mut out, next) = learner.model().step_carry(batch, carry.take());
                carry = next;
                let loss = out.item.mean_nll();
                if !loss.is_finite() {
                    diverged = true;
                    break 'sweep;
                }
                average = beta * average + (1.0 - beta) * loss;
                let smoothed = average / (1.0 - beta.powi(points.len() as i32 + 1));
                points.push(RangePoint { lr, loss, smoothed });
                best = best.min(smoothed);
                if points.len() > self.steps / 10 && smoothed > 4.0 * best {
                    diverged = true;
                    break 'sweep;
                }
                learner.optimizer_step(out.grads);
                if points.len() == self.steps {
                    break 'sweep;
                }
            }
            if !any {
                break;
            }
        }
        processor.process_train(LearnerEvent::EndEpoch(1));
        *self.result.lock().expect("result lock") = (points, diverged);
        (learner.model(), processor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_is_the_steepest_fall_before_the_minimum() {
        let spec = RangeSpec {
            min_lr: 1e-5,
            max_lr: 1.0,
            steps: 51,
        };
        spec.validate().unwrap();
        let mut lr = spec.min_lr;
        let points: Vec<RangePoint> = (0..51)
            .map(|_| {
                // Flat, a steep fall around 1e-3, a minimum near 1e-2, then a blow-up.
                let x = lr.log10();
                let smoothed =
                    2.0 - 1.5 / (1.0 + (-(x + 3.0) * 4.0).exp()) + (x + 2.0).max(0.0) * 3.0;
                let p = RangePoint {
                    lr,
                    loss: smoothed,
                    smoothed,
                };
                lr *= spec.ratio();
                p
            })
            .collect();
        let report = RangeReport::from_points(points, true).unwrap();
        assert!(
            (report.steepest.log10() + 3.0).abs() < 0.25,
            "steepest {}",
            report.steepest
        );
        assert!(
            (report.lowest.log10() + 2.0).abs() < 0.3,
            "lowest {}",
            report.lowest
        );
        let dir = tempfile::tempdir().unwrap();
        report.write(dir.path()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join(LR_FIND_CSV)).unwrap();
        assert!(csv.starts_with("lr,loss,smoothed\n"), "{csv}");
        assert_eq!(csv.lines().count(), 52);
        assert!(std::fs::read_to_string(dir.path().join(LR_FIND_SVG))
            .unwrap()
            .contains("<polyline"));
        assert!(RangeSpec {
            min_lr: 1.0,
            max_lr: 0.1,
            steps: 20
        }
        .validate()
        .is_err());
    }
}
