//! The training loop, top to bottom: set up (fresh or resumed), then one
//! loop of steps with logging, validation and checkpoints.

use crate::augment::flip_some;
use crate::bin_loss::{bin_frequencies, rebalancing_weights, BinObjective, SoftEncoding};
use crate::checkpoint::{self, TrainState};
use crate::config::Loss;
use crate::loss::Objective;
use crate::optimizer::Sgd;
use crate::qssim_loss::QssimTerm;
use crate::run::{git_revision, new_run_path, MetricsLog};
use crate::sampling::{sample_pixels, targets_at};
use crate::schedule::learning_rate;
use crate::step::{head_gradients, sampled_gradients, Supervision};
use crate::tensorboard::TbLogger;
use crate::validate::Validator;
use crate::Experiment;
use candle_core::Device;
use colorize_data::batches::batches_per_epoch;
use colorize_data::{BatchLoader, Manifest, UvCache};
use colorize_eval::Summary;
use colorize_model::weights::resolve_trunk;
use colorize_model::Colorizer;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training cache at {}: run `cargo xtask preprocess --config <this config>` first ({reason})", .path.display())]
    NoCache { path: PathBuf, reason: String },
    #[error("the cache at {} holds {cache}x{cache} images but the config asks for {config}x{config}; preprocess again or fix data.size", .path.display())]
    SizeMismatch { path: PathBuf, cache: u32, config: u32 },
    #[error("cannot resume {}: {reason}", .path.display())]
    Resume { path: PathBuf, reason: String },
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error(
        "training diverged at step {step} ({what}, lr {lr}); lower train.optimizer.lr. Nothing of this step was \
         saved: {}",
        match .last_checkpoint {
            Some(path) => format!("the run can resume from its last checkpoint, {}", path.display()),
            None => "no checkpoint was written yet, so start the run again".to_string(),
        }
    )]
    Diverged { step: u64, what: String, lr: f64, last_checkpoint: Option<PathBuf> },
    #[error(transparent)]
    Model(#[from] colorize_model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Data(#[from] colorize_data::DataError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

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

/// The experiment's fingerprint as a run records it: everything that
/// changes the computation. The run's length (`train.epochs`,
/// `train.max_steps`) and its reporting cadence (`train.log_every`,
/// `train.checkpoint_every`, `train.keep_last`) are left out, so that a run
/// can be resumed longer or with other logging; so is every value equal to
/// its default, so that a key added to the config format later (at its
/// default) does not make older runs unresumable.
pub fn config_hash(experiment: &Experiment) -> String {
    let mut computation = experiment.clone();
    let defaults = crate::config::TrainConfig::default();
    let t = &mut computation.train;
    (t.epochs, t.max_steps) = (defaults.epochs, defaults.max_steps);
    (t.log_every, t.checkpoint_every, t.keep_last) =
        (defaults.log_every, defaults.checkpoint_every, defaults.keep_last);
    let value = toml::Value::try_from(&computation).expect("an experiment is TOML");
    let bare = Experiment::parse("[data]\nsource = \"\"\ncache = \"\"\n", "", Path::new("/"))
        .expect("the minimal config parses");
    let bare = toml::Value::try_from(&bare).expect("an experiment is TOML");
    let mut kept = value;
    strip_defaults(&mut kept, &bare);
    colorize_core::fingerprint(toml::to_string(&kept).expect("a TOML value serialises").as_bytes())
}

/// Removes from `value` every key whose value equals the same key's in
/// `defaults`, table by table.
fn strip_defaults(value: &mut toml::Value, defaults: &toml::Value) {
    let (Some(table), Some(defaults)) = (value.as_table_mut(), defaults.as_table()) else { return };
    table.retain(|key, v| match defaults.get(key) {
        Some(d) if d == v => false,
        Some(d) => {
            strip_defaults(v, d);
            true
        }
        None => true,
    });
}

/// The fingerprint runs recorded before the length could change: the
/// whole resolved config. A checkpoint carrying it still resumes.
fn whole_config_hash(experiment: &Experiment) -> String {
    colorize_core::fingerprint(experiment.to_toml().as_bytes())
}

/// Reads the resolved config a run folder keeps.
pub fn run_config(run_dir: &Path) -> Result<Experiment, TrainError> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    Experiment::parse(&text, "run", Path::new("/")).map_err(|reason| TrainError::Resume { path: path.clone(), reason })
}

pub fn train(
    experiment: &Experiment,
    options: &TrainOptions,
    observer: &mut dyn FnMut(Event<'_>),
) -> Result<TrainOutcome, TrainError> {
    let cfg = &experiment.train;
    let cache_dir = &experiment.data.cache;
    let cache =
        UvCache::open(cache_dir).map_err(|e| TrainError::NoCache { path: cache_dir.clone(), reason: e.to_string() })?;
    if cache.side() != experiment.data.size {
        return Err(TrainError::SizeMismatch {
            path: cache_dir.clone(),
            cache: cache.side().get(),
            config: experiment.data.size.get(),
        });
    }
    if cache.is_empty() {
        return Err(TrainError::NoCache { path: cache_dir.clone(), reason: "it holds no images".into() });
    }
    let manifest_hash = Manifest::file_hash(cache_dir)?;
    let side = cache.side();
    let s = side.get() as usize;
    let cache = Arc::new(cache);
    let per_epoch = batches_per_epoch(cache.len(), cfg.batch_size) as u64;
    let total_steps = cfg.max_steps.unwrap_or(cfg.epochs * per_epoch);

    let trunk = resolve_trunk(experiment.model.trunk_weights.as_deref())?;
    let mut model = Colorizer::new(&trunk, experiment.model.head, cfg.seed, &options.device)?;
    model.set_input_side(side.get());
    let mut optimizer = Sgd::new(cfg.optimizer);
    let hash = config_hash(experiment);
    // The bins loss's soft encoding: fixed by the config, needed by a fresh
    // head's prior and by every step.
    let encoding = (cfg.loss == Loss::Bins).then(|| SoftEncoding::new(&experiment.model.head.colour_bins(), &cfg.bins));

    // A fresh run folder, or the resumed one with its latest checkpoint.
    let (run_dir, mut state) = match &options.resume {
        None => {
            prepare_fresh_head(&model, &cache, experiment, encoding.as_ref())?;
            let run_dir = options.run_dir.clone().unwrap_or_else(|| new_run_path(&options.runs_root, &experiment.name));
            std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(io(&run_dir))?;
            let config_path = run_dir.join("config.toml");
            std::fs::write(&config_path, experiment.to_toml()).map_err(io(&config_path))?;
            let info = json!({
                "name": experiment.name,
                "config_hash": hash,
                "cache": cache_dir,
                "manifest_hash": manifest_hash,
                "images": cache.len(),
                "trunk": trunk,
                "git_revision": git_revision(&options.project_root),
                "started_utc": crate::run::utc_stamp(std::time::SystemTime::now()),
            });
            let info_path = run_dir.join("run.json");
            std::fs::write(&info_path, serde_json::to_string_pretty(&info).expect("json")).map_err(io(&info_path))?;
            let state = TrainState {
                format_version: checkpoint::FORMAT_VERSION,
                step: 0,
                epoch: 0,
                batch: 0,
                seed: cfg.seed,
                lr: cfg.optimizer.lr,
                loss: f64::NAN,
                config_hash: hash.clone(),
                manifest_hash: manifest_hash.clone(),
                head: experiment.model.head,
                val_qssim: None,
                best_qssim: None,
            };
            (run_dir, state)
        }
        Some(run_dir) => {
            let resume_err = |reason: String| TrainError::Resume { path: run_dir.clone(), reason };
            let Some((_, latest)) = checkpoint::list_steps(&run_dir.join("checkpoints")).pop() else {
                return Err(resume_err("it has no checkpoint".into()));
            };
            let loaded = checkpoint::read(&latest, &options.device)?;
            // Checkpoints written before run lengths could change carry the
            // whole config's fingerprint: check it against the config the
            // run folder recorded, and that config against this one.
            let recorded = run_config(run_dir)?;
            let legacy = loaded.state.config_hash == whole_config_hash(&recorded) && config_hash(&recorded) == hash;
            if loaded.state.config_hash != hash && !legacy {
                return Err(resume_err(format!(
                    "checkpoint {} was made with another config (hash {}, config.toml now {hash})",
                    latest.display(),
                    loaded.state.config_hash
                )));
            }
            if loaded.state.head != experiment.model.head {
                return Err(resume_err(format!("checkpoint {} has another head shape", latest.display())));
            }
            if loaded.state.manifest_hash != manifest_hash {
                return Err(resume_err(format!("the cache {} changed since the run started", cache_dir.display())));
            }
            model.load_head(&loaded.head)?;
            optimizer.load_state(loaded.momentum);
            record_resumed_length(run_dir, experiment)?;
            let state = TrainState { config_hash: hash.clone(), ..loaded.state };
            (run_dir.clone(), state)
        }
    };
    let objective = match encoding {
        None => Objective::Uv(cfg.loss),
        Some(encoding) => {
            Objective::Bins(BinObjective { encoding, weights: model.head().bin_weights(model.varmap())? })
        }
    };
    let checkpoints = run_dir.join("checkpoints");
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = MetricsLog::open(&metrics_path, Some(state.step)).map_err(io(&metrics_path))?;
    let mut tb = TbLogger::new(&run_dir, options.resume.is_some().then_some(state.step));
    if options.resume.is_none() {
        // The HParams dashboard: this run's config, measured by its best
        // validation scores (logged as `best/val_*`) and its loss.
        let mut metric_tags = vec!["train/loss".to_string()];
        if let Some(v) = &experiment.validation {
            metric_tags.extend(v.metrics.iter().map(|m| format!("best/val_{m}")));
        }
        let tags: Vec<&str> = metric_tags.iter().map(String::as_str).collect();
        let config = toml::Value::try_from(experiment).map_err(|e| TrainError::Resume {
            path: run_dir.clone(),
            reason: format!("the config does not serialise: {e}"),
        })?;
        tb.hparams(&crate::tensorboard::hparams_of(&config), &tags);
    }
    let validator = match &experiment.validation {
        Some(v) => Some(Validator::new(v, side, experiment.data.crop, cache.manifest().mean_uv)?),
        None => None,
    };
    let status = RunStatus { run_dir: &run_dir, planned: total_steps };
    status.write("running", state.step);
    observer(Event::Started {
        run_dir: &run_dir,
        start_step: state.step,
        total_steps,
        images: cache.len(),
        validation: validator.as_ref().map_or(0, Validator::len),
    });

    let mut loader = BatchLoader::start(cache.clone(), cfg.seed, cfg.batch_size, state.epoch, state.batch)?;
    let mut interrupted = false;
    let mut window = (Instant::now(), 0usize);
    let mut last_checkpoint = checkpoint::list_steps(&checkpoints).pop().map(|(_, path)| path);
    while state.step < total_steps {
        let mut batch = loader.next_batch()?;
        let n = batch.ids.len();
        if cfg.flip {
            flip_some(&mut batch.y, &mut batch.uv, n, s, cfg.seed, state.step);
        }
        let lr = learning_rate(cfg.optimizer.lr, &cfg.schedule, state.step, per_epoch);
        let y = model.gray_tensor(&batch.y, n, s, s)?;
        let step_grads = match cfg.sampled_pixels {
            None => {
                let targets = objective.targets(&batch.uv, (n, s, s), &options.device)?;
                let hypercolumn = model.hypercolumn_parts(&y)?;
                let qssim = (cfg.qssim_weight > 0.0).then_some(QssimTerm {
                    gray: &y,
                    weight: cfg.qssim_weight,
                    smoothing: experiment.model.head.chroma_smoothing,
                });
                head_gradients(
                    model.head(),
                    Supervision::Dense { hypercolumn: &hypercolumn, targets: &targets, qssim },
                    &objective,
                )?
            }
            Some(per_image) => {
                let pixels = sample_pixels(n, s, per_image, cfg.seed, state.step);
                sampled_gradients(&model, &y, &pixels, &targets_at(&batch.uv, s, &pixels), &objective)?
            }
        };
        // The loss and every gradient are checked before the update, so
        // the weights (and so the checkpoints) stay finite.
        if let Some(what) = step_grads.non_finite()? {
            status.write("diverged", state.step);
            return Err(TrainError::Diverged { step: state.step + 1, what, lr, last_checkpoint });
        }
        let vars = model.varmap().data().lock().expect("head variables").clone();
        optimizer.step(&vars, &step_grads.grads, lr)?;

        state.step += 1;
        state.lr = lr;
        state.loss = step_grads.loss;
        state.epoch = batch.epoch;
        state.batch = batch.index + 1;
        if state.batch as u64 == per_epoch {
            state.epoch += 1;
            state.batch = 0;
        }
        window.1 += n;

        if state.step % cfg.log_every == 0 || state.step == total_steps {
            let images_per_s = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            window = (Instant::now(), 0);
            let line = json!({"step": state.step, "epoch": batch.epoch, "loss": state.loss, "lr": lr, "images_per_s": images_per_s});
            metrics.write(&line).map_err(io(&metrics_path))?;
            tb.scalar("train/loss", state.loss, state.step);
            tb.scalar("train/lr", lr, state.step);
            tb.scalar("train/images_per_s", images_per_s, state.step);
            observer(Event::Step { step: state.step, epoch: batch.epoch, loss: state.loss, lr, images_per_s });
        }

        let validation_due =
            experiment.validation.as_ref().is_some_and(|v| state.step % v.every == 0 || state.step == total_steps);
        if let (Some(validator), true) = (&validator, validation_due) {
            let validation = validator.run(&model);
            let scores = validation.metrics;
            // A NaN score is no score: it must neither become nor block the best.
            let qssim = scores.get("qssim").map(|s| s.mean).filter(|q| q.is_finite());
            let line = json!({
                "step": state.step,
                "validation": scores,
                "validation_failed": validation.failed.len(),
                "validation_failures": validation.failed,
                "gray_baseline": validator.gray_baseline,
                "mean_chroma_baseline": validator.mean_chroma_baseline,
            });
            metrics.write(&line).map_err(io(&metrics_path))?;
            for (name, s) in &scores {
                tb.scalar(&format!("val/{name}"), s.mean, state.step);
            }
            tb.scalar("val/failed_pictures", validation.failed.len() as f64, state.step);
            for (baseline, summaries) in
                [("gray", &validator.gray_baseline), ("mean_chroma", &validator.mean_chroma_baseline)]
            {
                for (name, s) in summaries {
                    tb.scalar(&format!("val/{baseline}_baseline_{name}"), s.mean, state.step);
                }
            }
            for (i, (_, strip)) in validator.strips(&model)?.iter().enumerate() {
                tb.image(&format!("val/gray_prediction_truth/{i}"), strip, state.step);
            }
            observer(Event::Validation {
                step: state.step,
                scores: &scores,
                failed: &validation.failed,
                gray: &validator.gray_baseline,
                mean_chroma: &validator.mean_chroma_baseline,
            });
            state.val_qssim = qssim;
            if let Some(q) = qssim {
                if state.best_qssim.is_none_or(|best| !best.is_finite() || q > best) {
                    state.best_qssim = Some(q);
                    for (name, s) in &scores {
                        tb.scalar(&format!("best/val_{name}"), s.mean, state.step);
                    }
                    let path = checkpoint::write(&checkpoints, checkpoint::BEST, &model, &optimizer, &state)?;
                    observer(Event::Checkpoint { step: state.step, path: &path });
                }
            }
        }

        interrupted = options.stop.load(Ordering::SeqCst);
        if state.step % cfg.checkpoint_every == 0 || state.step == total_steps || interrupted {
            let path = checkpoint::write(&checkpoints, &checkpoint::step_name(state.step), &model, &optimizer, &state)?;
            observer(Event::Checkpoint { step: state.step, path: &path });
            last_checkpoint = Some(path);
            let steps: Vec<u64> = checkpoint::list_steps(&checkpoints).iter().map(|(s, _)| *s).collect();
            for old in checkpoint::to_delete(&steps, cfg.keep_last) {
                let _ = std::fs::remove_dir_all(checkpoints.join(checkpoint::step_name(old)));
            }
            tb.flush();
        }
        if interrupted {
            break;
        }
    }
    tb.flush();
    status.write(if interrupted { "interrupted" } else { "finished" }, state.step);
    Ok(TrainOutcome {
        run_dir,
        steps: state.step,
        last_loss: state.loss,
        best_qssim: state.best_qssim,
        interrupted,
        last_checkpoint: last_checkpoint.map(|dir| dir.join(checkpoint::HEAD_FILE)),
    })
}

/// `status.json` in a run folder: what the run is doing (`running`, with
/// its process id, then `finished`, `interrupted` or `diverged`), for
/// `cargo xtask runs`. A run whose status says running but whose process
/// is gone was killed. Best effort: a status that cannot be written only
/// loses the listing's state column.
struct RunStatus<'a> {
    run_dir: &'a Path,
    planned: u64,
}

impl RunStatus<'_> {
    fn write(&self, state: &str, step: u64) {
        let status = json!({
            "state": state,
            "pid": std::process::id(),
            "step": step,
            "planned_steps": self.planned,
            "updated_utc": crate::run::utc_stamp(std::time::SystemTime::now()),
        });
        let path = self.run_dir.join("status.json");
        let tmp = self.run_dir.join("status.json.tmp");
        let written = std::fs::write(&tmp, status.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
}

/// A resumed run may run longer or log otherwise (see `config_hash`): the
/// run folder's `config.toml` is rewritten with the values it now runs with,
/// and the change is noted in `resumes.jsonl`.
fn record_resumed_length(run_dir: &Path, experiment: &Experiment) -> Result<(), TrainError> {
    let config_path = run_dir.join("config.toml");
    let before = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let now = experiment.to_toml();
    if before == now {
        return Ok(());
    }
    let tmp = run_dir.join("config.toml.tmp");
    std::fs::write(&tmp, &now).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;
    let t = &experiment.train;
    let line = json!({
        "resumed_utc": crate::run::utc_stamp(std::time::SystemTime::now()),
        "epochs": t.epochs,
        "max_steps": t.max_steps,
        "log_every": t.log_every,
        "checkpoint_every": t.checkpoint_every,
        "keep_last": t.keep_last,
    });
    let path = run_dir.join("resumes.jsonl");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()).map_err(io(&path))
}

/// Images, spread evenly over the cache, on which a fresh run measures the
/// hypercolumn's standardisation.
const STANDARDISATION_IMAGES: usize = 128;

/// A fresh head's data-dependent start: the hypercolumn standardisation
/// (when the config asks for it) and an output bias at the cache's mean
/// chroma, so that step 0 predicts the mean-chroma baseline; for a bins
/// head, the bias at the log of the cache's bin frequencies and the loss's
/// rebalancing weights from them. All are saved with the head, so a
/// resumed run does not redo them.
fn prepare_fresh_head(
    model: &Colorizer,
    cache: &UvCache,
    experiment: &Experiment,
    encoding: Option<&SoftEncoding>,
) -> Result<(), TrainError> {
    match encoding {
        None => model.set_output_bias(cache.manifest().mean_uv)?,
        Some(encoding) => {
            let bins = experiment.model.head.colour_bins();
            let frequencies = bin_frequencies(cache, &bins, encoding, experiment.train.bins.sigma);
            let weights = rebalancing_weights(&frequencies, experiment.train.bins.rebalance);
            model.head().set_bin_prior(model.varmap(), &frequencies, &weights)?;
        }
    }
    if !experiment.model.head.standardise {
        return Ok(());
    }
    let s = cache.side().get() as usize;
    let count = cache.len().min(STANDARDISATION_IMAGES);
    let ids: Vec<usize> = (0..count).map(|k| k * cache.len() / count).collect();
    let batches = ids
        .chunks(16)
        .map(|chunk| {
            let y: Vec<u8> = chunk.iter().flat_map(|&i| cache.get(i).y.iter().copied()).collect();
            model.gray_tensor(&y, chunk.len(), s, s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    model.fit_standardisation(&batches)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key at its default is left out of the fingerprint, so a key added
    /// to the format later (a resolved config then writes it at its
    /// default) leaves older runs resumable.
    #[test]
    fn defaults_are_stripped_table_by_table() {
        let parse = |text: &str| -> toml::Value { toml::from_str(text).unwrap() };
        let mut value = parse("a = 1\nb = 2\n[t]\nc = 3\nd = 4\n[u]\ne = 5\n");
        let defaults = parse("a = 1\nb = 0\n[t]\nc = 3\n[u]\ne = 5\n");
        strip_defaults(&mut value, &defaults);
        assert_eq!(value, parse("b = 2\n[t]\nd = 4\n"), "a table equal to its default goes whole");
        let base = Experiment::parse("[data]\nsource = \"p\"\ncache = \"c\"\n", "x", Path::new("/")).unwrap();
        let explicit = Experiment::parse(
            "[data]\nsource = \"p\"\ncache = \"c\"\n[model.head]\nundo_rebalance = 0.0\n",
            "x",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(config_hash(&base), config_hash(&explicit));
    }
}
