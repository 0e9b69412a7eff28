//! The divergence guard: a run whose training loss stays far above what an untrained model
//! scores has diverged, and stops with one error instead of training on and calling its
//! least-bad epoch the best.
//!
//! The reference is the larger of the task's baseline (the unigram model, the mean predictor,
//! the class prior) and the loss of the untrained model's guess (a uniform distribution over the
//! vocabulary or the classes; the training mean, 0 in standardised units, for series). A run
//! has diverged when its training loss stays above [`FACTOR`] × that reference for
//! [`WINDOW_STEPS`] steps in a row, or when an epoch ends above it (its mean training loss, or
//! its last step and its validation loss): that epoch is never checkpointed, so `best.mpk` is
//! never a diverged model.

/// How many times the reference a loss must exceed to count as diverged.
pub const FACTOR: f64 = 2.0;

/// Training steps in a row above the limit that end a run.
pub const WINDOW_STEPS: usize = 200;

/// What a run's loss is measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// What it is, as the error names it: "the unigram baseline", "a uniform guess".
    pub name: String,
    /// Its loss, in the run's loss units.
    pub loss: f64,
}

impl Reference {
    /// The larger of the task's `baseline` and the loss of an untrained model's `guess`.
    pub fn worse_of(baseline: Reference, guess: Reference) -> Self {
        if guess.loss > baseline.loss {
            guess
        } else {
            baseline
        }
    }
}

/// Counts training steps above the limit and judges each finished epoch (see the module docs).
#[derive(Debug, Clone)]
pub struct DivergenceGuard {
    reference: Reference,
    limit: f64,
    above: usize,
    last: f64,
}

impl DivergenceGuard {
    /// A guard whose limit is [`FACTOR`] × `reference.loss`.
    pub fn new(reference: Reference) -> Self {
        let limit = FACTOR * reference.loss;
        Self {
            reference,
            limit,
            above: 0,
            last: f64::NAN,
        }
    }

    /// The loss above which a step counts as diverged.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// Records one training step's loss; says how the run diverged once [`WINDOW_STEPS`] steps
    /// in a row were above the limit.
    pub fn on_step(&mut self, loss: f64) -> Option<String> {
        self.last = loss;
        self.above = if self.over(loss) { self.above + 1 } else { 0 };
        (self.above >= WINDOW_STEPS).then(|| {
            format!(
                "the training loss stayed above {} for {} steps (now {loss:.4e})",
                self.limit_words(),
                self.above
            )
        })
    }

    /// Judges a finished epoch by its mean training loss, its last step and its validation
    /// loss; says how it diverged, if it did.
    pub fn on_epoch(&self, train_mean: f64, valid: f64) -> Option<String> {
        if self.over(train_mean) {
            Some(format!(
                "the epoch's mean training loss {train_mean:.4e} is above {}",
                self.limit_words()
            ))
        } else if self.over(self.last) && self.over(valid) {
            Some(format!(
                "the last training loss {:.4e} and the validation loss {valid:.4e} are above {}",
                self.last,
                self.limit_words()
            ))
        } else {
            None
        }
    }

    /// Above the limit, or not a number.
    fn over(&self, loss: f64) -> bool {
        loss.is_nan() || loss > self.limit
    }

    fn limit_words(&self) -> String {
        format!(
            "{:.4} ({FACTOR} × {} {:.4})",
            self.limit, self.reference.name, self.reference.loss
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> DivergenceGuard {
        DivergenceGuard::new(Reference::worse_of(
            Reference {
                name: "the unigram baseline".into(),
                loss: 3.0,
            },
            Reference {
                name: "a uniform guess".into(),
                loss: 2.5,
            },
        ))
    }

    #[test]
    fn the_limit_is_twice_the_worse_reference() {
        assert_eq!(guard().limit(), 6.0);
        let uniform = Reference::worse_of(
            Reference {
                name: "the class prior".into(),
                loss: 0.2,
            },
            Reference {
                name: "a uniform guess".into(),
                loss: 0.69,
            },
        );
        assert_eq!(DivergenceGuard::new(uniform).limit(), 1.38);
    }

    #[test]
    fn only_a_full_window_of_steps_above_the_limit_stops_a_run() {
        let mut g = guard();
        for _ in 0..WINDOW_STEPS - 1 {
            assert_eq!(g.on_step(1e6), None);
        }
        // One step back under the limit starts the count again.
        assert_eq!(g.on_step(5.9), None);
        for _ in 0..WINDOW_STEPS - 1 {
            assert_eq!(g.on_step(6.1), None);
        }
        let why = g.on_step(6.1).expect("a full window diverges");
        assert!(
            why.contains("200 steps") && why.contains("2 × the unigram baseline 3.0000"),
            "{why}"
        );
    }

    #[test]
    fn an_epoch_above_the_limit_has_diverged_and_one_merely_overfit_has_not() {
        let mut g = guard();
        g.on_step(2.0);
        assert_eq!(g.on_epoch(2.5, 3.5), None);
        // Validation far above the limit while training is fine: overfitting, not divergence.
        assert_eq!(g.on_epoch(2.5, 9.0), None);
        assert!(g.on_epoch(7.0, 3.0).is_some());
        g.on_step(8.0);
        assert!(g.on_epoch(5.0, 9.0).is_some());
        assert_eq!(g.on_epoch(5.0, 4.0), None);
    }

    #[test]
    fn nan_counts_as_above_the_limit() {
        let mut g = guard();
        assert!(g.on_epoch(f64::NAN, 1.0).is_some());
        for _ in 0..WINDOW_STEPS - 1 {
            assert_eq!(g.on_step(f64::NAN), None);
        }
        assert!(g.on_step(f64::NAN).is_some());
    }
}
