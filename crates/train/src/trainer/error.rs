use crate::checkpoint;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training cache at {}: run `cargo xtask preprocess --config <this config>` first ({reason})", .path.display())]
    NoCache { path: PathBuf, reason: String },
    #[error("the cache at {} holds {cache}x{cache} images but the config asks for {config}x{config}; preprocess again or fix data.size", .path.display())]
    SizeMismatch { path: PathBuf, cache: u32, config: u32 },
    #[error("cannot start from the head {} (train.init_head): {reason}", .path.display())]
    InitHead { path: PathBuf, reason: String },
    #[error("cannot resume {}: {reason}", .path.display())]
    Resume { path: PathBuf, reason: String },
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Serialise(String),
    #[error("the experiment does not serialise to TOML: {0}")]
    Toml(#[from] toml::ser::Error),
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

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}
