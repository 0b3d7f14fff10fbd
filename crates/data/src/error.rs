use std::path::PathBuf;

/// Failures that stop a data operation. A single bad image is not one of
/// them: it is skipped and recorded (see `cache::Skipped`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("source folder {} does not exist or is not a folder", .0.display())]
    MissingSource(PathBuf),
    #[error("SUN397 split '{split}': partition list not found (looked for {})", .looked.display())]
    MissingPartition { split: String, looked: PathBuf },
    #[error("no images found under {}", .0.display())]
    NoImages(PathBuf),
    #[error("split '{split}' is not one of this layout's ({known})")]
    UnknownSplit { split: String, known: &'static str },
    #[error("cannot write to the output folder {}: {error}", .path.display())]
    Unwritable { path: PathBuf, error: std::io::Error },
    #[error(
        "the cache in {} was started from another listing of {} ({then} images then, {now} now: files were added, \
         removed or renamed); resuming would mix two draws. Restore the source, or preprocess into another --out",
        .path.display(), .root.display()
    )]
    ListingChanged { path: PathBuf, root: PathBuf, then: usize, now: usize },
    #[error("the cache in {} holds {len} images; there is no image {index}", .path.display())]
    NoSuchImage { path: PathBuf, index: usize, len: usize },
    #[error("batches: {0}")]
    Loader(String),
    #[error("{} already holds an unfinished cache; pass --resume to continue it, or choose another --out", .0.display())]
    CacheExists(PathBuf),
    #[error("the cache in {} was made from another configuration (hash {found}, this one {expected}); use the same config to resume, or another --out", .path.display())]
    ConfigMismatch { path: PathBuf, found: String, expected: String },
    #[error("the cache in {} is invalid: {reason}", .path.display())]
    InvalidCache { path: PathBuf, reason: String },
    #[error("invalid preprocessing config: {0}")]
    InvalidConfig(String),
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |error| DataError::Io { path, error }
    }

    pub(crate) fn invalid_cache(path: impl Into<PathBuf>, reason: impl Into<String>) -> DataError {
        DataError::InvalidCache { path: path.into(), reason: reason.into() }
    }
}
