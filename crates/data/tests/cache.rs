//! The preprocessing cache end to end, on photographs the tests make.

use colorize_core::Side;
use colorize_data::cache::{Event, GrayKind, Grayscale};
use colorize_data::{batches, write_cache, BatchLoader, CropPolicy, PreprocessConfig, SourceLayout, UvCache};
use image::{ImageFormat, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quiet(_: Event<'_>) {}

/// The method's formulas, f64, rounded half away from zero, clamped.
fn reference_yuv(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb.map(f64::from);
    [
        r * 0.299 + g * 0.587 + b * 0.114,
        r * -0.168736 + g * -0.331264 + b * 0.5 + 128.0,
        r * 0.5 + g * -0.418688 + b * -0.081312 + 128.0,
    ]
    .map(|x| (x + 1e-9).round().clamp(0.0, 255.0) as u8)
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 90]))
}

/// A small dataset with every kind of file the cache must handle.
fn make_dataset(root: &Path) {
    let class = root.join("class-a");
    std::fs::create_dir_all(&class).unwrap();
    gradient(40, 30).save(class.join("gradient.png")).unwrap();
    for (i, colour) in [[200u8, 30, 40], [20, 160, 220], [250, 250, 10]].iter().enumerate() {
        RgbImage::from_pixel(24, 20, Rgb(*colour)).save(class.join(format!("solid{i}.png"))).unwrap();
    }
    // A gray JPEG (one component), a colour photo stored as JPEG.
    image::GrayImage::from_fn(32, 32, |x, _| image::Luma([(x * 8) as u8]))
        .save_with_format(class.join("gray.jpg"), ImageFormat::Jpeg)
        .unwrap();
    gradient(48, 36).save_with_format(class.join("photo.jpg"), ImageFormat::Jpeg).unwrap();
    // A PNG named .JPEG, as ILSVRC has.
    gradient(20, 20).save_with_format(class.join("disguised.JPEG"), ImageFormat::Png).unwrap();
    // Broken files.
    let mut jpeg = Vec::new();
    gradient(64, 64).write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
    std::fs::write(class.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(class.join("empty.jpg"), b"").unwrap();
    std::fs::write(class.join("text.jpg"), b"this is not a picture").unwrap();
}

fn config(source: &Path, cache: &Path, size: u32) -> PreprocessConfig {
    let mut cfg = PreprocessConfig::new(source, cache);
    cfg.size = Side::new(size).unwrap();
    cfg.layout = SourceLayout::Folder;
    cfg.shard_size = 3;
    cfg
}

#[test]
fn solid_colours_are_cached_with_the_exact_formulas() {
    let dir = tempdir("solid");
    make_dataset(&dir.join("src"));
    let cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    let summary = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    assert!(!summary.interrupted);
    let cache = UvCache::open(&dir.join("cache")).unwrap();
    let mut checked = 0;
    for (i, colour) in [[200u8, 30, 40], [20, 160, 220], [250, 250, 10]].iter().enumerate() {
        let name = format!("class-a/solid{i}.png");
        let index = (0..cache.len()).find(|&j| cache.record(j).unwrap().path == name).expect("solid image cached");
        let record = cache.record(index).unwrap();
        assert_eq!((record.width, record.height), (24, 20));
        let image = cache.get(index).unwrap();
        let [y, u, v] = reference_yuv(*colour);
        assert!(image.y.iter().all(|&p| p == y), "{name}: Y");
        assert!(image.uv[..256].iter().all(|&p| p == u), "{name}: U");
        assert!(image.uv[256..].iter().all(|&p| p == v), "{name}: V");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn bad_files_are_skipped_and_named_and_gray_ones_excluded() {
    let dir = tempdir("bad");
    make_dataset(&dir.join("src"));
    let cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    let summary = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let cache = UvCache::open(&dir.join("cache")).unwrap();
    let manifest = cache.manifest();
    let mut skipped: Vec<&str> = manifest.skipped.iter().map(|s| s.path.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["class-a/empty.jpg", "class-a/text.jpg", "class-a/truncated.jpg"], "{:?}", manifest.skipped);
    assert!(manifest.skipped.iter().all(|s| !s.reason.is_empty()));
    let gray = [Grayscale { path: "class-a/gray.jpg".into(), kind: GrayKind::GrayFile }];
    assert_eq!(manifest.grayscale, gray);
    assert_eq!(summary.cached, 6);
    assert!(manifest.images.iter().any(|r| r.path == "class-a/disguised.JPEG"));

    // keep_grayscale caches it, and still lists it as grayscale.
    let mut keep = config(&dir.join("src"), &dir.join("cache-keep"), 16);
    keep.keep_grayscale = true;
    let summary = write_cache(&keep, false, &AtomicBool::new(false), &quiet).unwrap();
    assert_eq!(summary.cached, 7);
    let cache = UvCache::open(&dir.join("cache-keep")).unwrap();
    assert_eq!(cache.manifest().grayscale, gray);
}

#[test]
fn the_limit_draws_the_same_images_in_the_same_order() {
    let dir = tempdir("limit");
    make_dataset(&dir.join("src"));
    let mut cfg = config(&dir.join("src"), &dir.join("a"), 16);
    cfg.limit = Some(4);
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    cfg.cache = dir.join("b");
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let a = UvCache::open(&dir.join("a")).unwrap();
    let b = UvCache::open(&dir.join("b")).unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!(a.manifest().images, b.manifest().images);
    cfg.cache = dir.join("c");
    cfg.seed = 99;
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let c = UvCache::open(&dir.join("c")).unwrap();
    assert_ne!(a.manifest().images, c.manifest().images, "another seed draws another sample");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_bytes() {
    let dir = tempdir("resume");
    make_dataset(&dir.join("src"));
    let whole = config(&dir.join("src"), &dir.join("whole"), 16);
    write_cache(&whole, false, &AtomicBool::new(false), &quiet).unwrap();

    let parted = config(&dir.join("src"), &dir.join("parted"), 16);
    let stop = AtomicBool::new(false);
    let stop_after_first = |event: Event<'_>| {
        if let Event::Cached { .. } = event {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let summary = write_cache(&parted, false, &stop, &stop_after_first).unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.shards_written, 1);
    assert!(UvCache::open(&dir.join("parted")).is_err(), "an interrupted cache is not readable");
    // A shard half-written when the process died (kill -9) is redone.
    std::fs::write(dir.join("parted/shard-000001.safetensors.tmp"), b"garbage").unwrap();
    // Without --resume the existing cache is protected.
    let err = write_cache(&parted, false, &AtomicBool::new(false), &quiet).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");

    let summary = write_cache(&parted, true, &AtomicBool::new(false), &quiet).unwrap();
    assert_eq!(summary.shards_reused, 1);
    assert!(!summary.interrupted);
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir.join("whole")), names(&dir.join("parted")));
    // Once complete, the same command again is done at once, not refused.
    let again = write_cache(&parted, false, &AtomicBool::new(false), &quiet).unwrap();
    assert!(again.already_complete && again.shards_written == 0);
    assert_eq!(again.cached, summary.cached);
    for name in names(&dir.join("whole")) {
        let a = std::fs::read(dir.join("whole").join(&name)).unwrap();
        let b = std::fs::read(dir.join("parted").join(&name)).unwrap();
        if name == "manifest.json" {
            // Identical but for the cache path it records.
            let strip = |bytes: &[u8], folder: &str| String::from_utf8_lossy(bytes).replace(folder, "CACHE");
            assert_eq!(strip(&a, "whole"), strip(&b, "parted"));
        } else {
            assert!(a == b, "{name} differs after resume");
        }
    }
}

#[test]
fn excluded_folders_are_left_out() {
    let dir = tempdir("exclude");
    make_dataset(&dir.join("src"));
    make_dataset(&dir.join("src/held-out"));
    let mut cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    cfg.exclude = vec![PathBuf::from("held-out")];
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let cache = UvCache::open(&dir.join("cache")).unwrap();
    assert_eq!(cache.manifest().listed, 10);
    assert!(cache.manifest().images.iter().all(|r| !r.path.starts_with("held-out")));
}

#[test]
fn repeated_folders_are_cached_that_many_times() {
    let dir = tempdir("repeat");
    make_dataset(&dir.join("src"));
    make_dataset(&dir.join("src/scenes"));
    let plain = config(&dir.join("src"), &dir.join("plain"), 16);
    write_cache(&plain, false, &AtomicBool::new(false), &quiet).unwrap();
    let mut cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    cfg.repeat.insert(PathBuf::from("scenes"), 3);
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let count = |cache: &str, inside: &str| {
        let cache = UvCache::open(&dir.join(cache)).unwrap();
        cache.manifest().images.iter().filter(|r| r.path.starts_with(inside)).count()
    };
    let (scenes, others) = (count("plain", "scenes/"), count("plain", "class-a/"));
    assert!(scenes > 0 && others > 0);
    assert_eq!((count("cache", "scenes/"), count("cache", "class-a/")), (3 * scenes, others));
    assert_eq!(UvCache::open(&dir.join("cache")).unwrap().manifest().listed, 10 + 3 * 10);
    assert_ne!(cfg.hash().unwrap(), plain.hash().unwrap(), "the repeat is part of the cache's fingerprint");
    assert!(!plain.content_key().unwrap().contains("\"repeat\":"), "caches made without it keep their fingerprint");

    // A path that matches nothing, or a count out of range, is refused by name.
    cfg.repeat = [(PathBuf::from("scenes/typo"), 2)].into();
    let err = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap_err().to_string();
    assert!(err.contains("data.repeat") && err.contains("scenes/typo"), "{err}");
    cfg.repeat = [(PathBuf::from("scenes"), 0)].into();
    let err = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap_err().to_string();
    assert!(err.contains("scenes") && err.contains("1 to 1000"), "{err}");
}

#[test]
fn a_resume_after_the_source_changed_is_refused() {
    let dir = tempdir("listing");
    make_dataset(&dir.join("src"));
    let cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    let stop = AtomicBool::new(true);
    let summary = write_cache(&cfg, false, &stop, &quiet).unwrap();
    assert!(summary.interrupted);
    gradient(30, 30).save(dir.join("src/class-a/new.png")).unwrap();
    let err = write_cache(&cfg, true, &AtomicBool::new(false), &quiet).unwrap_err().to_string();
    assert!(err.contains("another listing") && err.contains("10 images then, 11 now"), "{err}");
    std::fs::remove_file(dir.join("src/class-a/new.png")).unwrap();
    assert!(write_cache(&cfg, true, &AtomicBool::new(false), &quiet).is_ok());
}

#[test]
fn a_resume_with_another_config_is_refused() {
    let dir = tempdir("mismatch");
    make_dataset(&dir.join("src"));
    let mut cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    cfg.size = Side::new(20).unwrap();
    let err = write_cache(&cfg, true, &AtomicBool::new(false), &quiet).unwrap_err();
    assert!(err.to_string().contains("another configuration"), "{err}");
}

#[test]
fn a_wrong_source_or_an_unwritable_out_fail_at_once_naming_the_path() {
    let dir = tempdir("paths");
    let cfg = config(&dir.join("no-such-folder"), &dir.join("cache"), 16);
    let err = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap_err();
    assert!(err.to_string().contains("no-such-folder"), "{err}");

    make_dataset(&dir.join("src"));
    std::fs::write(dir.join("a-file"), b"").unwrap();
    let cfg = config(&dir.join("src"), &dir.join("a-file/cache"), 16);
    let err = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

#[test]
fn cmyk_16_bit_and_rotated_files_decode_to_the_right_rgb() {
    let dir = tempdir("formats");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // CMYK JPEG of a solid orange (R 230, G 120, B 30), plain (non-Adobe-inverted) CMYK.
    let (r, g, b) = (230f64, 120f64, 30f64);
    let k = 1.0 - r.max(g).max(b) / 255.0;
    let cmyk = [r, g, b].map(|c| ((1.0 - c / 255.0 - k) / (1.0 - k) * 255.0).round() as u8);
    let kk = (k * 255.0).round() as u8;
    let pixels: Vec<u8> = (0..32 * 32).flat_map(|_| [cmyk[0], cmyk[1], cmyk[2], kk]).collect();
    let encoder = jpeg_encoder::Encoder::new_file(src.join("cmyk.jpg"), 100).unwrap();
    encoder.encode(&pixels, 32, 32, jpeg_encoder::ColorType::Cmyk).unwrap();
    // A 16-bit PNG of a solid colour whose 8-bit value is known.
    let deep = image::ImageBuffer::<Rgb<u16>, _>::from_pixel(20, 20, Rgb([257 * 10, 257 * 200, 257 * 128]));
    deep.save(src.join("deep.png")).unwrap();
    // A JPEG 40 wide and 20 high whose EXIF says "rotate 90° clockwise" (6).
    let mut jpeg = Vec::new();
    gradient(40, 20).write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
    std::fs::write(src.join("rotated.jpg"), with_exif_orientation(&jpeg, 6)).unwrap();

    let cfg = config(&src, &dir.join("cache"), 16);
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let cache = UvCache::open(&dir.join("cache")).unwrap();
    let find = |name: &str| (0..cache.len()).find(|&i| cache.record(i).unwrap().path == name).unwrap();

    let cmyk = cache.get(find("cmyk.jpg")).unwrap();
    let [y, u, v] = reference_yuv([230, 120, 30]);
    let close = |got: u8, want: u8| got.abs_diff(want) <= 4;
    assert!(close(cmyk.y[100], y) && close(cmyk.uv[100], u) && close(cmyk.uv[356], v), "CMYK decoded wrongly");

    let deep = cache.get(find("deep.png")).unwrap();
    let [y, u, v] = reference_yuv([10, 200, 128]);
    assert_eq!((deep.y[0], deep.uv[0], deep.uv[256]), (y, u, v));

    let rotated = cache.record(find("rotated.jpg")).unwrap();
    assert_eq!((rotated.width, rotated.height), (20, 40), "EXIF orientation applied");
}

/// Inserts an APP1 Exif segment holding one Orientation tag after the SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn batches_are_reproducible_from_seed_and_epoch_and_resume_mid_epoch() {
    let dir = tempdir("batches");
    make_dataset(&dir.join("src"));
    let cfg = config(&dir.join("src"), &dir.join("cache"), 16);
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let cache = Arc::new(UvCache::open(&dir.join("cache")).unwrap());
    assert_eq!(cache.len(), 6);

    let mut loader = BatchLoader::start(cache.clone(), 5, 4, 0, 0).unwrap();
    let first: Vec<_> = (0..6).map(|_| loader.next_batch().unwrap()).collect();
    // 6 images, batch 4: batches of 4 and 2, epoch after epoch.
    let shape: Vec<(u64, usize, usize)> = first.iter().map(|b| (b.epoch, b.index, b.ids.len())).collect();
    assert_eq!(shape, [(0, 0, 4), (0, 1, 2), (1, 0, 4), (1, 1, 2), (2, 0, 4), (2, 1, 2)]);
    let mut epoch0: Vec<usize> = first[0].ids.iter().chain(&first[1].ids).copied().collect();
    epoch0.sort_unstable();
    assert_eq!(epoch0, (0..6).collect::<Vec<_>>(), "an epoch visits every image once");
    assert_ne!(first[0].ids, first[2].ids[..], "epochs are shuffled differently");
    // The batch holds the cached planes of its ids.
    let b = &first[0];
    assert_eq!(&b.y[256..512], cache.get(b.ids[1]).unwrap().y);
    assert_eq!(&b.uv[512..1024], cache.get(b.ids[1]).unwrap().uv);

    let mut loader = BatchLoader::start(cache.clone(), 5, 4, 1, 1).unwrap();
    let resumed: Vec<_> = (0..3).map(|_| loader.next_batch().unwrap()).collect();
    for (a, b) in first[3..].iter().zip(&resumed) {
        assert_eq!((a.epoch, a.index, &a.ids, &a.y), (b.epoch, b.index, &b.ids, &b.y));
    }
    assert_eq!(batches::epoch_order(6, 5, 0), batches::epoch_order(6, 5, 0));
}

#[test]
fn squash_keeps_the_whole_picture() {
    let dir = tempdir("squash");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Left half red, right half blue, 64x16: centre crop is mixed, squash keeps both ends.
    RgbImage::from_fn(64, 16, |x, _| if x < 32 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) })
        .save(src.join("wide.png"))
        .unwrap();
    let mut cfg = config(&src, &dir.join("cache"), 16);
    cfg.crop = CropPolicy::Squash;
    write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let cache = UvCache::open(&dir.join("cache")).unwrap();
    let image = cache.get(0).unwrap();
    assert_eq!(image.y[16 * 8], reference_yuv([255, 0, 0])[0]);
    assert_eq!(image.y[16 * 8 + 15], reference_yuv([0, 0, 255])[0]);
}

/// A picture with detail everywhere (noise on a gradient), so that every
/// part of a JPEG's scan carries data.
fn detailed(w: u32, h: u32) -> RgbImage {
    let mut rng = colorize_core::Rng::new(11);
    RgbImage::from_fn(w, h, |x, y| {
        let base = [(x * 255 / w) as u8, (y * 255 / h) as u8, 120];
        Rgb(base.map(|b| b.saturating_add(rng.below(60) as u8)))
    })
}

#[test]
fn truncated_files_are_skipped_as_truncated_never_cached() {
    let dir = tempdir("truncated");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let encode = |format: ImageFormat| {
        let mut bytes = Vec::new();
        detailed(160, 120).write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
        bytes
    };
    let (jpeg, png) = (encode(ImageFormat::Jpeg), encode(ImageFormat::Png));
    let cuts = [("third", jpeg.len() / 3), ("two-thirds", 2 * jpeg.len() / 3), ("all-but-two", jpeg.len() - 2)];
    for (name, len) in cuts {
        std::fs::write(src.join(format!("cut-{name}.jpg")), &jpeg[..len]).unwrap();
    }
    std::fs::write(src.join("cut.png"), &png[..png.len() - 20]).unwrap();
    std::fs::write(src.join("whole.jpg"), &jpeg).unwrap();
    // Bytes after the end-of-image marker (some cameras append data) are fine.
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"appended by a camera");
    std::fs::write(src.join("trailing.jpg"), &trailing).unwrap();

    let cfg = config(&src, &dir.join("cache"), 16);
    let summary = write_cache(&cfg, false, &AtomicBool::new(false), &quiet).unwrap();
    let manifest = UvCache::open(&dir.join("cache")).unwrap().manifest().clone();
    let mut skipped: Vec<(&str, &str)> =
        manifest.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    skipped.sort();
    let names: Vec<&str> = skipped.iter().map(|s| s.0).collect();
    assert_eq!(names, ["cut-all-but-two.jpg", "cut-third.jpg", "cut-two-thirds.jpg", "cut.png"], "{skipped:?}");
    assert!(skipped.iter().all(|(_, reason)| reason.starts_with("truncated")), "{skipped:?}");
    assert_eq!(summary.cached, 2, "the whole file and the one with trailing bytes");
}
