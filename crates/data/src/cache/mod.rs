//! The preprocessing cache: a folder of safetensors shards plus `manifest.json`.
//!
//! ```text
//! <cache>/manifest.json           config + hash, every image's record, skips, mean chroma
//! <cache>/shard-000000.safetensors  y: u8 [n, S, S], uv: u8 [n, 2, S, S]
//! <cache>/shard-000000.json         the shard's own records (what resume reads)
//! ```
//!
//! **Invariant:** a file with its final name is complete. Every file is
//! written under a temporary name and renamed; a shard counts as done only
//! when its `.json` (written after the `.safetensors`) exists. So an
//! interrupted run, even by kill -9, resumes by redoing the missing shards.

mod manifest;
mod reader;
mod writer;

pub use manifest::{GrayKind, Grayscale, ImageRecord, Manifest, ShardInfo, Skipped};
pub use reader::{CachedImage, UvCache};
pub use writer::{write_cache, CacheSummary, Event};

use std::path::{Path, PathBuf};

pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) fn shard_file(index: usize) -> String {
    format!("shard-{index:06}.safetensors")
}

pub(crate) fn shard_record_file(index: usize) -> String {
    format!("shard-{index:06}.json")
}

/// Writes `bytes` to `path` atomically: a temporary sibling, then a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
