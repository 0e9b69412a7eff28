//! The epoch loop: burn-train's single-device loop, plus exact token-weighted validation loss,
//! ember's checkpoint policy, a stop on a non-finite or diverged loss, and early stopping.
//!
//! burn-train's own checkpointer decides on metrics that its loggers may not have finished
//! writing (a race that can pick the wrong epoch), and names files only by epoch. This loop
//! computes the validation loss itself from every batch and hands it to [`CheckpointKeeper`].
//! It also carries recurrent state across batches for models that want it ([`CarryStep`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use burn::train::{
    EventProcessorTraining, InferenceStep, Learner, LearnerEvent, LearnerModelRecord,
    LearnerOptimizerRecord, LearnerSchedulerRecord, LearningComponentsTypes,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainOutput,
    TrainStep, TrainingComponents, TrainingItem, TrainingModel, ValidLoader,
};

use crate::checkpoint::{CheckpointKeeper, EpochRecord};
use crate::config::Task;
use crate::divergence::DivergenceGuard;
use crate::model::{recorder, RecordFormat};
use crate::output::{LossAccumulator, TokenLossOutput};
use crate::TrainError;

/// A model whose weights the keeper can write as a checkpoint.
pub trait SaveModel {
    /// Writes the weights to `path` in `format`.
    fn save_model(&self, path: &std::path::Path, format: RecordFormat) -> Result<(), String>;
}

/// One step of a model that may carry recurrent state from one batch to the next (stateful
/// truncated BPTT). Stateless models ignore `carry` and return `None`.
///
/// burn-train's `TrainStep::step(&self, batch)` has no way to pass state between batches, so
/// the epoch loop calls this instead; it starts each pass (training and validation) with
/// `None`.
pub trait CarryStep<I, O> {
    /// The state carried between batches.
    type Carry;

    /// Runs `input` from `carry` (zeros when `None`) and returns the output and the state for
    /// the next batch, cut from the autodiff graph.
    fn step_carry(&self, input: I, carry: Option<Self::Carry>) -> (O, Option<Self::Carry>);
}

/// Keeps only the latest epoch's learner state (model, optimiser, schedule) for `--resume`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatestOnly;

impl CheckpointingStrategy for LatestOnly {
    fn checkpointing(&mut self, epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        let mut actions = vec![CheckpointingAction::Save];
        if epoch > 1 {
            actions.push(CheckpointingAction::Delete(epoch - 1));
        }
        actions
    }
}

/// Where a resumed run picks up.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    /// The last completed epoch, whose learner state is restored.
    pub epoch: usize,
    /// Epochs since the best one, for early stopping.
    pub since_best: usize,
    /// Folder of the learner state files (`model-N.mpk`, `optim-N.mpk`, `scheduler-N.mpk`).
    pub state_dir: PathBuf,
}

/// What the epoch loop leaves behind once `launch` returns.
#[derive(Debug, Default)]
pub struct LoopOutcome {
    /// Every completed epoch.
    pub epochs: Vec<EpochRecord>,
    /// Why training stopped early, if it failed.
    pub error: Option<TrainError>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// The custom training strategy (see the module docs).
pub struct EpochLoop<B: AutodiffBackend> {
    device: B::Device,
    task: Task,
    keeper: Mutex<CheckpointKeeper>,
    patience: Option<usize>,
    resume: Option<ResumeFrom>,
    guard: Mutex<DivergenceGuard>,
    learning_rate: f64,
    outcome: Mutex<LoopOutcome>,
}

impl<B: AutodiffBackend> EpochLoop<B> {
    /// A loop on `device` for `task` that checkpoints through `keeper`, stops after
    /// `patience` epochs without a better validation loss (never, with `None`), and, with
    /// `resume`, continues a run from its last epoch's learner state. `guard` stops a diverged
    /// run, whose error names the configured `learning_rate`.
    pub fn new(
        device: B::Device,
        task: Task,
        keeper: CheckpointKeeper,
        patience: Option<usize>,
        resume: Option<ResumeFrom>,
        (guard, learning_rate): (DivergenceGuard, f64),
    ) -> Self {
        Self {
            device,
            task,
            keeper: Mutex::new(keeper),
            patience,
            resume,
            guard: Mutex::new(guard),
            learning_rate,
            outcome: Mutex::new(LoopOutcome::default()),
        }
    }

    /// Takes what the loop recorded.
    pub fn take_outcome(&self) -> LoopOutcome {
        std::mem::take(&mut *self.outcome.lock().expect("outcome lock"))
    }

    fn kept(&self) -> String {
        match self.keeper.lock().expect("keeper lock").best() {
            Some(b) => format!(
                "best.mpk (epoch {}, valid loss {:.4}) is kept",
                b.epoch, b.valid_loss
            ),
            None => "no checkpoint was written".to_owned(),
        }
    }

    fn diverged(&self, epoch: usize, why: String) -> TrainError {
        TrainError::Diverged {
            epoch,
            why,
            learning_rate: self.learning_rate,
            kept: self.kept(),
        }
    }

    fn fail(&self, error: TrainError) {
        self.outcome.lock().expect("outcome lock").error = Some(error);
    }

    fn non_finite(
        &self,
        split: &'static str,
        value: f64,
        epoch: usize,
        batch: usize,
    ) -> TrainError {
        TrainError::NonFiniteLoss {
            split,
            value,
            epoch,
            batch,
            kept: self.kept(),
        }
    }
}

/// Loads the learner state of `epoch` from `dir` into `learner`.
fn restore<LC: LearningComponentsTypes>(
    learner: &mut Learner<LC>,
    dir: &std::path::Path,
    epoch: usize,
    device: &burn::tensor::Device<LC::Backend>,
) -> Result<(), TrainError> {
    let path = |part: &str| dir.join(format!("{part}-{epoch}.mpk"));
    let bad = |part: &str| {
        let path = path(part);
        move |e: burn::record::RecorderError| TrainError::BadCheckpoint {
            path,
            reason: format!("{e} (cannot resume from it; train again without --resume)"),
        }
    };
    let model: LearnerModelRecord<LC> = recorder()
        .load(path("model"), device)
        .map_err(bad("model"))?;
    let optim: LearnerOptimizerRecord<LC> = recorder()
        .load(path("optim"), device)
        .map_err(bad("optim"))?;
    let schedule: LearnerSchedulerRecord<LC> = recorder()
        .load(path("scheduler"), device)
        .map_err(bad("scheduler"))?;
    learner.load_model(model);
    learner.load_optim(optim);
    learner.load_scheduler(schedule);
    Ok(())
}

type InnerBackend<LC> = <<LC as LearningComponentsTypes>::Backend as AutodiffBackend>::InnerBackend;

impl<LC> SupervisedLearningStrategy<LC> for EpochLoop<LC::Backend>
where
    LC: LearningComponentsTypes,
    LC::TrainingModel: TrainStep<Output = TokenLossOutput<LC::Backend>>
        + SaveModel
        + CarryStep<
            <LC::TrainingModel as TrainStep>::Input,
            TrainOutput<TokenLossOutput<LC::Backend>>,
        >,
    LC::InferenceModel: InferenceStep<Output = TokenLossOutput<InnerBackend<LC>>>
        + CarryStep<<LC::InferenceModel as InferenceStep>::Input, TokenLossOutput<InnerBackend<LC>>>,
{
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        mut learner: Learner<LC>,
        loader_train: TrainLoader<LC>,
        loader_valid: ValidLoader<LC>,
        starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let loader_train = loader_train.to_device(&self.device);
        let loader_valid = loader_valid.to_device(&self.device);
        let mut processor = components.event_processor;
        let interrupter = components.interrupter;
        let mut checkpointer = components.checkpointer;
        let event_store = components.event_store;
        let mut since_best = 0;
        let mut first_epoch = starting_epoch;
        if let Some(resume) = &self.resume {
            if let Err(e) = restore(&mut learner, &resume.state_dir, resume.epoch, &self.device) {
                self.outcome.lock().expect("outcome lock").error = Some(e);
                return (learner.model(), processor);
            }
            first_epoch = resume.epoch + 1;
            since_best = resume.since_best;
            // Each pass over a shuffling loader draws the next order: replay the finished
            // epochs' draws so the resumed epochs see the data as an uninterrupted run would.
            for _ in 1..first_epoch {
                drop(loader_train.iter());
            }
            tracing::info!(
                "resumed after epoch {} (model, optimiser and schedule restored)",
                resume.epoch
            );
        }
        learner.fork(&self.device);

        'epochs: for epoch in first_epoch..=components.num_epochs {
            let started = Instant::now();
            let global = Progress::new(epoch, components.num_epochs);

            let mut train = LossAccumulator::default();
            let mut batches = loader_train.iter();
            let mut iteration = 0;
            let mut carry = None;
            while let Some(batch) = batches.next() {
                iteration += 1;
                learner.lr_step();
                let progress = batches.progress();
                let step_started = Instant::now();
                let (mut out, next) = learner.model().step_carry(batch, carry.take());
                carry = next;
                let figures = out.item.host();
                if !figures.mean_nll.is_finite() {
                    self.fail(self.non_finite("train", figures.mean_nll, epoch, iteration));
                    break 'epochs;
                }
                let diverged = self
                    .guard
                    .lock()
                    .expect("guard lock")
                    .on_step(figures.mean_nll);
                if let Some(why) = diverged {
                    self.fail(self.diverged(epoch, why));
                    break 'epochs;
                }
                train.add_item(&figures);
                learner.optimizer_step(out.grads);
                out.item.seconds = Some(step_started.elapsed().as_secs_f64());
                let item = TrainingItem::new(
                    out.item,
                    progress,
                    global.clone(),
                    Some(iteration),
                    Some(learner.lr_current()),
                );
                processor.process_train(LearnerEvent::ProcessedItem(item));
                if interrupter.should_stop() {
                    break;
                }
            }
            processor.process_train(LearnerEvent::EndEpoch(epoch));
            let train_seconds = started.elapsed().as_secs_f64();
            if interrupter.should_stop() {
                break;
            }

            let model = learner.model().valid();
            let mut valid = LossAccumulator::default();
            let mut batches = loader_valid.iter();
            let mut iteration = 0;
            let mut carry = None;
            while let Some(batch) = batches.next() {
                iteration += 1;
                let progress = batches.progress();
                let (mut out, next) = model.step_carry(batch, carry.take());
                carry = next;
                let figures = out.host();
                if !figures.mean_nll.is_finite() {
                    self.fail(self.non_finite("valid", figures.mean_nll, epoch, iteration));
                    break 'epochs;
                }
                valid.add_item(&figures);
                let item = TrainingItem::new(out, progress, global.clone(), Some(iteration), None);
                processor.process_valid(LearnerEvent::ProcessedItem(item));
            }
            processor.process_valid(LearnerEvent::EndEpoch(epoch));

            let mut record = EpochRecord::of_task(
                self.task,
                epoch,
                &train,
                &valid,
                started.elapsed().as_secs_f64(),
            );
            record.train_tokens_per_second = train.tokens() as f64 / train_seconds;
            let diverged = self
                .guard
                .lock()
                .expect("guard lock")
                .on_epoch(record.train_loss, record.valid_loss);
            if let Some(why) = diverged {
                self.fail(self.diverged(epoch, why));
                break;
            }
            let trained = learner.model();
            let saved = self
                .keeper
                .lock()
                .expect("keeper lock")
                .on_epoch(&mut record, |path, format| trained.save_model(path, format));
            let mut outcome = self.outcome.lock().expect("outcome lock");
            if saved.is_ok() {
                if let Some(c) = checkpointer.as_mut() {
                    c.checkpoint(&learner, epoch, &event_store);
                }
            }
            match saved {
                Ok(is_best) => {
                    tracing::info!(
                        "epoch {epoch}: train loss {:.4}, valid loss {:.4}{}{}; {:.0} tokens/s",
                        record.train_loss,
                        record.valid_loss,
                        record.extra_figures(),
                        if is_best { " (best so far)" } else { "" },
                        record.train_tokens_per_second
                    );
                    since_best = if is_best { 0 } else { since_best + 1 };
                    outcome.epochs.push(record);
                }
                Err(e) => {
                    outcome.error = Some(e);
                    break;
                }
            }
            if self.patience.is_some_and(|p| since_best >= p) {
                tracing::info!("early stop: no better validation loss for {since_best} epochs");
                outcome.stopped_early = true;
                break;
            }
        }
        (learner.model(), processor)
    }
}
