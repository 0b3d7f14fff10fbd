//! The training loop. `train` reads top to bottom: set up (fresh or
//! resumed), then one loop whose body names its phases: the batch, the
//! step's gradients, the update, logging, validation, the checkpoint.
//! Each phase is a method of `Session`, the loop's state.

mod error;
mod fingerprint;
mod setup;
mod status;

pub use error::TrainError;
pub use fingerprint::config_hash;
pub use setup::run_config;

use crate::augment::{crop_each, flip_some};
use crate::bin_loss::{BinObjective, SoftEncoding};
use crate::checkpoint::{self, TrainState};
use crate::config::Loss;
use crate::loss::Objective;
use crate::optimizer::Optimizer;
use crate::qssim_loss::QssimTerm;
use crate::run::MetricsLog;
use crate::sampling::{sample_pixels, targets_at};
use crate::schedule::learning_rate;
use crate::step::{head_gradients, sampled_gradients, StepGradients, Supervision};
use crate::tensorboard::TbLogger;
use crate::validate::Validator;
use crate::Experiment;
use candle_core::Device;
use colorize_data::batches::batches_per_epoch;
use colorize_data::{Batch, BatchLoader};
use colorize_eval::Summary;
use colorize_model::weights::resolve_trunk;
use colorize_model::Colorizer;
use error::io;
use serde_json::json;
use status::RunStatus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How to run: where, on what, and how to stop.
pub struct TrainOptions {
    /// Folder that new run folders go into (`runs/`).
    pub runs_root: PathBuf,
    /// Use this run folder instead of a new `runs/<name>-<time>`.
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint.
    pub resume: Option<PathBuf>,
    pub device: Device,
    /// Raised (by Ctrl-C): stop after the current step, with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// The project root, for the git revision.
    pub project_root: PathBuf,
}

/// What the loop reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        run_dir: &'a Path,
        start_step: u64,
        total_steps: u64,
        images: usize,
        validation: usize,
    },
    Step {
        step: u64,
        epoch: u64,
        loss: f64,
        lr: f64,
        images_per_s: f64,
    },
    Validation {
        step: u64,
        scores: &'a BTreeMap<String, Summary>,
        /// Pictures that could not be scored, with the reason.
        failed: &'a [colorize_eval::Failure],
        gray: &'a BTreeMap<String, Summary>,
        mean_chroma: &'a BTreeMap<String, Summary>,
        /// The training objective on the validation pictures (`Validator::loss`).
        loss: Option<f64>,
    },
    Checkpoint {
        step: u64,
        path: &'a Path,
    },
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub last_loss: f64,
    pub best_qssim: Option<f64>,
    pub interrupted: bool,
    /// The head of the last checkpoint (none when the run made no step).
    pub last_checkpoint: Option<PathBuf>,
}

pub fn train(
    experiment: &Experiment,
    options: &TrainOptions,
    observer: &mut dyn FnMut(Event<'_>),
) -> Result<TrainOutcome, TrainError> {
    let mut session = Session::start(experiment, options)?;
    observer(session.started());
    let mut interrupted = false;
    while session.state.step < session.total_steps && !interrupted {
        let mut batch = session.loader.next_batch()?;
        session.augment(&mut batch);
        let gradients = session.gradients(&batch)?;
        session.update(&batch, gradients)?;
        session.log(observer)?;
        session.validate(observer)?;
        interrupted = options.stop.load(Ordering::SeqCst);
        session.checkpoint(interrupted, observer)?;
    }
    Ok(session.finish(interrupted))
}

/// Everything the loop carries from step to step.
struct Session<'a> {
    experiment: &'a Experiment,
    device: &'a Device,
    /// The cached pictures' side (the model's input size, where validation
    /// runs).
    cached_side: usize,
    /// The side a step trains on: the crop's, or the cached side.
    side: usize,
    per_epoch: u64,
    total_steps: u64,
    model: Colorizer,
    optimizer: Optimizer,
    objective: Objective,
    state: TrainState,
    loader: BatchLoader,
    cache_len: usize,
    run_dir: PathBuf,
    metrics: MetricsLog,
    tb: TbLogger,
    validator: Option<Validator>,
    /// Images seen since the last log line, and since when.
    window: (Instant, usize),
    /// The epoch of the last batch, for the log line.
    batch_epoch: u64,
    last_checkpoint: Option<PathBuf>,
}

impl<'a> Session<'a> {
    /// The cache, the model, and the run folder with its state, fresh or
    /// resumed; the logs opened and the batch loader started where the
    /// state says.
    fn start(experiment: &'a Experiment, options: &'a TrainOptions) -> Result<Session<'a>, TrainError> {
        let cfg = &experiment.train;
        let (cache, manifest_hash) = setup::open_cache(experiment)?;
        let side = cache.side();
        let per_epoch = batches_per_epoch(cache.len(), cfg.batch_size) as u64;
        let total_steps = cfg.max_steps.unwrap_or(cfg.epochs * per_epoch);
        let trunk = resolve_trunk(experiment.model.trunk_weights.as_deref())?;
        let mut model = Colorizer::new(&trunk, experiment.model.head, cfg.seed, &options.device)?;
        model.set_input_side(side.get())?;
        model.set_trunk_dtype(experiment.model.trunk_dtype)?;
        let mut optimizer = Optimizer::new(&cfg.optimizer);
        // The bins loss's soft encoding: fixed by the config, needed by a
        // fresh head's prior and by every step.
        let encoding =
            (cfg.loss == Loss::Bins).then(|| SoftEncoding::new(&experiment.model.head.colour_bins(), &cfg.bins));
        let (run_dir, state) = match &options.resume {
            None => {
                let start = setup::Start {
                    cache: &cache,
                    manifest_hash: &manifest_hash,
                    trunk: &trunk,
                    encoding: encoding.as_ref(),
                };
                setup::fresh_run(experiment, options, &mut model, start)?
            }
            Some(run_dir) => {
                let state =
                    setup::resume_run(run_dir, experiment, options, &mut model, &mut optimizer, &manifest_hash)?;
                (run_dir.clone(), state)
            }
        };
        let objective = match encoding {
            None => Objective::Uv(cfg.loss),
            Some(encoding) => {
                Objective::Bins(BinObjective { encoding, weights: model.head().bin_weights(model.varmap())? })
            }
        };
        let metrics_path = run_dir.join("metrics.jsonl");
        let metrics = MetricsLog::open(&metrics_path, Some(state.step)).map_err(io(&metrics_path))?;
        let mut tb = TbLogger::new(&run_dir, options.resume.is_some().then_some(state.step));
        if options.resume.is_none() {
            log_hparams(&mut tb, experiment)?;
        }
        let validator = match &experiment.validation {
            Some(v) => Some(Validator::new(v, side, experiment.data.crop, cache.manifest().mean_uv)?),
            None => None,
        };
        let cache_len = cache.len();
        let loader = BatchLoader::start(Arc::new(cache), cfg.seed, cfg.batch_size, state.epoch, state.batch)?;
        let last_checkpoint = checkpoint::list_steps(&run_dir.join("checkpoints")).pop().map(|(_, path)| path);
        let session = Session {
            experiment,
            device: &options.device,
            cached_side: side.get() as usize,
            side: cfg.trained_side(side).get() as usize,
            per_epoch,
            total_steps,
            model,
            optimizer,
            objective,
            batch_epoch: state.epoch,
            state,
            loader,
            cache_len,
            run_dir,
            metrics,
            tb,
            validator,
            window: (Instant::now(), 0),
            last_checkpoint,
        };
        session.status().write("running", session.state.step);
        Ok(session)
    }

    fn started(&self) -> Event<'_> {
        Event::Started {
            run_dir: &self.run_dir,
            start_step: self.state.step,
            total_steps: self.total_steps,
            images: self.cache_len,
            validation: self.validator.as_ref().map_or(0, Validator::len),
        }
    }

    fn status(&self) -> RunStatus<'_> {
        RunStatus { run_dir: &self.run_dir, planned: self.total_steps }
    }

    /// Random crops and horizontal flips, when the config asks for them.
    fn augment(&self, batch: &mut Batch) {
        let (cfg, n) = (&self.experiment.train, batch.ids.len());
        if self.side < self.cached_side {
            (batch.y, batch.uv) =
                crop_each(&batch.y, &batch.uv, n, self.cached_side, self.side, cfg.seed, self.state.step);
        }
        if cfg.flip {
            flip_some(&mut batch.y, &mut batch.uv, n, self.side, cfg.seed, self.state.step);
        }
    }

    /// The loss and the head's gradients on one batch: dense, or at
    /// sampled pixels.
    fn gradients(&self, batch: &Batch) -> Result<StepGradients, TrainError> {
        let (cfg, s, n, uv) = (&self.experiment.train, self.side, batch.ids.len(), &batch.uv);
        let y = self.model.gray_tensor(&batch.y, n, s, s)?;
        let Some(per_image) = cfg.sampled_pixels else {
            let targets = self.objective.targets(uv, (n, s, s), self.device)?;
            let hypercolumn = self.model.hypercolumn_parts(&y)?;
            let qssim = (cfg.qssim_weight > 0.0).then_some(QssimTerm {
                gray: &y,
                weight: cfg.qssim_weight,
                smoothing: self.experiment.model.head.chroma_smoothing,
            });
            let supervision = Supervision::Dense { hypercolumn: &hypercolumn, targets: &targets, qssim };
            return Ok(head_gradients(self.model.head(), supervision, &self.objective)?);
        };
        let pixels = sample_pixels(n, s, per_image, cfg.seed, self.state.step);
        Ok(sampled_gradients(&self.model, &y, &pixels, &targets_at(uv, s, &pixels), &self.objective)?)
    }

    /// One SGD update, once the loss and every gradient are shown finite
    /// (so the weights, and the checkpoints, stay finite), and the state
    /// moved on past this batch.
    fn update(&mut self, batch: &Batch, gradients: StepGradients) -> Result<(), TrainError> {
        let cfg = &self.experiment.train;
        let lr = learning_rate(cfg.optimizer.lr, &cfg.schedule, self.state.step, self.per_epoch);
        if let Some(what) = gradients.non_finite()? {
            self.status().write("diverged", self.state.step);
            let last_checkpoint = self.last_checkpoint.clone();
            return Err(TrainError::Diverged { step: self.state.step + 1, what, lr, last_checkpoint });
        }
        self.optimizer.step(&self.model.head_variables()?, &gradients.grads, lr)?;
        let state = &mut self.state;
        state.step += 1;
        state.lr = lr;
        state.loss = gradients.loss;
        state.epoch = batch.epoch;
        state.batch = batch.index + 1;
        if state.batch as u64 == self.per_epoch {
            state.epoch += 1;
            state.batch = 0;
        }
        self.batch_epoch = batch.epoch;
        self.window.1 += batch.ids.len();
        Ok(())
    }

    fn due(&self, every: u64) -> bool {
        self.state.step.is_multiple_of(every) || self.state.step == self.total_steps
    }

    /// Every `log_every` steps: the loss, the learning rate and the
    /// throughput to metrics.jsonl, TensorBoard and the observer.
    fn log(&mut self, observer: &mut dyn FnMut(Event<'_>)) -> Result<(), TrainError> {
        if !self.due(self.experiment.train.log_every) {
            return Ok(());
        }
        let (step, epoch, loss, lr) = (self.state.step, self.batch_epoch, self.state.loss, self.state.lr);
        let images_per_s = self.window.1 as f64 / self.window.0.elapsed().as_secs_f64().max(1e-9);
        self.window = (Instant::now(), 0);
        let line = json!({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "images_per_s": images_per_s});
        self.write_metrics(&line)?;
        self.tb.scalar("train/loss", loss, step);
        self.tb.scalar("train/lr", lr, step);
        self.tb.scalar("train/images_per_s", images_per_s, step);
        observer(Event::Step { step, epoch, loss, lr, images_per_s });
        Ok(())
    }

    fn write_metrics(&mut self, line: &serde_json::Value) -> Result<(), TrainError> {
        let path = self.run_dir.join("metrics.jsonl");
        self.metrics.write(line).map_err(io(&path))
    }

    /// Every `validation.every` steps: the validation pictures scored and
    /// logged beside the baselines, and a new best QSSIM checkpointed.
    fn validate(&mut self, observer: &mut dyn FnMut(Event<'_>)) -> Result<(), TrainError> {
        let due = self.experiment.validation.as_ref().is_some_and(|v| self.due(v.every));
        let (Some(validator), true) = (&self.validator, due) else { return Ok(()) };
        let step = self.state.step;
        let validation = validator.run(&self.model);
        let scores = validation.metrics;
        let held_out_loss = validator.loss(&self.model, &self.objective)?;
        let line = json!({
            "step": step,
            "validation": scores,
            "validation_loss": held_out_loss,
            "validation_failed": validation.failed.len(),
            "validation_failures": validation.failed,
            "gray_baseline": validator.gray_baseline,
            "mean_chroma_baseline": validator.mean_chroma_baseline,
        });
        let strips = validator.strips(&self.model)?;
        for (name, s) in &scores {
            self.tb.scalar(&format!("val/{name}"), s.mean, step);
        }
        self.tb.scalar("val/failed_pictures", validation.failed.len() as f64, step);
        if let Some(loss) = held_out_loss {
            self.tb.scalar("val/loss", loss, step);
        }
        for (baseline, summaries) in
            [("gray", &validator.gray_baseline), ("mean_chroma", &validator.mean_chroma_baseline)]
        {
            for (name, s) in summaries {
                self.tb.scalar(&format!("val/{baseline}_baseline_{name}"), s.mean, step);
            }
        }
        for (i, (_, strip)) in strips.iter().enumerate() {
            self.tb.image(&format!("val/gray_prediction_truth/{i}"), strip, step);
        }
        observer(Event::Validation {
            step,
            scores: &scores,
            failed: &validation.failed,
            gray: &validator.gray_baseline,
            mean_chroma: &validator.mean_chroma_baseline,
            loss: held_out_loss,
        });
        self.write_metrics(&line)?;
        // A NaN score is no score: it must neither become nor block the best.
        let qssim = scores.get("qssim").map(|s| s.mean).filter(|q| q.is_finite());
        self.state.val_qssim = qssim;
        let Some(q) = qssim else { return Ok(()) };
        if self.state.best_qssim.is_some_and(|best| best.is_finite() && q <= best) {
            return Ok(());
        }
        self.state.best_qssim = Some(q);
        for (name, s) in &scores {
            self.tb.scalar(&format!("best/val_{name}"), s.mean, step);
        }
        let path = self.write_checkpoint(checkpoint::BEST)?;
        observer(Event::Checkpoint { step, path: &path });
        Ok(())
    }

    fn write_checkpoint(&self, name: &str) -> Result<PathBuf, TrainError> {
        let dir = self.run_dir.join("checkpoints");
        Ok(checkpoint::write(&dir, name, &self.model, &self.optimizer, &self.state)?)
    }

    /// Every `checkpoint_every` steps, at the end and when interrupted: a
    /// checkpoint, and the oldest beyond `keep_last` deleted.
    fn checkpoint(&mut self, interrupted: bool, observer: &mut dyn FnMut(Event<'_>)) -> Result<(), TrainError> {
        let cfg = &self.experiment.train;
        if !self.due(cfg.checkpoint_every) && !interrupted {
            return Ok(());
        }
        let path = self.write_checkpoint(&checkpoint::step_name(self.state.step))?;
        observer(Event::Checkpoint { step: self.state.step, path: &path });
        self.last_checkpoint = Some(path);
        let dir = self.run_dir.join("checkpoints");
        let steps: Vec<u64> = checkpoint::list_steps(&dir).iter().map(|(s, _)| *s).collect();
        for old in checkpoint::to_delete(&steps, cfg.keep_last) {
            let _ = std::fs::remove_dir_all(dir.join(checkpoint::step_name(old)));
        }
        self.tb.flush();
        Ok(())
    }

    fn finish(mut self, interrupted: bool) -> TrainOutcome {
        self.tb.flush();
        self.status().write(if interrupted { "interrupted" } else { "finished" }, self.state.step);
        TrainOutcome {
            steps: self.state.step,
            last_loss: self.state.loss,
            best_qssim: self.state.best_qssim,
            interrupted,
            last_checkpoint: self.last_checkpoint.map(|dir| dir.join(checkpoint::HEAD_FILE)),
            run_dir: self.run_dir,
        }
    }
}

/// The HParams dashboard: this run's config, measured by its best
/// validation scores (logged as `best/val_*`) and its loss.
fn log_hparams(tb: &mut TbLogger, experiment: &Experiment) -> Result<(), TrainError> {
    let mut metric_tags = vec!["train/loss".to_string()];
    if let Some(v) = &experiment.validation {
        metric_tags.extend(v.metrics.iter().map(|m| format!("best/val_{m}")));
    }
    let tags: Vec<&str> = metric_tags.iter().map(String::as_str).collect();
    tb.hparams(&crate::tensorboard::hparams_of(&toml::Value::try_from(experiment)?), &tags);
    Ok(())
}
