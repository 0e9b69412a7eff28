//! Loss curves of a run as SVG, redrawn after every epoch, so that overfitting shows without
//! the TUI.

use std::ops::Range;
use std::path::Path;

use plotters::prelude::*;

use crate::checkpoint::EpochRecord;

/// File name of a run's loss curves.
pub const LOSS_SVG: &str = "loss.svg";

/// Draws training and validation loss per epoch into the SVG file `path`.
pub fn write_loss_curves(path: &Path, records: &[EpochRecord]) -> Result<(), String> {
    let curve = |name: &str, color: RGBColor, pick: fn(&EpochRecord) -> f64| Curve {
        name: name.to_owned(),
        color,
        points: records
            .iter()
            .map(|r| (r.epoch as f64, pick(r)))
            .filter(|p| p.1.is_finite())
            .collect(),
    };
    let last = records.last().map_or(1, |r| r.epoch).max(2) as f64;
    let labels = Labels {
        caption: "loss per token (nats)",
        x: "epoch",
        y: "loss",
    };
    line_chart(
        path,
        720,
        &labels,
        1.0..last,
        &[
            curve("train", BLUE, |r| r.train_loss),
            curve("valid", RED, |r| r.valid_loss),
        ],
    )
}

/// One named curve of a [`line_chart`].
pub(crate) struct Curve {
    /// Its legend entry.
    pub name: String,
    /// Its colour.
    pub color: RGBColor,
    /// Its `(x, y)` points, finite.
    pub points: Vec<(f64, f64)>,
}

/// The texts of a [`line_chart`].
pub(crate) struct Labels<'a> {
    /// The title.
    pub caption: &'a str,
    /// The x axis.
    pub x: &'a str,
    /// The y axis.
    pub y: &'a str,
}

/// Draws `curves`, with a legend, into the SVG file `path`, `width` × 420 pixels, over
/// `x_range`, with the y axis fitted to the points plus 5%. Writes nothing when there are no
/// points.
pub(crate) fn line_chart(
    path: &Path,
    width: u32,
    labels: &Labels,
    x_range: Range<f64>,
    curves: &[Curve],
) -> Result<(), String> {
    let ys = || curves.iter().flat_map(|c| c.points.iter().map(|p| p.1));
    if ys().next().is_none() {
        return Ok(());
    }
    let lo = ys().fold(f64::INFINITY, f64::min);
    let hi = ys().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(labels.caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(|e| err(&e))?;
    for curve in curves {
        let color = curve.color;
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(curve.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOSS_SVG);
        let records: Vec<EpochRecord> = (1..=3)
            .map(|e| EpochRecord::new(e, 3.0 / e as f64, 2.5 / e as f64 + 0.2, 1.0))
            .collect();
        write_loss_curves(&path, &records).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.contains("train") && svg.contains("valid") && svg.contains("epoch"));
        assert!(svg.matches("<polyline").count() >= 2);
    }
}
