//! Validation during training: a held-out set scored with the eval crate's
//! measures at the cache's size, the gray baseline computed once beside it,
//! the training objective's loss on the same pictures, and a few
//! gray | prediction | truth strips for TensorBoard.

use crate::config::ValidationConfig;
use colorize_core::Side;
use colorize_data::decode::load_rgb;
use colorize_data::prepare::{square, Planes};
use colorize_data::CropPolicy;
use colorize_eval::score::{dataset_items, seeded_subset};
use colorize_eval::{score, Item, Predictor, Protocol, Scoring, Summary};

use crate::loss::Objective;
use colorize_model::{comparison_strip, Colorizer, ModelError};
use image::RgbImage;
use std::collections::BTreeMap;

/// A validation's scores and how many pictures could not be scored.
#[derive(Clone, Debug)]
pub struct ValidationScores {
    pub metrics: BTreeMap<String, Summary>,
    /// Pictures that failed (unreadable, too small, a model error), with
    /// the reason; they are left out of the means.
    pub failed: Vec<colorize_eval::Failure>,
}

pub struct Validator {
    config: ValidationConfig,
    items: Vec<Item>,
    side: Side,
    crop: CropPolicy,
    /// The gray baseline's scores on the same images (they never change).
    pub gray_baseline: BTreeMap<String, Summary>,
    /// The scores of the training cache's mean chroma everywhere: the
    /// constant a model must beat to have learnt anything about colour.
    pub mean_chroma_baseline: BTreeMap<String, Summary>,
    /// The truths of the preview pictures, squared.
    previews: Vec<(String, RgbImage)>,
}

/// Pictures per forward pass of the held-out loss.
const LOSS_BATCH: usize = 16;

impl Validator {
    /// `mean_uv`: the training cache's mean (U, V), 0..255.
    pub fn new(
        config: &ValidationConfig,
        side: Side,
        crop: CropPolicy,
        mean_uv: [f64; 2],
    ) -> Result<Validator, colorize_data::DataError> {
        let mut items = dataset_items(&config.source, config.layout, &config.split)?;
        if let Some(limit) = config.limit {
            items = seeded_subset(items, limit, 0x7a1d);
        }
        let mut validator = Validator {
            config: config.clone(),
            items,
            side,
            crop,
            gray_baseline: BTreeMap::new(),
            mean_chroma_baseline: BTreeMap::new(),
            previews: Vec::new(),
        };
        validator.gray_baseline = validator.score(Predictor::Gray);
        validator.mean_chroma_baseline = validator.score(Predictor::MeanChroma(mean_uv));
        validator.previews = validator
            .items
            .iter()
            .filter_map(|item| Some((item.name.clone(), validator.squared(item)?)))
            .take(config.images)
            .collect();
        Ok(validator)
    }

    /// An item's truth squared to the side, if it can be read.
    fn squared(&self, item: &Item) -> Option<RgbImage> {
        square(&load_rgb(&item.truth).ok()?.rgb, self.side, self.crop).ok()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn score(&self, predictor: Predictor<'_>) -> BTreeMap<String, Summary> {
        self.score_with_failures(predictor).metrics
    }

    fn score_with_failures(&self, predictor: Predictor<'_>) -> ValidationScores {
        let scoring = Scoring {
            protocol: Protocol::ModelSize { side: self.side, crop: self.crop },
            metrics: self.config.metrics.clone(),
            predictors: vec![("prediction".into(), predictor)],
            qssim_maps: None,
            pictures: None,
        };
        let report = score(&self.items, &scoring, serde_json::Value::Null, Vec::new(), &|_| {});
        ValidationScores { metrics: report.metrics, failed: report.failed }
    }

    /// The model's scores on the validation set, with its failures.
    pub fn run(&self, model: &Colorizer) -> ValidationScores {
        self.score_with_failures(Predictor::Model(model, self.side))
    }

    /// The training objective's mean per-pixel loss on the validation
    /// pictures (every pixel; the logits before decoding, so neither the
    /// decoding settings nor the smoothing enter): the held-out counterpart
    /// of `train/loss`, which moves when the decoded measures barely do.
    /// `None` when no picture could be read.
    pub fn loss(&self, model: &Colorizer, objective: &Objective) -> Result<Option<f64>, ModelError> {
        let s = self.side.get() as usize;
        let (mut total, mut pictures) = (0.0, 0);
        // Read a batch at a time (as scoring does), so that a large
        // validation set is never held in memory.
        for items in self.items.chunks(LOSS_BATCH) {
            let batch: Vec<Planes> =
                items.iter().filter_map(|item| Some(Planes::from_rgb(&self.squared(item)?))).collect();
            let n = batch.len();
            if n == 0 {
                continue;
            }
            let gray: Vec<u8> = batch.iter().flat_map(|p| p.y.iter().copied()).collect();
            let uv: Vec<u8> = batch.iter().flat_map(|p| p.uv.iter().copied()).collect();
            let y = model.gray_tensor(&gray, n, s, s)?;
            let logits = model.head().forward_parts(&model.hypercolumn_parts(&y)?)?;
            let targets = objective.targets(&uv, (n, s, s), model.device())?;
            let loss = objective.loss(&logits, &targets)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            total += loss * n as f64;
            pictures += n;
        }
        Ok((pictures > 0).then(|| total / pictures as f64))
    }

    /// (name, gray | prediction | truth) for each preview picture.
    pub fn strips(&self, model: &Colorizer) -> Result<Vec<(String, RgbImage)>, ModelError> {
        self.previews
            .iter()
            .map(|(name, truth)| Ok((name.clone(), comparison_strip(model, truth, self.side)?)))
            .collect()
    }
}
