//! Autoregressive forecasts of a series run: each predicted value is fed back as the next
//! input, in the run's standardised units, and reported in data units.

use std::path::Path;

use burn::prelude::*;
use ember_nn::RecurrentState;
use plotters::prelude::*;
use serde::Serialize;

use crate::config::SeriesTarget;
use crate::plot::{line_chart, Curve, Labels};
use crate::task_eval::SeriesRun;
use crate::TrainError;

/// File name of a forecast's table.
pub const FORECAST_CSV: &str = "forecast.csv";
/// File name of a forecast's plot.
pub const FORECAST_SVG: &str = "forecast.svg";

/// A forecast, in data units.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The values the model read before forecasting.
    pub context: Vec<f32>,
    /// The forecast, one value per step after the context.
    pub predicted: Vec<f32>,
    /// The true values of the forecast steps, when they were held out of the input.
    pub truth: Option<Vec<f32>>,
}

impl Forecast {
    /// Mean squared and absolute error of the forecast against the truth, if any.
    pub fn errors(&self) -> Option<(f64, f64)> {
        self.truth.as_ref().map(|t| errors(&self.predicted, t))
    }

    /// Errors of repeating the last context value (persistence), the baseline to beat.
    pub fn persistence_errors(&self) -> Option<(f64, f64)> {
        let last = *self.context.last()?;
        let flat = vec![last; self.predicted.len()];
        self.truth.as_ref().map(|t| errors(&flat, t))
    }

    /// Writes `step,kind,truth,predicted` rows (context rows have no prediction, forecast
    /// rows no truth unless held out) to `path`.
    pub fn write_csv(&self, path: &Path) -> Result<(), TrainError> {
        #[derive(Serialize)]
        struct Row {
            step: usize,
            kind: &'static str,
            truth: Option<f32>,
            predicted: Option<f32>,
        }
        let io = |e: csv::Error| TrainError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        };
        let mut writer = csv::Writer::from_path(path).map_err(io)?;
        let context = self.context.iter().enumerate().map(|(i, &v)| Row {
            step: i,
            kind: "context",
            truth: Some(v),
            predicted: None,
        });
        let forecast = self.predicted.iter().enumerate().map(|(i, &p)| Row {
            step: self.context.len() + i,
            kind: "forecast",
            truth: self.truth.as_ref().map(|t| t[i]),
            predicted: Some(p),
        });
        for row in context.chain(forecast) {
            writer.serialize(row).map_err(io)?;
        }
        writer.flush().map_err(|e| io(e.into()))
    }

    /// Plots the end of the context, the truth and the forecast into the SVG file `path`.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let horizon = self.predicted.len();
        let shown = self.context.len().min((3 * horizon).max(50));
        let start = self.context.len() - shown;
        let known: Vec<(f64, f64)> = self.context[start..]
            .iter()
            .chain(self.truth.iter().flatten())
            .enumerate()
            .map(|(i, &v)| ((start + i) as f64, v as f64))
            .collect();
        let predicted: Vec<(f64, f64)> = std::iter::once(known[shown - 1])
            .chain(
                self.predicted
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| ((self.context.len() + i) as f64, v as f64)),
            )
            .collect();
        let end = (self.context.len() + horizon) as f64;
        let caption = format!("{horizon}-step autoregressive forecast");
        let labels = Labels {
            caption: &caption,
            x: "step",
            y: "value",
        };
        let truth = if self.truth.is_some() {
            "truth"
        } else {
            "input"
        };
        let curves = [
            Curve {
                name: truth.to_owned(),
                color: BLUE,
                points: known,
            },
            Curve {
                name: "forecast".to_owned(),
                color: RED,
                points: predicted,
            },
        ];
        line_chart(path, 800, &labels, start as f64..end, &curves)
    }
}

fn errors(predicted: &[f32], truth: &[f32]) -> (f64, f64) {
    let n = predicted.len().max(1) as f64;
    let (sq, abs) = predicted
        .iter()
        .zip(truth)
        .fold((0.0, 0.0), |(sq, abs), (&p, &t)| {
            let d = (p - t) as f64;
            (sq + d * d, abs + d.abs())
        });
    (sq / n, abs / n)
}

/// Forecasts `steps` values after `values` (data units). With `hold_out`, the last `steps`
/// values are kept from the model and become the truth the forecast is scored against.
///
/// A model of the last step reads the last `window` values (its predictions included) and
/// gives the next one, as in training. A stateful sequence model reads the whole context from
/// a zero state, then one predicted value per step with its state carried; a stateless one
/// re-reads the last `window` values from zeros each step.
pub fn forecast<B: Backend>(
    run: &SeriesRun<B>,
    values: &[f32],
    steps: usize,
    hold_out: bool,
    device: &B::Device,
) -> Result<Forecast, TrainError> {
    if steps == 0 {
        return Err(TrainError::BadOption("--steps must be at least 1".into()));
    }
    let (context, truth) = if hold_out {
        let cut = values.len().saturating_sub(steps);
        (&values[..cut], Some(values[cut..].to_vec()))
    } else {
        (values, None)
    };
    let window = run.info.window;
    let needed = match run.info.target {
        SeriesTarget::Last => window,
        SeriesTarget::Sequence => 1,
    };
    if context.len() < needed {
        return Err(TrainError::BadOption(format!(
            "the input has {} values{}; this model needs at least {needed} before it forecasts",
            values.len(),
            if hold_out {
                format!(
                    " and {steps} are held out as truth (pass --beyond to forecast past the end)"
                )
            } else {
                String::new()
            }
        )));
    }
    let scale = run.info.standardizer;
    let mut history = scale.apply(context);
    let carried = run.info.target == SeriesTarget::Sequence && run.config.data.stateful;
    let last_output = |inputs: &[f32], state: Option<RecurrentState<B>>| {
        let t = inputs.len();
        let x = Tensor::<B, 3>::from_data(TensorData::new(inputs.to_vec(), [1, t, 1]), device);
        let (y, state) = run.model.forward(x, None, state);
        let v = y
            .slice(s![0..1, t - 1..t, 0..1])
            .into_scalar()
            .elem::<f32>();
        (v, state)
    };
    let mut predicted = Vec::with_capacity(steps);
    if carried {
        let (mut next, mut state) = last_output(&history, None);
        predicted.push(next);
        while predicted.len() < steps {
            (next, state) = last_output(&[next], Some(state));
            predicted.push(next);
        }
    } else {
        for _ in 0..steps {
            let from = history.len().saturating_sub(window);
            let (next, _) = last_output(&history[from..], None);
            history.push(next);
            predicted.push(next);
        }
    }
    Ok(Forecast {
        context: context.to_vec(),
        predicted: predicted.into_iter().map(|v| scale.invert(v)).collect(),
        truth,
    })
}
