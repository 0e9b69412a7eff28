//! A plain-text renderer for when stdout is not a terminal (CI, pipes) or with `--no-tui`:
//! one line per epoch and split instead of the TUI dashboard.

use std::collections::{BTreeMap, HashMap};

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

/// Prints each split's epoch metrics once the epoch's last batch is done.
#[derive(Default)]
pub struct PlainRenderer {
    names: HashMap<MetricId, String>,
    train: BTreeMap<String, String>,
    valid: BTreeMap<String, String>,
}

impl PlainRenderer {
    /// The metric's name and its epoch figure.
    fn epoch_entry(&self, state: MetricState) -> (String, String) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        // Entries read "epoch <running> - batch <current>": keep the epoch figure.
        let formatted = entry.serialized_entry.formatted;
        let epoch_value = formatted
            .split(" - batch")
            .next()
            .unwrap_or(&formatted)
            .trim_start_matches("epoch ")
            .to_owned();
        (name, epoch_value)
    }

    fn print(split: &str, item: &TrainingProgress, metrics: &BTreeMap<String, String>) {
        let done = item
            .progress
            .as_ref()
            .is_some_and(|p| p.items_processed >= p.items_total);
        if done {
            let line = metrics
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(" | ");
            println!(
                "epoch {}/{} {split}: {line}",
                item.global_progress.items_processed, item.global_progress.items_total
            );
        }
    }
}

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, state: MetricState) {
        let (name, value) = self.epoch_entry(state);
        self.train.insert(name, value);
    }

    fn update_valid(&mut self, state: MetricState) {
        let (name, value) = self.epoch_entry(state);
        self.valid.insert(name, value);
    }

    fn render_train(&mut self, item: TrainingProgress, _progress: Vec<ProgressType>) {
        Self::print("train", &item, &self.train);
    }

    fn render_valid(&mut self, item: TrainingProgress, _progress: Vec<ProgressType>) {
        Self::print("valid", &item, &self.valid);
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn render_test(&mut self, _item: EvaluationProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
