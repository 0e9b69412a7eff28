//! Time series: a CSV column or generated sine waves, cut into windows for regression.
//!
//! - [`last_step_windows`]: `(x[i..i+w], x[i+w])`, for models whose loss is on the last step.
//! - [`shifted_windows`]: `(x[i..i+w], x[i+1..i+w+1])`, per-step (seq2seq) regression.
//! - [`consecutive_windows`]: each long sequence cut into consecutive windows that a model
//!   reads in order, carrying its state from one window to the next; only the first window of
//!   a sequence starts from a zero state.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::batch::{length_mask, pad_rows};
use crate::{read_utf8, DataError};

/// What to do with empty or `NA` cells of a CSV column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// A missing value is an error naming its line.
    #[default]
    Error,
    /// Fill gaps linearly between the neighbouring values (the nearest value at the ends).
    Interpolate,
}

/// Reads the numeric column `column` (by header name) of a CSV file with a header row.
pub fn read_csv_column(path: &Path, column: &str, missing: Missing) -> Result<Vec<f32>, DataError> {
    let text = read_utf8(path)?;
    let csv_error = |e: csv::Error| DataError::Csv {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_error)?.clone();
    let index =
        headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DataError::NoSuchColumn {
                path: path.to_owned(),
                column: column.to_owned(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })?;
    let mut values: Vec<Option<f32>> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cell = record.get(index).unwrap_or("");
        if cell.is_empty() || cell.eq_ignore_ascii_case("na") || cell.eq_ignore_ascii_case("nan") {
            if missing == Missing::Error {
                return Err(DataError::MissingValue {
                    path: path.to_owned(),
                    line,
                    column: column.to_owned(),
                });
            }
            values.push(None);
            continue;
        }
        let value: f32 = cell.parse().map_err(|_| DataError::NotNumeric {
            path: path.to_owned(),
            line,
            column: column.to_owned(),
            value: cell.to_owned(),
        })?;
        if !value.is_finite() {
            return Err(DataError::NotNumeric {
                path: path.to_owned(),
                line,
                column: column.to_owned(),
                value: cell.to_owned(),
            });
        }
        values.push(Some(value));
    }
    if values.iter().all(Option::is_none) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(interpolate(&values))
}

/// Fills `None`s linearly between known neighbours, and with the nearest known value at the
/// ends. At least one value must be known.
pub fn interpolate(values: &[Option<f32>]) -> Vec<f32> {
    let known: Vec<(usize, f32)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let mut out = Vec::with_capacity(values.len());
    let mut next = 0;
    for i in 0..values.len() {
        while next < known.len() && known[next].0 < i {
            next += 1;
        }
        let value = match (next.checked_sub(1).map(|p| known[p]), known.get(next)) {
            (_, Some(&(j, v))) if j == i => v,
            (Some((a, va)), Some(&(b, vb))) => va + (vb - va) * (i - a) as f32 / (b - a) as f32,
            (Some((_, v)), None) | (None, Some(&(_, v))) => v,
            (None, None) => unreachable!("at least one value is known"),
        };
        out.push(value);
    }
    out
}

/// Generated noisy sine waves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SineSpec {
    /// Number of sequences.
    pub sequences: usize,
    /// Values per sequence.
    pub length: usize,
    /// Shortest period, in steps; each sequence draws its period in `[min, max]`.
    pub min_period: f32,
    /// Longest period, in steps.
    pub max_period: f32,
    /// Standard deviation of the added Gaussian noise.
    pub noise: f32,
    /// Seed of the phases, periods and noise.
    pub seed: u64,
}

/// `sin(2π t / period + phase) + noise` for each sequence, with a random period and phase.
pub fn sine_waves(spec: &SineSpec) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    (0..spec.sequences)
        .map(|_| {
            let period =
                spec.min_period + (spec.max_period - spec.min_period) * rng.random::<f32>();
            let phase = std::f32::consts::TAU * rng.random::<f32>();
            (0..spec.length)
                .map(|t| {
                    let clean = (std::f32::consts::TAU * t as f32 / period + phase).sin();
                    clean + spec.noise * gaussian(&mut rng)
                })
                .collect()
        })
        .collect()
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Standardisation `(x - mean) / std`, fitted on training values and saved with a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of the fitted values.
    pub mean: f32,
    /// Standard deviation of the fitted values (1 when they are constant).
    pub std: f32,
}

impl Standardizer {
    /// Fits mean and standard deviation on `values` (not empty).
    pub fn fit(values: &[f32]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        Self {
            mean: mean as f32,
            std: std as f32,
        }
    }

    /// `(v - mean) / std` for every value.
    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        values.iter().map(|v| (v - self.mean) / self.std).collect()
    }

    /// The original scale of a standardised value.
    pub fn invert(&self, value: f32) -> f32 {
        value * self.std + self.mean
    }
}

/// One regression example.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Input values, one feature per step.
    pub input: Vec<f32>,
    /// Target values: one (last-step regression) or one per input step (seq2seq).
    pub target: Vec<f32>,
    /// Whether the model's state starts from zeros here (always true, except for the windows
    /// after the first of a [`consecutive_windows`] sequence).
    pub first: bool,
}

fn check_window(len: usize, window: usize, what: &str) -> Result<(), DataError> {
    if window == 0 {
        return Err(DataError::BadOption(format!(
            "{what}: the window must be at least 1 step"
        )));
    }
    if window >= len {
        return Err(DataError::WindowTooLong {
            what: what.to_owned(),
            len,
            window,
        });
    }
    Ok(())
}

/// Every `(x[i..i+window], [x[i+window]])`: predict the next value from a window.
pub fn last_step_windows(
    values: &[f32],
    window: usize,
    what: &str,
) -> Result<Vec<Window>, DataError> {
    sliding_windows(values, window, what, |i| vec![values[i + window]])
}

/// Every `(x[i..i+window], x[i+1..i+window+1])`: predict each next value (seq2seq).
pub fn shifted_windows(
    values: &[f32],
    window: usize,
    what: &str,
) -> Result<Vec<Window>, DataError> {
    sliding_windows(values, window, what, |i| {
        values[i + 1..i + window + 1].to_vec()
    })
}

/// Every window `x[i..i+window]` that leaves a value after it, with `target(i)`.
fn sliding_windows(
    values: &[f32],
    window: usize,
    what: &str,
    target: impl Fn(usize) -> Vec<f32>,
) -> Result<Vec<Window>, DataError> {
    check_window(values.len(), window, what)?;
    Ok((0..values.len() - window)
        .map(|i| Window {
            input: values[i..i + window].to_vec(),
            target: target(i),
            first: true,
        })
        .collect())
}

/// Cuts one long sequence into consecutive windows of `window` steps (the last may be
/// shorter), input `x[k·w .. (k+1)·w]`, target shifted by one. Only window 0 is `first`: a
/// model carries its state across the others.
pub fn consecutive_windows(
    values: &[f32],
    window: usize,
    what: &str,
) -> Result<Vec<Window>, DataError> {
    check_window(values.len(), window, what)?;
    Ok((0..values.len() - 1)
        .step_by(window)
        .map(|start| {
            let end = (start + window).min(values.len() - 1);
            Window {
                input: values[start..end].to_vec(),
                target: values[start + 1..end + 1].to_vec(),
                first: start == 0,
            }
        })
        .collect())
}

/// Batches of consecutive windows: sequences are grouped `batch_size` at a time, and batch
/// `k` of a group holds window `k` of every sequence in it, so row `b` of each batch continues
/// row `b` of the previous one. Sequences with as many windows go together; serve the batches
/// in order.
pub fn consecutive_batches(sequences: Vec<Vec<Window>>, batch_size: usize) -> Vec<Vec<Window>> {
    let mut sequences = sequences;
    sequences.sort_by_key(Vec::len);
    let mut batches = Vec::new();
    let mut rest = sequences.as_slice();
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|s| s.len() == first.len()).count();
        let group = &rest[..same.min(batch_size.max(1))];
        for k in 0..first.len() {
            batches.push(group.iter().map(|s| s[k].clone()).collect());
        }
        rest = &rest[group.len()..];
    }
    batches
}

/// A padded batch of regression windows.
#[derive(Debug, Clone)]
pub struct SeriesBatch<B: Backend> {
    /// Inputs `[batch, steps, 1]`, zero-padded.
    pub inputs: Tensor<B, 3>,
    /// Targets `[batch, target_steps, 1]` (`target_steps` is 1 for last-step regression),
    /// padded with NaN, which no real value equals: a loss that forgets the mask turns NaN and
    /// stops the run instead of learning from padding.
    pub targets: Tensor<B, 3>,
    /// `[batch, target_steps]`, true at real targets.
    pub mask: Tensor<B, 2, Bool>,
    /// Valid input steps per row.
    pub lengths: Vec<usize>,
    /// Whether the state starts from zeros (true unless every row continues a sequence).
    pub first: bool,
}

/// Pads windows into a [`SeriesBatch`].
#[derive(Debug, Clone, Default)]
pub struct SeriesBatcher;

impl<B: Backend> Batcher<B, Window, SeriesBatch<B>> for SeriesBatcher {
    fn batch(&self, items: Vec<Window>, device: &B::Device) -> SeriesBatch<B> {
        let rows = items.len();
        let lengths: Vec<usize> = items.iter().map(|w| w.input.len()).collect();
        let target_lengths: Vec<usize> = items.iter().map(|w| w.target.len()).collect();
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let target_steps = target_lengths.iter().copied().max().unwrap_or(0);
        let inputs: Vec<&[f32]> = items.iter().map(|w| w.input.as_slice()).collect();
        let targets: Vec<&[f32]> = items.iter().map(|w| w.target.as_slice()).collect();
        let float = |data: Vec<f32>, steps: usize| {
            Tensor::from_data(TensorData::new(data, [rows, steps, 1]), device)
        };
        SeriesBatch {
            inputs: float(pad_rows(&inputs, steps, 0.0), steps),
            targets: float(pad_rows(&targets, target_steps, f32::NAN), target_steps),
            mask: length_mask(&target_lengths, target_steps, device),
            lengths,
            first: items.iter().any(|w| w.first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_pair_inputs_with_the_next_values() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let last = last_step_windows(&x, 3, "x").unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(
            (last[2].input.clone(), last[2].target.clone()),
            (vec![2., 3., 4.], vec![5.])
        );
        let shifted = shifted_windows(&x, 4, "x").unwrap();
        assert_eq!(shifted[1].target, [2., 3., 4., 5.]);
        let err = last_step_windows(&x, 6, "sunspots.csv").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("sunspots.csv has 6 values, too few for a window of 6"));
    }

    #[test]
    fn consecutive_windows_continue_each_other() {
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let w = consecutive_windows(&x, 3, "x").unwrap();
        let firsts: Vec<bool> = w.iter().map(|w| w.first).collect();
        assert_eq!(firsts, [true, false, false]);
        assert_eq!(w[1].input, [3., 4., 5.]);
        assert_eq!(w[2].input, [6.]);
        assert_eq!(w[2].target, [7.]);
        let batches = consecutive_batches(vec![w.clone(), w.clone(), w], 2);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 1, 1, 1]
        );
        assert!(batches[0][0].first && !batches[1][1].first);
    }

    #[test]
    fn padded_targets_are_nan_and_masked() {
        use burn::backend::NdArray;
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let windows = consecutive_windows(&x, 3, "x").unwrap();
        let batch: SeriesBatch<NdArray> = SeriesBatcher.batch(
            vec![windows[0].clone(), windows[2].clone()],
            &Default::default(),
        );
        let targets: Vec<f32> = batch.targets.into_data().iter::<f32>().collect();
        let mask: Vec<bool> = batch.mask.into_data().iter::<bool>().collect();
        assert_eq!(mask, [true, true, true, true, false, false]);
        assert_eq!(&targets[..4], [1.0, 2.0, 3.0, 7.0]);
        assert!(targets[4].is_nan() && targets[5].is_nan());
        assert_eq!(batch.lengths, [3, 1]);
    }

    #[test]
    fn interpolation_fills_gaps_and_ends() {
        let v = interpolate(&[None, Some(1.0), None, None, Some(4.0), None]);
        assert_eq!(v, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn csv_columns_are_read_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, "\"YEAR\",\"X\"\n1700,5\n1701,\n1702,7\n").unwrap();
        let err = read_csv_column(&path, "X", Missing::Error).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 3, column \"X\": the value is missing"),
            "{err}"
        );
        assert_eq!(
            read_csv_column(&path, "X", Missing::Interpolate).unwrap(),
            [5.0, 6.0, 7.0]
        );
        let err = read_csv_column(&path, "Y", Missing::Error).unwrap_err();
        assert!(
            err.to_string()
                .contains("no column \"Y\"; its columns are YEAR, X"),
            "{err}"
        );
        std::fs::write(&path, "a,b\n1,x\n").unwrap();
        let err = read_csv_column(&path, "b", Missing::Error).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2, column \"b\": \"x\" is not a number"),
            "{err}"
        );
    }

    #[test]
    fn sine_waves_are_seeded_and_standardised() {
        let spec = SineSpec {
            sequences: 2,
            length: 50,
            min_period: 10.0,
            max_period: 20.0,
            noise: 0.05,
            seed: 4,
        };
        let a = sine_waves(&spec);
        assert_eq!(a, sine_waves(&spec));
        assert_eq!((a.len(), a[0].len()), (2, 50));
        let s = Standardizer::fit(&a[0]);
        let z = s.apply(&a[0]);
        let mean: f32 = z.iter().sum::<f32>() / 50.0;
        assert!(mean.abs() < 1e-5);
        assert!((s.invert(z[3]) - a[0][3]).abs() < 1e-5);
    }
}
