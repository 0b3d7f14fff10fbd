//! The real ILSVRC-style sample in `../shared`, when it is there.

use colorize_core::Side;
use colorize_data::cache::GrayKind;
use colorize_data::{write_cache, PreprocessConfig, SourceLayout, UvCache};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn shared_dataset() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/ilsvrc-mini");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!("skipped: {} is absent (the shared datasets are not on this machine)", root.display());
        None
    }
}

#[test]
fn ilsvrc_mini_has_1000_images_of_which_26_are_grayscale() {
    let Some(root) = shared_dataset() else { return };
    let cache = std::env::temp_dir().join(format!("colorize-ilsvrc-mini-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let mut cfg = PreprocessConfig::new(&root, &cache);
    cfg.layout = SourceLayout::Ilsvrc;
    cfg.size = Side::new(32).unwrap();
    let summary = write_cache(&cfg, false, &AtomicBool::new(false), &|_| {}).unwrap();
    let reader = UvCache::open(&cache).unwrap();
    let manifest = reader.manifest();
    assert_eq!(manifest.listed, 1000);
    assert_eq!(manifest.skipped, [], "no file of the sample is broken");
    // 23 files are gray JPEGs (one component); 3 more (crutch, hook,
    // trombone) are colour JPEGs whose chroma is zero everywhere.
    let count = |kind| manifest.grayscale.iter().filter(|g| g.kind == kind).count();
    assert_eq!(count(GrayKind::GrayFile), 23, "{:?}", manifest.grayscale);
    assert_eq!(count(GrayKind::NoChroma), 3, "{:?}", manifest.grayscale);
    assert_eq!(summary.grayscale, 26);
    assert_eq!(reader.len(), 974);
    assert!(manifest.images.iter().all(|r| r.path.starts_with("train/n")));
    let _ = std::fs::remove_dir_all(&cache);
}
