//! `write_cache`: list, draw, decode and convert in parallel, write shards.

use super::manifest::{GrayKind, Grayscale, ImageRecord, Manifest, ShardInfo, Skipped};
use super::{shard_file, shard_record_file, tmp_path, write_atomic, MANIFEST};
use crate::decode::load_rgb;
use crate::prepare::{square, Planes};
use crate::sample::draw_order;
use crate::source::{list_images, portable, repeat_listed};
use crate::{DataError, PreprocessConfig};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What `write_cache` tells its caller as it goes (for a progress bar).
#[derive(Debug)]
pub enum Event<'a> {
    /// The listing is done: `target` images will be cached.
    Started { listed: usize, target: usize },
    /// `n` more images are in the cache (one processed, or a reused shard).
    Cached { n: usize },
    /// A file was skipped (grayscale or unusable).
    Skipped { path: &'a str, reason: &'a str },
}

#[derive(Clone, Debug)]
pub struct CacheSummary {
    pub cached: usize,
    pub grayscale: usize,
    pub skipped: usize,
    pub shards_written: usize,
    pub shards_reused: usize,
    /// True when `stop` was raised: the cache is valid so far, resumable.
    pub interrupted: bool,
    /// True when the cache was already complete with this config: nothing was done.
    pub already_complete: bool,
    pub manifest: PathBuf,
}

/// The records of one shard, kept beside it so that resume needs no decode.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShardRecord {
    shard: usize,
    /// The positions of the draw this shard covers: [start, end).
    positions: [usize; 2],
    images: Vec<ImageRecord>,
    grayscale: Vec<Grayscale>,
    skipped: Vec<Skipped>,
    uv_sums: [u64; 2],
}

enum Outcome {
    Cached { planes: Planes, width: u32, height: u32, gray: Option<GrayKind> },
    Excluded { gray: Option<GrayKind>, reason: String },
}

/// Builds (or, with `resume`, completes) the cache that `cfg` describes.
///
/// `cfg.source` and `cfg.cache` are used as given (resolve them first).
/// `stop` is checked between shards: raising it ends the run after the shard
/// in progress, leaving a cache that `resume` completes.
pub fn write_cache(
    cfg: &PreprocessConfig,
    resume: bool,
    stop: &AtomicBool,
    observer: &(dyn Fn(Event<'_>) + Sync),
) -> Result<CacheSummary, DataError> {
    cfg.validate()?;
    let mut listing = list_images(&cfg.source, cfg.layout, &cfg.split)?;
    listing.retain(|path| !cfg.exclude.iter().any(|excluded| path.starts_with(excluded)));
    let listing = repeat_listed(listing, &cfg.repeat, &cfg.source)?;
    let out = cfg.cache.as_path();
    prepare_out_dir(out)?;

    let listing_text: Vec<String> = listing.iter().map(|p| portable(p)).collect();
    let listing_hash = colorize_core::fingerprint(listing_text.join("\n").as_bytes());
    let mut manifest = Manifest::empty(cfg, listing.len(), listing_hash)?;
    if out.join(MANIFEST).exists() {
        if let Some(done) = check_existing(cfg, &manifest, resume)? {
            return Ok(done);
        }
    } else {
        manifest.write(out)?;
    }
    let summary = write_shards(cfg, &listing, resume, stop, observer, &mut manifest)?;
    manifest.write(out)?;
    Ok(summary)
}

/// An existing cache in the output folder may be continued only when it was
/// made from the same config and listing, and only with `resume`; a
/// complete one is the answer itself (its summary).
fn check_existing(
    cfg: &PreprocessConfig,
    manifest: &Manifest,
    resume: bool,
) -> Result<Option<CacheSummary>, DataError> {
    let out = cfg.cache.as_path();
    let existing = Manifest::read(out)?;
    if existing.config_hash != manifest.config_hash {
        return Err(DataError::ConfigMismatch {
            path: out.to_path_buf(),
            found: existing.config_hash,
            expected: manifest.config_hash.clone(),
        });
    }
    if existing.listing_hash.as_ref().is_some_and(|h| Some(h) != manifest.listing_hash.as_ref()) {
        return Err(DataError::ListingChanged {
            path: out.to_path_buf(),
            root: cfg.source.clone(),
            then: existing.listed,
            now: manifest.listed,
        });
    }
    if existing.complete {
        return Ok(Some(CacheSummary {
            cached: existing.count,
            grayscale: existing.grayscale.len(),
            skipped: existing.skipped.len(),
            shards_written: 0,
            shards_reused: existing.shards.len(),
            interrupted: false,
            already_complete: true,
            manifest: out.join(MANIFEST),
        }));
    }
    if !resume {
        return Err(DataError::CacheExists(out.to_path_buf()));
    }
    Ok(None)
}

/// The shards, in the seeded draw order, until the target count is cached
/// or `stop` is raised; with `resume`, a shard already written is reused.
/// The manifest is filled from their records.
fn write_shards(
    cfg: &PreprocessConfig,
    listing: &[PathBuf],
    resume: bool,
    stop: &AtomicBool,
    observer: &(dyn Fn(Event<'_>) + Sync),
    manifest: &mut Manifest,
) -> Result<CacheSummary, DataError> {
    let out = cfg.cache.as_path();
    let order = draw_order(listing.len(), cfg.seed);
    let target = cfg.limit.map_or(listing.len(), |limit| limit.min(listing.len()));
    observer(Event::Started { listed: listing.len(), target });

    let mut summary = CacheSummary {
        cached: 0,
        grayscale: 0,
        skipped: 0,
        shards_written: 0,
        shards_reused: 0,
        interrupted: false,
        already_complete: false,
        manifest: out.join(MANIFEST),
    };
    let mut records = Vec::new();
    // A shard's files are written on their own thread while the next shard
    // is decoded (the write is a single-threaded copy that left the other
    // cores idle); it is joined before the next write and at the end.
    std::thread::scope(|scope| -> Result<(), DataError> {
        let mut writing: Option<std::thread::ScopedJoinHandle<'_, Result<(), DataError>>> = None;
        let join = |handle: std::thread::ScopedJoinHandle<'_, Result<(), DataError>>| {
            handle.join().unwrap_or_else(|_| Err(DataError::Loader("the shard writer thread panicked".into())))
        };
        for (k, positions) in order.chunks(cfg.shard_size).enumerate() {
            if summary.cached >= target {
                break;
            }
            if stop.load(Ordering::SeqCst) {
                summary.interrupted = true;
                break;
            }
            let record = match read_shard_record(out, k)? {
                Some(record) if resume => {
                    observer(Event::Cached { n: record.images.len() });
                    summary.shards_reused += 1;
                    record
                }
                _ => {
                    let start = k * cfg.shard_size;
                    let needed = target - summary.cached;
                    summary.shards_written += 1;
                    let shard = build_shard(cfg, listing, positions, start, k, needed, observer)?;
                    if let Some(previous) = writing.take() {
                        join(previous)?;
                    }
                    let record = shard.record.clone();
                    writing = Some(scope.spawn(move || write_shard_files(cfg, shard)));
                    record
                }
            };
            summary.cached += record.images.len();
            records.push(record);
        }
        writing.map_or(Ok(()), join)
    })?;

    for record in &records {
        summary.grayscale += record.grayscale.len();
        summary.skipped += record.skipped.len();
    }
    manifest.complete = !summary.interrupted;
    fill_manifest(manifest, records);
    Ok(summary)
}

/// Creates the output folder and proves it writable before any work is done.
fn prepare_out_dir(out: &Path) -> Result<(), DataError> {
    let unwritable = |error| DataError::Unwritable { path: out.to_path_buf(), error };
    std::fs::create_dir_all(out).map_err(unwritable)?;
    let probe = out.join(".write-probe");
    std::fs::write(&probe, b"").map_err(unwritable)?;
    std::fs::remove_file(&probe).map_err(unwritable)
}

fn read_shard_record(out: &Path, k: usize) -> Result<Option<ShardRecord>, DataError> {
    let json = out.join(shard_record_file(k));
    if !json.exists() || !out.join(shard_file(k)).exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&json).map_err(DataError::io(&json))?;
    let record = serde_json::from_str(&text).map_err(|e| DataError::invalid_cache(&json, e.to_string()))?;
    Ok(Some(record))
}

fn process(cfg: &PreprocessConfig, path: &Path) -> Outcome {
    let decoded = match load_rgb(path) {
        Ok(decoded) => decoded,
        Err(e) => return Outcome::Excluded { gray: None, reason: e.0 },
    };
    let (width, height) = decoded.rgb.dimensions();
    let squared = match square(&decoded.rgb, cfg.size, cfg.crop) {
        Ok(squared) => squared,
        Err(e) => return Outcome::Excluded { gray: None, reason: format!("cannot resample: {e}") },
    };
    let planes = Planes::from_rgb(&squared);
    let gray = if decoded.gray_source {
        Some(GrayKind::GrayFile)
    } else if planes.is_gray(cfg.gray_tolerance) {
        Some(GrayKind::NoChroma)
    } else {
        None
    };
    if gray.is_some() && !cfg.keep_grayscale {
        return Outcome::Excluded { gray, reason: "grayscale".into() };
    }
    Outcome::Cached { planes, width, height, gray }
}

fn build_shard(
    cfg: &PreprocessConfig,
    listing: &[PathBuf],
    positions: &[usize],
    start: usize,
    k: usize,
    needed: usize,
    observer: &(dyn Fn(Event<'_>) + Sync),
) -> Result<BuiltShard, DataError> {
    let outcomes: Vec<Outcome> = positions
        .par_iter()
        .map(|&p| {
            let outcome = process(cfg, &cfg.source.join(&listing[p]));
            if let Outcome::Cached { .. } = outcome {
                observer(Event::Cached { n: 1 });
            }
            outcome
        })
        .collect();

    let side = cfg.size.area();
    let mut record = ShardRecord {
        shard: k,
        positions: [start, start + positions.len()],
        images: Vec::new(),
        grayscale: Vec::new(),
        skipped: Vec::new(),
        uv_sums: [0, 0],
    };
    let mut planes_kept = Vec::new();
    for (offset, (outcome, &p)) in outcomes.into_iter().zip(positions).enumerate() {
        if record.images.len() == needed {
            // The target is met: the rest of the draw was never taken.
            record.positions[1] = start + offset;
            break;
        }
        let path = portable(&listing[p]);
        match outcome {
            Outcome::Cached { planes, width, height, gray } => {
                if let Some(kind) = gray {
                    record.grayscale.push(Grayscale { path: path.clone(), kind });
                }
                let sums = planes.uv_sums();
                record.uv_sums[0] += sums[0];
                record.uv_sums[1] += sums[1];
                planes_kept.push(planes);
                let index = record.images.len();
                record.images.push(ImageRecord { path, width, height, shard: k, index });
            }
            Outcome::Excluded { gray, reason } => {
                observer(Event::Skipped { path: &path, reason: &reason });
                if let Some(kind) = gray {
                    record.grayscale.push(Grayscale { path, kind });
                } else {
                    record.skipped.push(Skipped { path, reason });
                }
            }
        }
    }

    debug_assert!(planes_kept.iter().all(|p| p.y.len() == side));
    Ok(BuiltShard { record, planes: planes_kept })
}

/// A shard decoded and assembled, not yet written.
struct BuiltShard {
    record: ShardRecord,
    /// The cached pictures' planes, in the record's order.
    planes: Vec<Planes>,
}

/// The shard's tensors, then its record: a record on disk means its shard
/// is complete (both are written under temporary names and renamed).
fn write_shard_files(cfg: &PreprocessConfig, shard: BuiltShard) -> Result<(), DataError> {
    let k = shard.record.shard;
    write_shard(&cfg.cache.join(shard_file(k)), cfg.size.get() as usize, &shard.planes)?;
    let json_path = cfg.cache.join(shard_record_file(k));
    let json = serde_json::to_string(&shard.record).map_err(|e| DataError::io(&json_path)(e.into()))?;
    write_atomic(&json_path, json.as_bytes()).map_err(DataError::io(&json_path))
}

/// Writes a shard's planes as safetensors (y: u8 [n, S, S], uv: u8
/// [n, 2, S, S]) straight from each picture's own buffers, so that a shard
/// is never gathered into one buffer first (a copy of 150 KB a picture at
/// 224, into freshly faulted pages). The header is the crate's own
/// (`Metadata`, tensors in its order: uv, then y), padded as it pads; the
/// test checks the bytes against `safetensors::serialize`.
fn write_shard(path: &Path, s: usize, planes: &[Planes]) -> Result<(), DataError> {
    let invalid = |e: safetensors::SafeTensorError| DataError::invalid_cache(path, e.to_string());
    let n = planes.len();
    let (uv_len, y_len) = (n * 2 * s * s, n * s * s);
    let info = |shape: Vec<usize>, start: usize, len: usize| TensorInfo {
        dtype: Dtype::U8,
        shape,
        data_offsets: (start, start + len),
    };
    let metadata = Metadata::new(
        None,
        vec![("uv".into(), info(vec![n, 2, s, s], 0, uv_len)), ("y".into(), info(vec![n, s, s], uv_len, y_len))],
    )
    .map_err(invalid)?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| DataError::invalid_cache(path, e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut head = (header.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(&header);

    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&head)?;
        for p in planes {
            file.write_all(&p.uv)?;
        }
        for p in planes {
            file.write_all(&p.y)?;
        }
        Ok(())
    };
    write().map_err(DataError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(DataError::io(path))
}

fn fill_manifest(manifest: &mut Manifest, records: Vec<ShardRecord>) {
    let mut sums = [0u64; 2];
    for record in records {
        manifest.shards.push(ShardInfo { file: shard_file(record.shard), count: record.images.len() });
        manifest.images.extend(record.images);
        manifest.grayscale.extend(record.grayscale);
        manifest.skipped.extend(record.skipped);
        sums[0] += record.uv_sums[0];
        sums[1] += record.uv_sums[1];
    }
    manifest.count = manifest.images.len();
    let pixels = manifest.count as f64 * manifest.size.area() as f64;
    if pixels > 0.0 {
        manifest.mean_uv = sums.map(|s| s as f64 / pixels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// The hand-assembled shard is byte for byte what the safetensors crate
    /// writes for the same tensors gathered into one buffer each.
    #[test]
    fn a_shard_is_the_bytes_safetensors_writes() {
        let s = 6;
        let planes: Vec<Planes> = (0..3u8)
            .map(|k| Planes {
                y: (0..s * s).map(|i| (i as u8).wrapping_mul(3).wrapping_add(k)).collect(),
                uv: (0..2 * s * s).map(|i| (i as u8).wrapping_mul(7).wrapping_add(50 * k)).collect(),
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("colorize-shard-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shard.safetensors");
        write_shard(&path, s, &planes).unwrap();
        let ours = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let y: Vec<u8> = planes.iter().flat_map(|p| p.y.clone()).collect();
        let uv: Vec<u8> = planes.iter().flat_map(|p| p.uv.clone()).collect();
        let tensors = [
            ("y", TensorView::new(Dtype::U8, vec![3, s, s], &y).unwrap()),
            ("uv", TensorView::new(Dtype::U8, vec![3, 2, s, s], &uv).unwrap()),
        ];
        let reference = safetensors::serialize(tensors, None).unwrap();
        assert_eq!(ours, reference);
    }
}
