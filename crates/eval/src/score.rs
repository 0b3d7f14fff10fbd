//! Scoring: pairs of (prediction, truth) from files, or predictions made
//! here from the truth's gray by a model or a baseline.

use crate::measures::{qssim_map, window::Plane};
use crate::report::{Failure, ImageScores, Report};
use crate::Metric;
use colorize_core::{yuv, Side};
use colorize_data::decode::load_rgb;
use colorize_data::prepare::square;
use colorize_data::source::{is_image_path, list_images, portable, SourceLayout};
use colorize_data::CropPolicy;
use colorize_model::{colorize_image, Colorizer};
use image::{GrayImage, Luma, Rgb, RgbImage};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a prediction comes from.
pub enum Predictor<'a> {
    /// A file per image (pred/truth mode).
    Files,
    /// The model, seeing the gray at `side` x `side`.
    Model(&'a Colorizer, Side),
    /// The gray picture itself: U = V = 128.
    Gray,
    /// Every pixel gets this (U, V) (0..255): a training cache's mean chroma.
    MeanChroma([f64; 2]),
}

impl Predictor<'_> {
    fn predict(&self, truth: &RgbImage) -> Result<RgbImage, String> {
        match self {
            Predictor::Files => Err("a file predictor has no model".into()),
            Predictor::Model(model, side) => colorize_image(model, truth, *side).map_err(|e| e.to_string()),
            Predictor::Gray => Ok(RgbImage::from_fn(truth.width(), truth.height(), |x, y| {
                let g = yuv::luma8(truth.get_pixel(x, y).0);
                Rgb([g, g, g])
            })),
            Predictor::MeanChroma([u, v]) => Ok(RgbImage::from_fn(truth.width(), truth.height(), |x, y| {
                let g = f32::from(yuv::luma8(truth.get_pixel(x, y).0));
                Rgb(yuv::yuv_to_rgb8_keep_luma(g, *u as f32, *v as f32))
            })),
        }
    }

    /// Runs on one thread at a time: a model uses every core by itself.
    fn is_model(&self) -> bool {
        matches!(self, Predictor::Model(..))
    }
}

/// How truths are prepared before scoring.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "compare_at", rename_all = "kebab-case")]
pub enum Protocol {
    /// Truth and prediction as the files are (pred/truth mode).
    AsIs,
    /// The truth squared like preprocessing (resize + crop to side x side);
    /// the model predicts from its gray at that size.
    ModelSize { side: Side, crop: CropPolicy },
    /// The original picture; the prediction's chroma is upsampled and joined
    /// to the original Y.
    FullRes,
}

/// One image to score.
#[derive(Clone, Debug)]
pub struct Item {
    /// Relative path, as reported.
    pub name: String,
    pub truth: PathBuf,
    /// The prediction's file, in pred/truth mode.
    pub pred: Option<PathBuf>,
}

/// Pairs two folders by relative path without extension (a PNG prediction
/// matches a JPEG truth). Returns the pairs and the unmatched names.
pub fn pair_folders(pred: &Path, truth: &Path) -> Result<(Vec<Item>, Vec<String>), colorize_data::DataError> {
    let key = |p: &Path| portable(&p.with_extension(""));
    let preds: BTreeMap<String, PathBuf> =
        list_images(pred, SourceLayout::Folder, "")?.into_iter().map(|p| (key(&p), p)).collect();
    let mut items = Vec::new();
    let mut unmatched = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for t in list_images(truth, SourceLayout::Folder, "")? {
        let k = key(&t);
        match preds.get(&k) {
            Some(p) => {
                seen.insert(k.clone());
                items.push(Item { name: portable(&t), truth: truth.join(&t), pred: Some(pred.join(p)) });
            }
            None => unmatched.push(format!("truth only: {}", t.display())),
        }
    }
    for (k, p) in &preds {
        if !seen.contains(k) {
            unmatched.push(format!("prediction only: {}", p.display()));
        }
    }
    Ok((items, unmatched))
}

/// The images of a dataset root, as items (no prediction files).
pub fn dataset_items(root: &Path, layout: SourceLayout, split: &str) -> Result<Vec<Item>, colorize_data::DataError> {
    Ok(list_images(root, layout, split)?
        .into_iter()
        .filter(|p| is_image_path(p))
        .map(|p| Item { name: portable(&p), truth: root.join(&p), pred: None })
        .collect())
}

/// At most `limit` of `items`, the first of a seeded draw, kept in their
/// listed order: the same subset on every machine for the same seed.
pub fn seeded_subset(items: Vec<Item>, limit: usize, seed: u64) -> Vec<Item> {
    let mut chosen: Vec<usize> = colorize_data::sample::draw_order(items.len(), seed).into_iter().take(limit).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| items[i].clone()).collect()
}

/// What `score` is told to do.
pub struct Scoring<'a> {
    pub protocol: Protocol,
    pub metrics: Vec<Metric>,
    /// The main predictor first, then baselines, each with its report name.
    pub predictors: Vec<(String, Predictor<'a>)>,
    /// Write each image's QSSIM map (main prediction) as a gray PNG here.
    pub qssim_maps: Option<PathBuf>,
    /// Write each image's pictures for the HTML report here (`html`).
    pub pictures: Option<PathBuf>,
}

/// Scores every item: in chunks, so that memory stays bounded whatever the
/// number of images; loading and measuring in parallel (rayon), model
/// predictions one at a time (the model parallelises internally).
pub fn score(
    items: &[Item],
    scoring: &Scoring<'_>,
    protocol_info: serde_json::Value,
    unmatched: Vec<String>,
    on_done: &(dyn Fn(usize) + Sync),
) -> Report {
    let chunk = (2 * rayon::current_num_threads()).max(4);
    let mut rows = Vec::with_capacity(items.len());
    let mut failed = Vec::new();
    for group in items.chunks(chunk) {
        let truths: Vec<Result<RgbImage, String>> =
            group.par_iter().map(|item| load_truth(item, scoring.protocol)).collect();
        let mut predictions: Vec<Vec<Result<RgbImage, String>>> = Vec::new();
        for (_, predictor) in &scoring.predictors {
            let predict = |(item, truth): (&Item, &Result<RgbImage, String>)| -> Result<RgbImage, String> {
                let truth = truth.as_ref().map_err(Clone::clone)?;
                match (predictor, &item.pred) {
                    (Predictor::Files, Some(path)) => {
                        load_rgb(path).map(|d| d.rgb).map_err(|e| format!("{}: {e}", path.display()))
                    }
                    _ => predictor.predict(truth),
                }
            };
            let made = if predictor.is_model() {
                group.iter().zip(&truths).map(predict).collect()
            } else {
                group.par_iter().zip(&truths).map(predict).collect()
            };
            predictions.push(made);
        }
        let scored: Vec<Result<ImageScores, Failure>> = group
            .par_iter()
            .enumerate()
            .map(|(i, item)| {
                let fail = |reason: String| Failure { name: item.name.clone(), reason };
                let truth = truths[i].as_ref().map_err(|e| fail(e.clone()))?;
                let mut scores = BTreeMap::new();
                for (p, (name, _)) in scoring.predictors.iter().enumerate() {
                    let pred = predictions[p][i].as_ref().map_err(|e| fail(e.clone()))?;
                    let prefix = if p == 0 { String::new() } else { format!("{name}.") };
                    for metric in &scoring.metrics {
                        let value = metric.compute(pred, truth).map_err(|e| {
                            fail(format!("{}: {e}", item.pred.as_ref().unwrap_or(&item.truth).display()))
                        })?;
                        // Undefined for this picture (hue of a colourless
                        // truth): left out of the mean; n says how many count.
                        if !(value.is_nan() && metric.may_be_undefined()) {
                            scores.insert(format!("{prefix}{}", metric.name()), value);
                        }
                    }
                    if p == 0 {
                        if let Some(dir) = &scoring.qssim_maps {
                            write_qssim_map(dir, &item.name, pred, truth).map_err(fail)?;
                        }
                        if let Some(dir) = &scoring.pictures {
                            crate::html::write_pictures(dir, &item.name, pred, truth).map_err(fail)?;
                        }
                    }
                }
                Ok(ImageScores { name: item.name.clone(), scores })
            })
            .collect();
        for result in scored {
            match result {
                Ok(row) => rows.push(row),
                Err(failure) => failed.push(failure),
            }
        }
        on_done(group.len());
    }
    let names: Vec<String> = scoring.predictors.iter().map(|(n, _)| n.clone()).collect();
    Report::new(protocol_info, &names, &scoring.metrics, rows, failed, unmatched)
}

fn load_truth(item: &Item, protocol: Protocol) -> Result<RgbImage, String> {
    let decoded = load_rgb(&item.truth).map_err(|e| format!("{}: {e}", item.truth.display()))?;
    Ok(match protocol {
        Protocol::AsIs | Protocol::FullRes => decoded.rgb,
        Protocol::ModelSize { side, crop } => {
            square(&decoded.rgb, side, crop).map_err(|e| format!("{}: cannot resample: {e}", item.truth.display()))?
        }
    })
}

fn write_qssim_map(dir: &Path, name: &str, pred: &RgbImage, truth: &RgbImage) -> Result<(), String> {
    let map: Plane = qssim_map(pred, truth).map_err(|e| e.to_string())?;
    let image = GrayImage::from_fn(map.w as u32, map.h as u32, |x, y| {
        Luma([(map.at(x as usize, y as usize).clamp(0.0, 1.0) * 255.0).round() as u8])
    });
    let path = dir.join(name).with_extension("qssim.png");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    image.save(&path).map_err(|e| format!("{}: {e}", path.display()))
}
