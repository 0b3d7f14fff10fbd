use std::path::PathBuf;

/// A head file and the trunk it was about to run on, which differ.
#[derive(Debug)]
pub struct TrunkMismatch {
    pub head: PathBuf,
    pub recorded: String,
    pub recorded_fingerprint: String,
    pub used: String,
    pub used_fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("weights file {} not found", .0.display())]
    MissingWeights(PathBuf),
    #[error(
        "no VGG-16 trunk weights: set `model.trunk_weights` in the config or pass --vgg-weights PATH, \
         or put timm/vgg16.tv_in1k (model.safetensors) in the Hugging Face cache ({}) ({reason})",
        .hub_cache.display()
    )]
    NoTrunkWeights { hub_cache: PathBuf, reason: String },
    #[error("{}: tensor '{key}' is missing", .path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: tensor '{key}' has shape {found:?}, expected {expected:?}", .path.display())]
    WrongShape { path: PathBuf, key: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("{}: {message}", .path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("no head checkpoint: pass --checkpoint HEAD.safetensors (the project has no embedded colorizer yet)")]
    NoEmbeddedHead,
    #[error("device '{0}': expected cpu or cuda:N")]
    BadDevice(String),
    #[error("device '{0}': this build has no CUDA support; rebuild with `--features cuda`")]
    NoCuda(String),
    #[error("input side {0} is invalid: the model needs a multiple of {1}, at least 16")]
    BadSide(usize, usize),
    #[error("{0}")]
    BadConfig(String),
    #[error(
        "{}: this head was trained on the trunk '{}' (fingerprint {}), not on '{}' ({}); leave out --vgg-weights \
         to use its own trunk, or pass --other-trunk to run it anyway",
        .0.head.display(), .0.recorded, .0.recorded_fingerprint, .0.used, .0.used_fingerprint
    )]
    TrunkMismatch(Box<TrunkMismatch>),
    #[error("the hypercolumn standardisation needs at least one image to measure")]
    NothingToMeasure,
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
