//! The preprocessing settings: the `[data]` table of an experiment config.

use crate::source::SourceLayout;
use crate::DataError;
use colorize_core::Side;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How a photograph becomes an S x S square.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CropPolicy {
    /// Scale so that the short side is S, then keep the centre S x S.
    #[default]
    Center,
    /// Scale both sides to S, ignoring the aspect ratio.
    Squash,
}

/// Everything that decides the contents of a cache. Paths are as written in
/// the config; the caller resolves relative ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Root of the photographs.
    pub source: PathBuf,
    /// How the root is laid out: `ilsvrc`, `sun` or `folder`.
    #[serde(default)]
    pub layout: SourceLayout,
    /// For `sun`: the partition list, e.g. `Training_01` (`all` walks every class).
    #[serde(default = "default_split")]
    pub split: String,
    /// Relative paths (folders or files) under the root to leave out, e.g. a
    /// held-out test split that lives beside the training images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<PathBuf>,
    /// Relative paths (folders or files) under the root whose pictures are
    /// listed this many times each (1 to 1000), as if the folder were there
    /// that many times: more weight for a small part of the source that
    /// matters (a few hundred scene photographs among 30,000 thumbnails).
    /// A path that matches no listed picture is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repeat: BTreeMap<PathBuf, u32>,
    /// Where the cache is written.
    pub cache: PathBuf,
    /// Side of the cached squares, in pixels (a multiple of 4).
    #[serde(default = "default_size")]
    pub size: Side,
    /// How many images to cache (drawn at random); all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed of the draw.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub crop: CropPolicy,
    /// Keep grayscale photographs (they teach "no colour"); excluded by default.
    #[serde(default)]
    pub keep_grayscale: bool,
    /// A colour photograph counts as grayscale when 99% of its pixels have
    /// |U - 128| and |V - 128| at most this (JPEG noise in gray-in-colour files).
    #[serde(default = "default_gray_tolerance")]
    pub gray_tolerance: u8,
    /// Images per shard file.
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
}

/// More copies than this would make one folder the whole cache.
pub const MAX_REPEAT: u32 = 1000;

fn default_split() -> String {
    "Training_01".into()
}
fn default_size() -> Side {
    // tidy: a constant.
    Side::new(224).expect("224 is a valid side")
}
fn default_seed() -> u64 {
    1
}
fn default_gray_tolerance() -> u8 {
    2
}
fn default_shard_size() -> usize {
    512
}

impl PreprocessConfig {
    /// A config with every default, for the given source and cache folders.
    pub fn new(source: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        PreprocessConfig {
            source: source.into(),
            layout: SourceLayout::default(),
            split: default_split(),
            exclude: Vec::new(),
            repeat: BTreeMap::new(),
            cache: cache.into(),
            size: default_size(),
            limit: None,
            seed: default_seed(),
            crop: CropPolicy::default(),
            keep_grayscale: false,
            gray_tolerance: default_gray_tolerance(),
            shard_size: default_shard_size(),
        }
    }

    pub fn validate(&self) -> Result<(), crate::DataError> {
        match self.invalid_key() {
            Some((_, message)) => Err(crate::DataError::InvalidConfig(message)),
            None => Ok(()),
        }
    }

    /// The first out-of-range value: its key (`data.…`) and why.
    pub fn invalid_key(&self) -> Option<(&'static str, String)> {
        if self.shard_size == 0 {
            return Some(("data.shard_size", "shard_size must be at least 1".into()));
        }
        if let Some((path, times)) = self.repeat.iter().find(|(_, &times)| !(1..=MAX_REPEAT).contains(&times)) {
            let path = path.display();
            return Some(("data.repeat", format!("repeat {path:?} = {times}: must be 1 to {MAX_REPEAT} times")));
        }
        if self.limit == Some(0) {
            return Some(("data.limit", "limit must be at least 1 (leave it out to take every image)".into()));
        }
        None
    }

    /// The settings that decide the cache's bytes, as canonical JSON. The
    /// output folder is not among them: a cache can be moved.
    /// (A path that is not UTF-8 has no JSON form: an error.)
    pub fn content_key(&self) -> Result<String, DataError> {
        let mut value = serde_json::to_value(self).map_err(|e| {
            DataError::InvalidConfig(format!("the config has no JSON form ({e}): are its paths UTF-8?"))
        })?;
        if let Some(map) = value.as_object_mut() {
            map.remove("cache");
        }
        Ok(value.to_string())
    }

    /// The fingerprint of what decides a cache's bytes: the content key and
    /// the resampling (`prepare::RESAMPLING`).
    pub fn hash(&self) -> Result<String, DataError> {
        let key = format!("{}\n{}", self.content_key()?, crate::prepare::RESAMPLING);
        Ok(colorize_core::fingerprint(key.as_bytes()))
    }
}
