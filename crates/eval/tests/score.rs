//! Scoring folders: pairing, unmatched files, failures named, baselines.

use colorize_data::SourceLayout;
use colorize_eval::score::{dataset_items, pair_folders};
use colorize_eval::{score, Metric, Predictor, Protocol, Scoring};
use image::{Rgb, RgbImage};
use std::path::PathBuf;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn photo(w: u32, h: u32, shift: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([((x * 7 + shift) % 256) as u8, ((y * 5) % 256) as u8, ((x + y) % 200) as u8]))
}

#[test]
fn folders_pair_by_relative_path_and_list_the_unmatched() {
    let dir = tempdir("pairs");
    let (pred, truth) = (dir.join("pred"), dir.join("truth"));
    for d in [&pred, &truth] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
    }
    photo(32, 24, 0).save(truth.join("a.jpg")).unwrap();
    photo(32, 24, 0).save(pred.join("a.png")).unwrap(); // PNG prediction of a JPEG truth
    photo(32, 24, 9).save(truth.join("sub/b.png")).unwrap();
    photo(32, 24, 0).save(pred.join("sub/b.png")).unwrap();
    photo(32, 24, 0).save(truth.join("only-truth.png")).unwrap();
    photo(32, 24, 0).save(pred.join("only-pred.png")).unwrap();
    photo(32, 20, 0).save(truth.join("c.png")).unwrap();
    photo(32, 24, 0).save(pred.join("c.png")).unwrap(); // wrong size

    let (items, unmatched) = pair_folders(&pred, &truth).unwrap();
    let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a.jpg", "c.png", "sub/b.png"]);
    assert_eq!(unmatched.len(), 2, "{unmatched:?}");
    assert!(
        unmatched.iter().any(|u| u.contains("only-truth.png")) && unmatched.iter().any(|u| u.contains("only-pred.png"))
    );

    let scoring = Scoring {
        protocol: Protocol::AsIs,
        metrics: vec![Metric::Qssim, Metric::Psnr],
        predictors: vec![("prediction".into(), Predictor::Files)],
        qssim_maps: Some(dir.join("maps")),
        pictures: None,
    };
    let report = score(&items, &scoring, serde_json::json!({}), unmatched, &|_| {});
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].name, "c.png");
    assert!(report.failed[0].reason.contains("sizes differ") && report.failed[0].reason.contains("c.png"));
    let sub = report.images.iter().find(|r| r.name == "sub/b.png").unwrap();
    assert!(sub.scores["qssim"] < 1.0);
    assert!(dir.join("maps/sub/b.qssim.png").is_file(), "QSSIM map written");
    assert_eq!(report.metrics["qssim"].n, 2);
    // a.png is a lossless copy of what a.jpg was made from, but JPEG is lossy.
    let a = report.images.iter().find(|r| r.name == "a.jpg").unwrap();
    assert!(a.scores["qssim"] > 0.9);
}

#[test]
fn the_gray_baseline_is_perfect_on_gray_pictures_and_below_on_colour() {
    let dir = tempdir("baseline");
    let gray = RgbImage::from_fn(40, 40, |x, y| {
        let g = ((x * 3 + y * 2) % 256) as u8;
        Rgb([g, g, g])
    });
    gray.save(dir.join("gray.png")).unwrap();
    photo(40, 40, 3).save(dir.join("colour.png")).unwrap();
    let items = dataset_items(&dir, SourceLayout::Folder, "").unwrap();
    let side = colorize_core::Side::new(32).unwrap();
    let scoring = Scoring {
        protocol: Protocol::ModelSize { side, crop: colorize_data::CropPolicy::Center },
        metrics: vec![Metric::Qssim, Metric::Auc],
        predictors: vec![
            ("gray".into(), Predictor::Gray),
            ("mean-chroma".into(), Predictor::MeanChroma([128.0, 128.0])),
        ],
        qssim_maps: None,
        pictures: None,
    };
    let report = score(&items, &scoring, serde_json::json!({}), vec![], &|_| {});
    let row = |name: &str| report.images.iter().find(|r| r.name == name).unwrap();
    assert_eq!(row("gray.png").scores["qssim"], 1.0);
    assert_eq!(row("gray.png").scores["auc"], 1.0);
    assert!(row("colour.png").scores["qssim"] < 1.0);
    // Mean chroma of 128 is the gray baseline itself.
    assert_eq!(row("colour.png").scores["qssim"], row("colour.png").scores["mean-chroma.qssim"]);
    assert_eq!(report.baselines["mean-chroma"]["qssim"].n, 2);
}
