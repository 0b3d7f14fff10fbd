//! `Colorizer`: trunk + hypercolumn + head, ready to predict or train.

use crate::colour_bins::annealed_mean;
use crate::head::HypercolumnHead;
use crate::hypercolumn::{channel_moments, hypercolumn_patches, HypercolumnParts, HypercolumnWindows, Pixel};
use crate::provenance::HeadProvenance;
use crate::smoothing::smooth_chroma;
use crate::trunk::{normalise_gray, Taps, Vgg16Trunk};
use crate::{HeadConfig, HeadOutput, ModelError};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::Path;

pub struct Colorizer {
    trunk: Vgg16Trunk,
    /// The side of the pictures the head is trained on, recorded in its file.
    input_side: Option<u32>,
    head: HypercolumnHead,
    /// The head's variables: the only trainable ones.
    varmap: VarMap,
    /// Further bins heads on the same trunk whose predictions are
    /// combined with `head`'s (an ensemble; see `add_ensemble_head`).
    /// Never trained.
    ensemble: Vec<HypercolumnHead>,
    device: Device,
}

impl Colorizer {
    /// A trunk from `trunk_path` and a freshly initialised head, its weights
    /// drawn from `seed` (candle's own CPU generator cannot be seeded).
    pub fn new(trunk_path: &Path, head: HeadConfig, seed: u64, device: &Device) -> Result<Colorizer, ModelError> {
        head.validate().map_err(ModelError::BadConfig)?;
        let trunk = Vgg16Trunk::load_blocks(trunk_path, head.trunk_blocks, device)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let head = HypercolumnHead::new(head, vb)?;
        head.reinitialise(&varmap, seed)?;
        Ok(Colorizer { trunk, head, input_side: None, varmap, ensemble: Vec::new(), device: device.clone() })
    }

    /// A trunk and a saved head; the head's shape is read from its file. A
    /// head that records another trunk than this one is refused.
    pub fn load(trunk_path: &Path, head_path: &Path, device: &Device) -> Result<Colorizer, ModelError> {
        Colorizer::load_checked(trunk_path, head_path, device, true)
    }

    /// `load`, with the trunk check optional (`check_trunk` false: the
    /// user asked to run a head on another trunk).
    pub fn load_checked(
        trunk_path: &Path,
        head_path: &Path,
        device: &Device,
        check_trunk: bool,
    ) -> Result<Colorizer, ModelError> {
        if !head_path.is_file() {
            return Err(ModelError::MissingWeights(head_path.to_path_buf()));
        }
        let config = HypercolumnHead::config_of_file(head_path)?;
        let provenance = HeadProvenance::of_file(head_path)?;
        let mut colorizer = Colorizer::new(trunk_path, config, 0, device)?;
        if check_trunk {
            colorizer.check_head_trunk(head_path, &provenance)?;
        }
        colorizer.load_head(head_path)?;
        colorizer.input_side = provenance.input_side;
        Ok(colorizer)
    }

    /// Refuses a saved head whose file records another trunk than this
    /// model's (heads saved before files recorded it pass).
    pub fn check_head_trunk(&self, head_path: &Path, provenance: &HeadProvenance) -> Result<(), ModelError> {
        let used = self.trunk.identity();
        match &provenance.trunk_fingerprint {
            Some(recorded) if *recorded != used.fingerprint => {
                Err(ModelError::TrunkMismatch(Box::new(crate::error::TrunkMismatch {
                    head: head_path.to_path_buf(),
                    recorded: provenance.trunk.clone().unwrap_or_default(),
                    recorded_fingerprint: recorded.clone(),
                    used: used.name.clone(),
                    used_fingerprint: used.fingerprint.clone(),
                })))
            }
            _ => Ok(()),
        }
    }

    /// Runs the frozen trunk in another precision (`model.trunk_dtype`).
    pub fn set_trunk_dtype(&mut self, dtype: crate::TrunkDtype) -> Result<(), ModelError> {
        self.trunk = self.trunk.to_dtype(dtype.dtype())?;
        Ok(())
    }

    /// Records the side of the pictures the model sees (saved with the head):
    /// the side it is trained at, unless `cargo xtask retune --size` chose
    /// another for prediction.
    pub fn set_input_side(&mut self, side: u32) -> Result<(), ModelError> {
        let multiple = self.side_multiple();
        if side < 16 || !side.is_multiple_of(multiple as u32) {
            return Err(ModelError::BadSide(side as usize, multiple));
        }
        self.input_side = Some(side);
        Ok(())
    }

    /// What every side the model sees must be a multiple of: 4 for the
    /// method's trunk, 8 or 16 for a deeper one.
    pub fn side_multiple(&self) -> usize {
        crate::trunk::side_multiple(self.trunk.blocks())
    }

    /// The side the model sees, when the head's file says.
    pub fn input_side(&self) -> Option<u32> {
        self.input_side
    }

    /// Overwrites the head's variables with a saved head of the same shape.
    pub fn load_head(&mut self, path: &Path) -> Result<(), ModelError> {
        self.head.load(&self.varmap, path)
    }

    /// Adds a saved bins head (same bin grid, same trunk unless
    /// `check_trunk` is false) to an ensemble with this colorizer's head:
    /// `predict` then averages the heads' log-probabilities per bin (each
    /// head's rebalancing undone by its own weights) and decodes the
    /// average with the first head's settings (the geometric mean of their
    /// distributions: where the heads agree, it stays as sharp as theirs).
    pub fn add_ensemble_head(&mut self, head_path: &Path, check_trunk: bool) -> Result<(), ModelError> {
        if !head_path.is_file() {
            return Err(ModelError::MissingWeights(head_path.to_path_buf()));
        }
        let config = HypercolumnHead::config_of_file(head_path)?;
        let first = self.head.config();
        let mismatch = |what: &str| {
            Err(ModelError::BadFile {
                path: head_path.to_path_buf(),
                message: format!("cannot join an ensemble: {what}"),
            })
        };
        if first.output != HeadOutput::Bins || config.output != HeadOutput::Bins {
            return mismatch("an ensemble combines heads that predict colour bins");
        }
        if config.trunk_blocks != first.trunk_blocks {
            return mismatch(&format!(
                "it reads {} of the trunk's blocks, the first head {}",
                config.trunk_blocks, first.trunk_blocks
            ));
        }
        if config.bin_spacing != first.bin_spacing {
            return mismatch(&format!(
                "its bins are {} U/V units apart, the first head's {}",
                config.bin_spacing, first.bin_spacing
            ));
        }
        if check_trunk {
            self.check_head_trunk(head_path, &HeadProvenance::of_file(head_path)?)?;
        }
        let varmap = VarMap::new();
        let mut head = HypercolumnHead::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &self.device))?;
        head.load(&varmap, head_path)?;
        self.ensemble.push(head);
        Ok(())
    }

    /// How many heads predict: 1, or the ensemble's size.
    pub fn head_count(&self) -> usize {
        1 + self.ensemble.len()
    }

    /// Changes how a bins head decodes (see `HypercolumnHead::set_bin_decoding`),
    /// overriding the head's own settings.
    pub fn set_bin_decoding(
        &mut self,
        temperature: Option<f64>,
        undo_rebalance: Option<f64>,
    ) -> Result<(), ModelError> {
        self.head.set_bin_decoding(&self.varmap, temperature, undo_rebalance)
    }

    /// Changes how much the predicted chroma is blurred (see `smoothing`),
    /// overriding the head's own setting.
    pub fn set_chroma_smoothing(&mut self, sigma: f64) -> Result<(), ModelError> {
        self.head.set_chroma_smoothing(&self.varmap, sigma)
    }

    /// Changes the radius of the guided filter that aligns the predicted
    /// chroma with the picture's gray (see `guided_filter`), overriding the
    /// head's own setting.
    pub fn set_chroma_guide_radius(&mut self, radius: f64) -> Result<(), ModelError> {
        self.head.set_chroma_guide_radius(&self.varmap, radius)
    }

    /// Saves the head's variables (safetensors, stable names) with its
    /// provenance (the trunk, the input side) in the metadata, atomically.
    pub fn save_head(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |message: String| ModelError::BadFile { path: path.into(), message };
        let tmp = path.with_extension("safetensors.tmp");
        let identity = self.trunk.identity();
        let provenance = HeadProvenance {
            trunk: Some(identity.name.clone()),
            trunk_fingerprint: Some(identity.fingerprint.clone()),
            input_side: self.input_side,
        };
        let tensors: Vec<(String, Tensor)> =
            self.head_variables()?.into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        safetensors::tensor::serialize_to_file(tensors, Some(provenance.to_metadata()), &tmp)
            .map_err(|e| bad(format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| bad(e.to_string()))
    }

    /// The head's variables by name (shared with the model: an update to
    /// one is an update to the model).
    pub fn head_variables(&self) -> Result<HashMap<String, Var>, ModelError> {
        Ok(crate::head::head_variables(&self.varmap)?.clone())
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn head(&self) -> &HypercolumnHead {
        &self.head
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Gray bytes [n, h, w] as the model's input tensor [n, 1, h, w] (0..255, f32).
    pub fn gray_tensor(&self, y: &[u8], n: usize, h: usize, w: usize) -> Result<Tensor, ModelError> {
        let multiple = self.side_multiple();
        if let Some(bad) = [h, w].into_iter().find(|&s| !s.is_multiple_of(multiple) || s < 16) {
            return Err(ModelError::BadSide(bad, multiple));
        }
        Ok(Tensor::from_slice(y, (n, 1, h, w), &self.device)?.to_dtype(DType::F32)?)
    }

    /// The frozen features as one dense tensor: y [n, 1, h, w] (0..255) ->
    /// [n, 451, h, w]. The pipeline runs on the parts (below); this and
    /// `logits` are the paper's dense formulation, the reference the
    /// parts and the windows are tested against, and the features for
    /// anyone who wants the hypercolumn itself.
    pub fn hypercolumn(&self, y: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.hypercolumn_parts(y)?.dense()?)
    }

    /// The same features as parts at their own resolution (see
    /// `HypercolumnParts`): what inference and dense training run on.
    pub fn hypercolumn_parts(&self, y: &Tensor) -> Result<HypercolumnParts, ModelError> {
        let (x, taps) = self.input_and_taps(y)?;
        Ok(HypercolumnParts::new(&x, &taps, self.head.standardisation())?)
    }

    /// The trunk's input (the gray, normalised) and its taps.
    fn input_and_taps(&self, y: &Tensor) -> Result<(Tensor, Taps), ModelError> {
        let x = normalise_gray(y)?;
        let taps = self.trunk.forward(&x)?;
        Ok((x, taps))
    }

    /// The frozen features in an r x r window around each pixel only (see
    /// `hypercolumn::hypercolumn_patches`).
    pub fn hypercolumn_windows(
        &self,
        y: &Tensor,
        pixels: &[Pixel],
        r: usize,
    ) -> Result<HypercolumnWindows, ModelError> {
        let (x, taps) = self.input_and_taps(y)?;
        Ok(hypercolumn_patches(&x, &taps, self.head.standardisation(), pixels, r)?)
    }

    /// The head's logits [n, outputs, h, w] through the dense hypercolumn
    /// built from `parts`, with autograd (the reference for `predict`'s
    /// path through the parts).
    pub fn logits(&self, parts: &HypercolumnParts) -> Result<Tensor, ModelError> {
        Ok(self.head.forward(&parts.dense()?, &parts.scene)?)
    }

    /// Predicted (U, V) / 255 in (0, 1): [n, 2, h, w] (decoded by the head:
    /// sigmoid or the bins' annealed mean), blurred by the head's
    /// `chroma_smoothing`.
    pub fn predict(&self, y: &Tensor) -> Result<Tensor, ModelError> {
        let (x, taps) = self.input_and_taps(y)?;
        let logits =
            |head: &HypercolumnHead| head.forward_parts(&HypercolumnParts::new(&x, &taps, head.standardisation())?);
        let uv = match self.head.bin_centres() {
            Some(centres) if !self.ensemble.is_empty() => {
                let config = self.head.config();
                let log_p = |head: &HypercolumnHead| -> candle_core::Result<Tensor> {
                    let unbalanced = head.unbalanced_logits(&logits(head)?, config.undo_rebalance)?;
                    candle_nn::ops::log_softmax(&unbalanced, 1)
                };
                let mut sum = log_p(&self.head)?;
                for head in &self.ensemble {
                    sum = (sum + log_p(head)?)?;
                }
                let mean = (sum / self.head_count() as f64)?;
                annealed_mean(&mean, centres, config.temperature)?
            }
            _ => self.head.decode(&logits(&self.head)?)?,
        };
        Ok(smooth_chroma(&uv, self.head.config().chroma_smoothing)?)
    }

    /// Measures the hypercolumn's per-channel mean and spread on gray
    /// batches `ys` (each [n, 1, h, w], 0..255) and makes the head
    /// standardise with them (pooled moments: batches may differ in size).
    pub fn fit_standardisation(&self, ys: &[Tensor]) -> Result<(), ModelError> {
        let mut pooled = vec![(0.0f64, 0.0f64); self.head.config().hypercolumn_channels()];
        let mut weight = 0.0;
        for y in ys {
            let (x, taps) = self.input_and_taps(y)?;
            let (mean, std) = channel_moments(&x, &taps)?;
            let n = y.dim(0)? as f64;
            for ((sum, sum_sq), (m, s)) in pooled.iter_mut().zip(mean.iter().zip(&std)) {
                *sum += n * m;
                *sum_sq += n * (s * s + m * m);
            }
            weight += n;
        }
        if weight == 0.0 {
            return Err(ModelError::NothingToMeasure);
        }
        let mean: Vec<f64> = pooled.iter().map(|(sum, _)| sum / weight).collect();
        let std: Vec<f64> =
            pooled.iter().zip(&mean).map(|((_, sum_sq), m)| (sum_sq / weight - m * m).max(0.0).sqrt()).collect();
        Ok(self.head.set_standardisation(&self.varmap, &mean, &std)?)
    }

    /// See `HypercolumnHead::set_output_bias`.
    pub fn set_output_bias(&self, mean_uv: [f64; 2]) -> Result<(), ModelError> {
        Ok(self.head.set_output_bias(&self.varmap, mean_uv)?)
    }

    pub fn trunk(&self) -> &Vgg16Trunk {
        &self.trunk
    }
}
