//! `UvCache`: memory-mapped random access to a finished cache.

use super::manifest::{ImageRecord, Manifest};
use crate::DataError;
use colorize_core::Side;
use memmap2::Mmap;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A cache opened for reading. Shards are memory-mapped: opening costs the
/// manifest only, and the OS pages images in as they are read.
pub struct UvCache {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<MappedShard>,
    /// `starts[k]` is the global index of shard k's first image.
    starts: Vec<usize>,
}

struct MappedShard {
    map: Mmap,
    y: Range<usize>,
    uv: Range<usize>,
}

/// One cached image, borrowed from the map.
#[derive(Clone, Copy, Debug)]
pub struct CachedImage<'a> {
    /// [S, S]
    pub y: &'a [u8],
    /// [2, S, S]
    pub uv: &'a [u8],
}

impl UvCache {
    pub fn open(dir: &Path) -> Result<UvCache, DataError> {
        let manifest = Manifest::read(dir)?;
        if !manifest.complete {
            return Err(DataError::invalid_cache(
                dir,
                "it is incomplete (the preprocessing run was interrupted); finish it with `cargo xtask preprocess --resume`",
            ));
        }
        let s = manifest.size.get() as usize;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = Vec::with_capacity(manifest.shards.len());
        let mut total = 0;
        for info in &manifest.shards {
            let path = dir.join(&info.file);
            shards.push(map_shard(&path, info.count, s)?);
            starts.push(total);
            total += info.count;
        }
        if total != manifest.count {
            return Err(DataError::invalid_cache(
                dir,
                format!("shards hold {total} images, manifest says {}", manifest.count),
            ));
        }
        Ok(UvCache { dir: dir.to_path_buf(), manifest, shards, starts })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.manifest.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn side(&self) -> Side {
        self.manifest.size
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What the manifest records of image `i`.
    pub fn record(&self, i: usize) -> Result<&ImageRecord, DataError> {
        self.manifest.images.get(i).ok_or_else(|| self.no_such_image(i))
    }

    /// Image `i`, 0 <= i < len().
    pub fn get(&self, i: usize) -> Result<CachedImage<'_>, DataError> {
        if i >= self.len() {
            return Err(self.no_such_image(i));
        }
        let k = self.starts.partition_point(|&start| start <= i) - 1;
        let j = i - self.starts[k];
        let shard = &self.shards[k];
        let area = self.side().area();
        let y = &shard.map[shard.y.clone()];
        let uv = &shard.map[shard.uv.clone()];
        Ok(CachedImage { y: &y[j * area..(j + 1) * area], uv: &uv[2 * j * area..2 * (j + 1) * area] })
    }

    /// Every image, in order.
    pub fn images(&self) -> impl Iterator<Item = CachedImage<'_>> {
        (0..self.len()).filter_map(|i| self.get(i).ok())
    }

    fn no_such_image(&self, index: usize) -> DataError {
        DataError::NoSuchImage { path: self.dir.clone(), index, len: self.len() }
    }
}

fn map_shard(path: &Path, count: usize, s: usize) -> Result<MappedShard, DataError> {
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    // SAFETY: cache shards are written once, under a temporary name, and never
    // modified after the rename; nothing writes to a mapped file.
    let map = unsafe { Mmap::map(&file) }.map_err(DataError::io(path))?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&map).map_err(|e| DataError::invalid_cache(path, e.to_string()))?;
    let data_start = 8 + header_len;
    let tensor = |name: &str, shape: Vec<usize>| -> Result<Range<usize>, DataError> {
        let info =
            metadata.info(name).ok_or_else(|| DataError::invalid_cache(path, format!("tensor '{name}' is missing")))?;
        if info.dtype != Dtype::U8 || info.shape != shape {
            return Err(DataError::invalid_cache(
                path,
                format!("tensor '{name}' is {:?} {:?}, expected U8 {shape:?}", info.dtype, info.shape),
            ));
        }
        let (start, end) = info.data_offsets;
        Ok(data_start + start..data_start + end)
    };
    let y = tensor("y", vec![count, s, s])?;
    let uv = tensor("uv", vec![count, 2, s, s])?;
    Ok(MappedShard { map, y, uv })
}
