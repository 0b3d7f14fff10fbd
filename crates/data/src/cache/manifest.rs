use super::{FORMAT_VERSION, MANIFEST};
use crate::{DataError, PreprocessConfig};
use colorize_core::Side;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a cache holds and how it was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// False while a run is in progress or was interrupted.
    pub complete: bool,
    pub config: PreprocessConfig,
    /// Fingerprint of the config's content settings (see `PreprocessConfig::hash`).
    pub config_hash: String,
    pub size: Side,
    /// Images in the cache.
    pub count: usize,
    /// Images listed under the source root.
    pub listed: usize,
    /// Fingerprint of that listing (the sorted relative paths): a resume
    /// draws from the same files or is refused. Absent in older caches.
    #[serde(default)]
    pub listing_hash: Option<String>,
    /// How the squares were resampled (`prepare::RESAMPLING`); part of the
    /// config hash. Absent in older caches (`image`'s triangle filter).
    #[serde(default)]
    pub resampling: Option<String>,
    /// Mean U and V (0..255) over every cached pixel: the mean-chroma baseline.
    pub mean_uv: [f64; 2],
    pub shards: Vec<ShardInfo>,
    pub images: Vec<ImageRecord>,
    /// Grayscale photographs met in the draw (excluded unless `keep_grayscale`).
    pub grayscale: Vec<Grayscale>,
    /// Files that could not be used, with the reason.
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub count: usize,
}

/// One cached image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Relative to the source root, with `/` separators.
    pub path: String,
    /// Size of the original (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub shard: usize,
    pub index: usize,
}

/// A photograph without colour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grayscale {
    pub path: String,
    pub kind: GrayKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrayKind {
    /// The file has no colour channels.
    GrayFile,
    /// A colour file whose chroma is all but zero (within `gray_tolerance`).
    NoChroma,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

impl Manifest {
    pub(crate) fn empty(config: &PreprocessConfig, listed: usize, listing_hash: String) -> Result<Manifest, DataError> {
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            complete: false,
            config: config.clone(),
            config_hash: config.hash()?,
            size: config.size,
            count: 0,
            listed,
            listing_hash: Some(listing_hash),
            resampling: Some(crate::prepare::RESAMPLING.to_string()),
            mean_uv: [128.0, 128.0],
            shards: Vec::new(),
            images: Vec::new(),
            grayscale: Vec::new(),
            skipped: Vec::new(),
        })
    }

    pub fn read(cache_dir: &Path) -> Result<Manifest, DataError> {
        let path = cache_dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(DataError::io(&path))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| DataError::invalid_cache(&path, format!("unreadable manifest: {e}")))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(DataError::invalid_cache(
                &path,
                format!("format version {} (this build reads {FORMAT_VERSION})", manifest.format_version),
            ));
        }
        Ok(manifest)
    }

    pub(crate) fn write(&self, cache_dir: &Path) -> Result<(), DataError> {
        let path = cache_dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).map_err(|e| DataError::io(&path)(e.into()))?;
        super::write_atomic(&path, text.as_bytes()).map_err(DataError::io(&path))
    }

    /// The fingerprint of the manifest's bytes as written: what a training
    /// run records to name the exact data it saw.
    pub fn file_hash(cache_dir: &Path) -> Result<String, DataError> {
        let path = cache_dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(DataError::io(&path))?;
        Ok(colorize_core::fingerprint(&bytes))
    }
}
