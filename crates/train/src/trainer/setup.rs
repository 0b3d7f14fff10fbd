//! Before the first step: the cache, and the run folder with its state,
//! fresh or resumed from its latest checkpoint.

use super::error::io;
use super::fingerprint::{config_hash, whole_config_hash};
use super::{TrainError, TrainOptions};
use crate::bin_loss::{bin_frequencies, rebalancing_weights, SoftEncoding};
use crate::checkpoint::{self, TrainState};
use crate::optimizer::Optimizer;
use crate::run::{git_revision, new_run_path, utc_stamp};
use crate::Experiment;
use colorize_data::{Manifest, UvCache};
use colorize_model::provenance::HeadProvenance;
use colorize_model::{Colorizer, HeadConfig, HeadOutput, HypercolumnHead};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The training cache, checked against the config: its side, not empty.
/// With the manifest's hash, which a resumed run must match.
pub(super) fn open_cache(experiment: &Experiment) -> Result<(UvCache, String), TrainError> {
    let dir = &experiment.data.cache;
    let cache = UvCache::open(dir).map_err(|e| TrainError::NoCache { path: dir.clone(), reason: e.to_string() })?;
    if cache.side() != experiment.data.size {
        return Err(TrainError::SizeMismatch {
            path: dir.clone(),
            cache: cache.side().get(),
            config: experiment.data.size.get(),
        });
    }
    if cache.is_empty() {
        return Err(TrainError::NoCache { path: dir.clone(), reason: "it holds no images".into() });
    }
    Ok((cache, Manifest::file_hash(dir)?))
}

/// What a fresh run needs to know about where it starts.
pub(super) struct Start<'a> {
    pub cache: &'a UvCache,
    pub manifest_hash: &'a str,
    pub trunk: &'a Path,
    pub encoding: Option<&'a SoftEncoding>,
}

/// A new run folder with its config and `run.json`, and a fresh head.
pub(super) fn fresh_run(
    experiment: &Experiment,
    options: &TrainOptions,
    model: &mut Colorizer,
    start: Start<'_>,
) -> Result<(PathBuf, TrainState), TrainError> {
    match &experiment.train.init_head {
        Some(head) => start_from_head(model, head, experiment)?,
        None => prepare_fresh_head(model, start.cache, experiment, start.encoding)?,
    }
    let run_dir = options.run_dir.clone().unwrap_or_else(|| new_run_path(&options.runs_root, &experiment.name));
    std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(io(&run_dir))?;
    let config_path = run_dir.join("config.toml");
    std::fs::write(&config_path, experiment.to_toml()?).map_err(io(&config_path))?;
    let hash = config_hash(experiment)?;
    let info = json!({
        "name": experiment.name,
        "config_hash": hash,
        "cache": experiment.data.cache,
        "manifest_hash": start.manifest_hash,
        "images": start.cache.len(),
        "trunk": start.trunk,
        "git_revision": git_revision(&options.project_root),
        "started_utc": utc_stamp(SystemTime::now()),
    });
    let info_path = run_dir.join("run.json");
    std::fs::write(&info_path, format!("{info:#}")).map_err(io(&info_path))?;
    let cfg = &experiment.train;
    let state = TrainState {
        format_version: checkpoint::FORMAT_VERSION,
        step: 0,
        epoch: 0,
        batch: 0,
        seed: cfg.seed,
        lr: cfg.optimizer.lr,
        loss: f64::NAN,
        config_hash: hash,
        manifest_hash: start.manifest_hash.to_string(),
        head: experiment.model.head,
        val_qssim: None,
        best_qssim: None,
    };
    Ok((run_dir, state))
}

/// The run folder's latest checkpoint loaded into `model` and `optimizer`,
/// once it is shown to belong to this experiment and this cache.
pub(super) fn resume_run(
    run_dir: &Path,
    experiment: &Experiment,
    options: &TrainOptions,
    model: &mut Colorizer,
    optimizer: &mut Optimizer,
    manifest_hash: &str,
) -> Result<TrainState, TrainError> {
    let resume_err = |reason: String| TrainError::Resume { path: run_dir.to_path_buf(), reason };
    let Some((_, latest)) = checkpoint::list_steps(&run_dir.join("checkpoints")).pop() else {
        return Err(resume_err("it has no checkpoint".into()));
    };
    let loaded = checkpoint::read(&latest, &options.device)?;
    // Checkpoints written before run lengths could change carry the
    // whole config's fingerprint: check it against the config the
    // run folder recorded, and that config against this one.
    let hash = config_hash(experiment)?;
    let recorded = run_config(run_dir)?;
    let legacy = loaded.state.config_hash == whole_config_hash(&recorded)? && config_hash(&recorded)? == hash;
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
        return Err(resume_err(format!("the cache {} changed since the run started", experiment.data.cache.display())));
    }
    model.load_head(&loaded.head)?;
    optimizer.load_state(loaded.optimizer)?;
    record_resumed_length(run_dir, experiment)?;
    Ok(TrainState { config_hash: hash, ..loaded.state })
}

/// Reads the resolved config a run folder keeps.
pub fn run_config(run_dir: &Path) -> Result<Experiment, TrainError> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    Experiment::parse(&text, "run", Path::new("/")).map_err(|reason| TrainError::Resume { path: path.clone(), reason })
}

/// A resumed run may run longer or log otherwise (see `config_hash`): the
/// run folder's `config.toml` is rewritten with the values it now runs with,
/// and the change is noted in `resumes.jsonl`.
fn record_resumed_length(run_dir: &Path, experiment: &Experiment) -> Result<(), TrainError> {
    let config_path = run_dir.join("config.toml");
    let before = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let now = experiment.to_toml()?;
    if before == now {
        return Ok(());
    }
    let tmp = run_dir.join("config.toml.tmp");
    std::fs::write(&tmp, &now).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;
    let t = &experiment.train;
    let line = json!({
        "resumed_utc": utc_stamp(SystemTime::now()),
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

/// `train.init_head`: the saved head's weights, standardisation and bin
/// prior and weights, once its shape is shown to be the config's and its
/// trunk the run's; the config's prediction settings replace its own.
fn start_from_head(model: &mut Colorizer, head: &Path, experiment: &Experiment) -> Result<(), TrainError> {
    let refuse = |reason: String| TrainError::InitHead { path: head.to_path_buf(), reason };
    let wanted = experiment.model.head;
    let saved = HypercolumnHead::config_of_file(head).map_err(|e| refuse(e.to_string()))?;
    let prediction_settings_aside = HeadConfig {
        chroma_smoothing: wanted.chroma_smoothing,
        chroma_guide_radius: wanted.chroma_guide_radius,
        temperature: wanted.temperature,
        undo_rebalance: wanted.undo_rebalance,
        ..saved
    };
    if prediction_settings_aside != wanted {
        return Err(refuse(format!("its head is {saved:?}, the config's model.head is {wanted:?}")));
    }
    let provenance = HeadProvenance::of_file(head).map_err(|e| refuse(e.to_string()))?;
    model.check_head_trunk(head, &provenance).map_err(|e| refuse(e.to_string()))?;
    model.load_head(head)?;
    model.set_chroma_smoothing(wanted.chroma_smoothing)?;
    model.set_chroma_guide_radius(wanted.chroma_guide_radius)?;
    if wanted.output == HeadOutput::Bins {
        model.set_bin_decoding(Some(wanted.temperature), Some(wanted.undo_rebalance))?;
    }
    Ok(())
}

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
    let mut batches = Vec::new();
    for chunk in ids.chunks(16) {
        let y = chunk.iter().map(|&i| cache.get(i).map(|image| image.y)).collect::<Result<Vec<_>, _>>()?.concat();
        batches.push(model.gray_tensor(&y, chunk.len(), s, s)?);
    }
    model.fit_standardisation(&batches)?;
    Ok(())
}
