//! Loss curves of a run as SVG, redrawn after every epoch, so that overfitting shows without
//! the TUI.

use std::path::Path;

use plotters::prelude::*;

use crate::checkpoint::EpochRecord;

/// File name of a run's loss curves.
pub const LOSS_SVG: &str = "loss.svg";

/// Draws training and validation loss per epoch into the SVG file `path`.
pub fn write_loss_curves(path: &Path, records: &[EpochRecord]) -> Result<(), String> {
    let finite = |v: f64| v.is_finite().then_some(v);
    let values: Vec<f64> = records
        .iter()
        .flat_map(|r| [r.train_loss, r.valid_loss])
        .filter_map(finite)
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let last = records.last().map_or(1, |r| r.epoch).max(2) as f64;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss per token (nats)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1.0..last, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(&e))?;
    for (name, color, pick) in [
        (
            "train",
            BLUE,
            (|r: &EpochRecord| r.train_loss) as fn(&EpochRecord) -> f64,
        ),
        ("valid", RED, |r: &EpochRecord| r.valid_loss),
    ] {
        let points = records
            .iter()
            .filter_map(|r| finite(pick(r)).map(|v| (r.epoch as f64, v)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
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
