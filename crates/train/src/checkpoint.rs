//! Checkpoints: what is kept of a run, and how it is written.
//!
//! A checkpoint is a folder, written under a temporary name and renamed:
//!
//! ```text
//! checkpoints/step-00000500/head.safetensors       the head's variables (what `colorize --checkpoint` takes)
//! checkpoints/step-00000500/optimizer.safetensors  optimizer state (momentum or Adam moments), by variable name
//! checkpoints/step-00000500/state.json             step, epoch, position, seed, lr, hashes, best score
//! checkpoints/best/                                 the same, for the best validation QSSIM
//!                                                   (a link to best-step-NNNNNNNN/, replaced atomically)
//! ```
//!
//! What to keep (`to_delete`) is a pure function of the steps present, so
//! the policy is tested without tensors.

use crate::optimizer::Optimizer;
use candle_core::{Device, Tensor};
use colorize_model::{Colorizer, HeadConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
pub const HEAD_FILE: &str = "head.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    /// Steps completed.
    pub step: u64,
    /// The position of the next batch: epoch and batch within it. The batch
    /// order is a pure function of (seed, epoch), so these and the seed are
    /// the whole random state of the loop.
    pub epoch: u64,
    pub batch: usize,
    pub seed: u64,
    pub lr: f64,
    pub loss: f64,
    /// Fingerprint of the run's resolved config.
    pub config_hash: String,
    /// Fingerprint of the cache's manifest.
    pub manifest_hash: String,
    pub head: HeadConfig,
    /// Validation QSSIM at this checkpoint, and the best so far.
    pub val_qssim: Option<f64>,
    pub best_qssim: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {}: {message}", .path.display())]
    Bad { path: PathBuf, message: String },
    #[error("checkpoint {}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

fn bad(path: &Path, message: impl ToString) -> CheckpointError {
    CheckpointError::Bad { path: path.to_path_buf(), message: message.to_string() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io { path: path.to_path_buf(), error }
}

pub fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint folder `dir/name` atomically (replacing one of that name).
pub fn write(
    dir: &Path,
    name: &str,
    model: &Colorizer,
    optimizer: &Optimizer,
    state: &TrainState,
) -> Result<PathBuf, CheckpointError> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let optimizer_state = optimizer.state().map_err(|e| bad(&target, e))?;
    ensure_finite(model, &optimizer_state).map_err(|message| bad(&target, message))?;
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    model.save_head(&tmp.join(HEAD_FILE)).map_err(|e| bad(&tmp, e))?;
    let optimizer_state: HashMap<String, Tensor> = optimizer_state.into_iter().collect();
    candle_core::safetensors::save(&optimizer_state, tmp.join(OPTIMIZER_FILE)).map_err(|e| bad(&tmp, e))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| bad(&tmp, e))?;
    std::fs::write(tmp.join(STATE_FILE), json).map_err(io(&tmp))?;
    // Durable before visible: the files and their folder reach the disk
    // before the rename makes the checkpoint count (a power loss then
    // leaves a whole checkpoint or a `.tmp` that is redone).
    for file in [HEAD_FILE, OPTIMIZER_FILE, STATE_FILE] {
        sync(&tmp.join(file))?;
    }
    sync(&tmp)?;
    if name == BEST {
        return replace_best(dir, &tmp, state.step);
    }
    if target.exists() {
        let old = dir.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&target, &old).map_err(io(&target))?;
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
    }
    sync(dir)?;
    Ok(target)
}

/// The name of the best checkpoint.
pub const BEST: &str = "best";

/// `best` is a link to a folder `best-step-NNNNNNNN`: a new best is written
/// beside it and the link is replaced by a rename, which is atomic, so
/// there is never a moment without a `best/` (a folder cannot be renamed
/// over a non-empty one). A `best/` folder from an older run is replaced
/// the old way once.
fn replace_best(dir: &Path, tmp: &Path, step: u64) -> Result<PathBuf, CheckpointError> {
    let target = dir.join(BEST);
    let folder_name = format!("{BEST}-{}", step_name(step));
    let folder = dir.join(&folder_name);
    let previous = std::fs::read_link(&target).ok();
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(io(&folder))?;
    }
    std::fs::rename(tmp, &folder).map_err(io(&folder))?;
    let link = dir.join(format!(".{BEST}.link"));
    let _ = std::fs::remove_file(&link);
    link_to(&folder_name, &link)?;
    if target.is_dir() && previous.is_none() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(&link, &target).map_err(io(&target))?;
    sync(dir)?;
    if let Some(old) = previous.filter(|old| old.as_os_str() != folder_name.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(target)
}

#[cfg(unix)]
fn link_to(name: &str, link: &Path) -> Result<(), CheckpointError> {
    std::os::unix::fs::symlink(name, link).map_err(io(link))
}

#[cfg(not(unix))]
fn link_to(_: &str, link: &Path) -> Result<(), CheckpointError> {
    Err(bad(link, "the best checkpoint's link needs a Unix file system"))
}

/// fsync of a file or a folder.
fn sync(path: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

/// Refuses to save a non-finite head variable or optimizer state: a
/// checkpoint is always a state training can continue from.
fn ensure_finite(model: &Colorizer, optimizer_state: &BTreeMap<String, Tensor>) -> Result<(), String> {
    let vars = model.varmap().data().lock().map_err(|_| "the head's variables are poisoned".to_string())?;
    let head = vars.iter().map(|(name, var)| (name, var.as_tensor()));
    for (name, tensor) in head.chain(optimizer_state.iter()) {
        if !is_finite(tensor).map_err(|e| e.to_string())? {
            return Err(format!("{name} holds a non-finite value; not saved"));
        }
    }
    Ok(())
}

/// Whether every element of `t` is finite (a NaN or an infinity makes the sum so).
pub fn is_finite(t: &Tensor) -> candle_core::Result<bool> {
    let sum = t.abs()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    Ok(sum.is_finite())
}

/// A checkpoint read back: its state, its head file, its optimizer state.
pub struct Loaded {
    pub state: TrainState,
    pub head: PathBuf,
    pub optimizer: BTreeMap<String, Tensor>,
}

pub fn read(path: &Path, device: &Device) -> Result<Loaded, CheckpointError> {
    let state_path = path.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| bad(&state_path, format!("unreadable state: {e}")))?;
    if state.format_version != FORMAT_VERSION {
        return Err(bad(path, format!("format version {} (this build reads {FORMAT_VERSION})", state.format_version)));
    }
    let head = path.join(HEAD_FILE);
    if !head.is_file() {
        return Err(bad(path, format!("{HEAD_FILE} is missing")));
    }
    let optimizer_path = path.join(OPTIMIZER_FILE);
    let optimizer = candle_core::safetensors::load(&optimizer_path, device)
        .map_err(|e| bad(&optimizer_path, e))?
        .into_iter()
        .collect();
    Ok(Loaded { state, head, optimizer })
}

/// The step checkpoints in `dir`, sorted by step.
pub fn list_steps(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Which step checkpoints to delete so that the last `keep_last` remain.
pub fn to_delete(steps: &[u64], keep_last: usize) -> Vec<u64> {
    let mut sorted = steps.to_vec();
    sorted.sort_unstable();
    let cut = sorted.len().saturating_sub(keep_last);
    sorted[..cut].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_k() {
        assert_eq!(to_delete(&[500, 100, 300, 200, 400], 2), [100, 200, 300]);
        assert_eq!(to_delete(&[100], 3), Vec::<u64>::new());
        assert_eq!(to_delete(&[], 1), Vec::<u64>::new());
    }
}
