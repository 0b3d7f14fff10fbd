//! Where the trunk's weights come from, and checking a weights file.
//!
//! In order: a path given in the config or on the command line; `hub`, which
//! means timm/vgg16.tv_in1k from the Hugging Face cache, downloaded into it
//! (hf-hub) when it is not there yet; by default the offline trunk embedded
//! in this crate (`assets/`).

use crate::ModelError;
use candle_core::safetensors::MmapedSafetensors;
use std::path::{Path, PathBuf};

/// The Hugging Face repository of the paper's trunk, and its file.
pub const HUB_REPO: &str = "timm/vgg16.tv_in1k";
pub const HUB_FILE: &str = "model.safetensors";

/// The folder of the embedded weights: this crate's `assets/`, or where
/// `COLORIZE_ASSETS` says (binaries carried to another machine).
pub fn assets_dir() -> PathBuf {
    match std::env::var_os("COLORIZE_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
    }
}

/// The offline trunk shipped with the project (see `assets/README.md`).
pub fn embedded_trunk() -> PathBuf {
    assets_dir().join("vgg16-trunk-tv-in1k.safetensors")
}

/// The side the embedded colorizer sees when it predicts (its file records
/// it too: trained at 64, `configs/embedded.toml`, and retuned to 224).
pub const EMBEDDED_HEAD_SIDE: u32 = 224;

/// The project's trained head, when one has been committed.
pub fn embedded_head() -> Option<PathBuf> {
    let path = assets_dir().join("colorizer-head.safetensors");
    path.is_file().then_some(path)
}

/// How a head file names the trunk at `path`: `embedded`, `hub` (a file of
/// timm/vgg16.tv_in1k in a hub cache), or the path itself.
pub fn trunk_name(path: &Path) -> String {
    if path == embedded_trunk() {
        "embedded".into()
    } else if path.to_string_lossy().contains(&format!("models--{}", HUB_REPO.replace('/', "--"))) {
        "hub".into()
    } else {
        path.to_string_lossy().into_owned()
    }
}

/// The trunk file a head's recorded trunk name points at (see `trunk_name`).
pub fn trunk_of_name(name: &str) -> Result<PathBuf, ModelError> {
    match name {
        "embedded" => resolve_trunk(None),
        "hub" => resolve_trunk(Some(Path::new("hub"))),
        path => resolve_trunk(Some(Path::new(path))),
    }
}

/// Resolves the trunk's weights file from a config value or flag.
pub fn resolve_trunk(spec: Option<&Path>) -> Result<PathBuf, ModelError> {
    match spec {
        None => {
            let embedded = embedded_trunk();
            if embedded.is_file() {
                Ok(embedded)
            } else {
                from_hub()
            }
        }
        Some(p) if p.as_os_str() == "hub" => from_hub(),
        Some(path) if path.is_file() => Ok(path.to_path_buf()),
        Some(path) => Err(ModelError::MissingWeights(path.to_path_buf())),
    }
}

fn from_hub() -> Result<PathBuf, ModelError> {
    let cache = hub_cache_dir();
    if let Some(path) = find_in_hub_cache(&cache, HUB_REPO, HUB_FILE) {
        return Ok(path);
    }
    let endpoint = std::env::var("HF_ENDPOINT").ok();
    download_from_hub(&cache, endpoint.as_deref())
        .map_err(|reason| ModelError::NoTrunkWeights { hub_cache: cache, reason })
}

/// Downloads timm/vgg16.tv_in1k's `model.safetensors` (all of VGG-16, 528
/// MB; only the trunk's tensors are read) into the hub cache, in the layout
/// the Python `huggingface_hub` uses, so either finds the other's files.
/// `endpoint`: another hub than huggingface.co (a mirror, or a test's).
pub fn download_from_hub(cache: &Path, endpoint: Option<&str>) -> Result<PathBuf, String> {
    let mut builder =
        hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf())).with_progress(true);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.to_string());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    api.model(HUB_REPO.to_string()).get(HUB_FILE).map_err(|e| format!("downloading {HUB_REPO} failed: {e}"))
}

/// The Hugging Face hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (`XDG_CACHE_HOME` honoured).
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface/hub")
}

/// A file of a model repository in the hub cache's layout:
/// `models--{org}--{name}/refs/main` names the snapshot,
/// `models--{org}--{name}/snapshots/{revision}/{file}` holds it.
pub fn find_in_hub_cache(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let revision = std::fs::read_to_string(folder.join("refs/main")).ok()?;
    let path = folder.join("snapshots").join(revision.trim()).join(file);
    path.is_file().then_some(path)
}

/// Opens a safetensors file and checks that each `(key, shape)` is there
/// with that shape, naming the key and both shapes when not.
pub fn check_tensors(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<(), ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingWeights(path.to_path_buf()));
    }
    // SAFETY: the file is only read; weights files are not modified while in use.
    let st = unsafe { MmapedSafetensors::new(path) }
        .map_err(|e| ModelError::BadFile { path: path.to_path_buf(), message: e.to_string() })?;
    for (key, shape) in expected {
        let view = st.get(key).map_err(|_| ModelError::MissingKey { path: path.to_path_buf(), key: key.clone() })?;
        if view.shape() != shape.as_slice() {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                key: key.clone(),
                found: view.shape().to_vec(),
                expected: shape.clone(),
            });
        }
    }
    Ok(())
}

/// The shape of one tensor in a safetensors file.
pub fn tensor_shape(path: &Path, key: &str) -> Result<Vec<usize>, ModelError> {
    // SAFETY: as above.
    let st = unsafe { MmapedSafetensors::new(path) }
        .map_err(|e| ModelError::BadFile { path: path.to_path_buf(), message: e.to_string() })?;
    let view = st.get(key).map_err(|_| ModelError::MissingKey { path: path.to_path_buf(), key: key.into() })?;
    Ok(view.shape().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_file_in_the_hub_cache_layout() {
        let cache = std::env::temp_dir().join(format!("colorize-hub-{}", std::process::id()));
        let snapshot = cache.join("models--timm--vgg16.tv_in1k/snapshots/abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(cache.join("models--timm--vgg16.tv_in1k/refs")).unwrap();
        assert_eq!(find_in_hub_cache(&cache, HUB_REPO, HUB_FILE), None);
        std::fs::write(cache.join("models--timm--vgg16.tv_in1k/refs/main"), "abc123\n").unwrap();
        std::fs::write(snapshot.join(HUB_FILE), b"x").unwrap();
        assert_eq!(find_in_hub_cache(&cache, HUB_REPO, HUB_FILE), Some(snapshot.join(HUB_FILE)));
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn a_failed_download_says_both_ways_to_get_weights() {
        let cache = std::env::temp_dir().join(format!("colorize-hub-none-{}", std::process::id()));
        // Port 9 (discard) on this machine: the connection is refused at once, network or not.
        let reason = download_from_hub(&cache, Some("http://127.0.0.1:9")).unwrap_err();
        assert!(reason.contains("downloading timm/vgg16.tv_in1k failed"), "{reason}");
        let err = ModelError::NoTrunkWeights { hub_cache: cache.clone(), reason }.to_string();
        assert!(err.contains("--vgg-weights") && err.contains("model.trunk_weights"), "{err}");
        assert!(err.contains(&cache.display().to_string()), "{err}");
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn a_missing_path_is_named() {
        let err = resolve_trunk(Some(Path::new("/no/such/trunk.safetensors"))).unwrap_err();
        assert!(err.to_string().contains("/no/such/trunk.safetensors"), "{err}");
    }

    #[test]
    fn the_default_is_the_embedded_trunk() {
        assert_eq!(resolve_trunk(None).unwrap(), embedded_trunk());
    }
}
