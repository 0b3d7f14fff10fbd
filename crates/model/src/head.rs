//! `HypercolumnHead`: the trained part of the network.

use crate::colour_bins::annealed_mean;
use crate::conv::Conv2d;
use crate::hypercolumn::{HypercolumnParts, Standardisation, SCENE_CHANNELS};
use crate::kernels::first_conv::first_conv;
use crate::weights::tensor_shape;
use crate::{HeadConfig, HeadOutput, ModelError};
use candle_core::{Module, Result, Tensor, Var};
use candle_nn::{init, VarBuilder, VarMap};
use colorize_core::Rng;
use std::collections::HashMap;
use std::path::Path;

/// conv1 (451→c1, k1) + ReLU → a; conv2 (c1→c2, k2) + ReLU → b;
/// Q = concat(a, b); out (1x1, Q→2) → logits of (U, V) / 255.
///
/// Variables, with stable names: `conv1.weight`, `conv1.bias`,
/// `conv2.weight`, `conv2.bias`, `out.weight`, `out.bias`, and the
/// constants `hypercolumn.shift` and `hypercolumn.scale` [451] (the
/// standardisation: measured, never trained, so they have no gradient) and
/// `smoothing.sigma` [1] (`HeadConfig::chroma_smoothing`) and
/// `guide.radius` [1] (`HeadConfig::chroma_guide_radius`), so that a head
/// file predicts the way it was tuned to.
///
/// A head whose output is colour bins (`HeadOutput::Bins`) has K output
/// channels (one per bin of `colour_bins`) and the constants `bins.spacing`
/// [1], `bins.temperature` [1] (the annealed mean's)
/// and `bins.weights` [K] (the loss's rebalancing weights, measured on the
/// training cache when a run starts).
///
/// A head with scene context (`HeadConfig::scene_context`) also has
/// `scene.weight` [c1, 256]: conv1's pre-activation at every pixel of a
/// picture gains `scene.weight · s`, s its scene vector.
#[derive(Clone, Debug)]
pub struct HypercolumnHead {
    config: HeadConfig,
    standardisation: Standardisation,
    conv1: Conv2d,
    conv2: Conv2d,
    out: Conv2d,
    /// `scene.weight` [c1, 256], for a head with scene context.
    scene: Option<Tensor>,
    /// The colour bins' centres [K, 2] and their rebalancing weights [K]
    /// (`bins.weights`, shared with the variable), for a head that predicts bins.
    bin_centres: Option<Tensor>,
    bin_weights: Option<Tensor>,
}

fn conv(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Conv2d> {
    let weight = vb.get_with_hints((cout, cin, k, k), "weight", init::ZERO)?;
    let bias = vb.get_with_hints(cout, "bias", init::ZERO)?;
    Conv2d::new(weight, bias)
}

const SHIFT_KEY: &str = "hypercolumn.shift";
const SCALE_KEY: &str = "hypercolumn.scale";
const SMOOTHING_KEY: &str = "smoothing.sigma";
const GUIDE_KEY: &str = "guide.radius";
const SPACING_KEY: &str = "bins.spacing";
const TEMPERATURE_KEY: &str = "bins.temperature";
const UNDO_KEY: &str = "bins.undo_rebalance";
const BIN_WEIGHTS_KEY: &str = "bins.weights";
const SCENE_KEY: &str = "scene.weight";

impl HypercolumnHead {
    pub fn new(config: HeadConfig, vb: VarBuilder) -> Result<HypercolumnHead> {
        let HeadConfig { conv1_channels: c1, conv1_kernel: k1, conv2_channels: c2, conv2_kernel: k2, .. } = config;
        let channels = config.hypercolumn_channels();
        // Identity until measured (`set_standardisation`) or loaded.
        let standardisation = Standardisation {
            shift: vb.get_with_hints(channels, SHIFT_KEY, init::ZERO)?,
            scale: vb.get_with_hints(channels, SCALE_KEY, init::ONE)?,
        };
        vb.get_with_hints(1, SMOOTHING_KEY, init::Init::Const(config.chroma_smoothing))?;
        vb.get_with_hints(1, GUIDE_KEY, init::Init::Const(config.chroma_guide_radius))?;
        let (outputs, bin_centres) = match config.output {
            HeadOutput::Uv => (2, None),
            HeadOutput::Bins => {
                // The centres follow from the spacing (saved), so they are
                // a plain tensor; a file whose bins differ fails on `out`'s shape.
                let bins = config.colour_bins();
                vb.get_with_hints(1, SPACING_KEY, init::Init::Const(f64::from(bins.spacing())))?;
                vb.get_with_hints(1, TEMPERATURE_KEY, init::Init::Const(config.temperature))?;
                vb.get_with_hints(1, UNDO_KEY, init::Init::Const(config.undo_rebalance))?;
                let weights = vb.get_with_hints(bins.len(), BIN_WEIGHTS_KEY, init::ONE)?;
                let flat: Vec<f32> = bins.centres().iter().flatten().copied().collect();
                (bins.len(), Some((Tensor::from_vec(flat, (bins.len(), 2), vb.device())?, weights)))
            }
        };
        let (bin_centres, bin_weights) = bin_centres.unzip();
        let scene = match config.scene_context {
            true => Some(vb.get_with_hints((c1, SCENE_CHANNELS), SCENE_KEY, init::ZERO)?),
            false => None,
        };
        Ok(HypercolumnHead {
            config,
            standardisation,
            conv1: conv(vb.pp("conv1"), channels, c1, k1)?,
            conv2: conv(vb.pp("conv2"), c1, c2, k2)?,
            out: conv(vb.pp("out"), config.q_channels(), outputs, 1)?,
            scene,
            bin_centres,
            bin_weights,
        })
    }

    /// Whether the head variable `name` is trained; the others are
    /// constants, set (measured or configured) and never drawn or trained.
    pub fn is_trained(name: &str) -> bool {
        !(name.starts_with("hypercolumn.") || name.starts_with("bins.") || name == SMOOTHING_KEY || name == GUIDE_KEY)
    }

    /// Draws every variable afresh from `seed`, as PyTorch initialises a
    /// convolution: weights and biases uniform in ±1/√fan_in (its
    /// Kaiming-uniform with a = √5). Variables are visited by name, so the
    /// result does not depend on the map's order.
    pub fn reinitialise(&self, varmap: &VarMap, seed: u64) -> Result<()> {
        let vars = head_variables(varmap)?;
        let mut names: Vec<&String> = vars.keys().filter(|n| HypercolumnHead::is_trained(n)).collect();
        names.sort();
        let mut rng = Rng::new(seed);
        for name in names {
            let var = &vars[name];
            let layer = name.split('.').next().unwrap_or_default();
            let weight_shape = vars[&format!("{layer}.weight")].dims().to_vec();
            let fan_in: usize = weight_shape[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let values: Vec<f32> =
                (0..var.elem_count()).map(|_| ((rng.unit_f64() * 2.0 - 1.0) * bound) as f32).collect();
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// Sets the standardisation from measured per-channel moments (see
    /// `hypercolumn::channel_moments`), with the config's floor on each
    /// channel's spread (`HeadConfig::min_relative_std`).
    pub fn set_standardisation(&self, varmap: &VarMap, mean: &[f64], std: &[f64]) -> Result<()> {
        let channels = self.config.hypercolumn_channels();
        if mean.len() != channels || std.len() != channels {
            candle_core::bail!("standardisation needs {channels} channels, got {}", mean.len());
        }
        let mut scale = Vec::with_capacity(channels);
        let mut offset = 0;
        for c in crate::trunk::hypercolumn_parts(self.config.trunk_blocks) {
            let part = &std[offset..offset + c];
            let floor = self.config.min_relative_std * part.iter().sum::<f64>() / c as f64;
            scale.extend(part.iter().map(|s| (1.0 / s.max(floor).max(f64::MIN_POSITIVE)) as f32));
            offset += c;
        }
        let shift: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        set_var(varmap, SHIFT_KEY, shift)?;
        set_var(varmap, SCALE_KEY, scale)
    }

    /// Sets the output bias so that a head whose other outputs are zero
    /// predicts `mean_uv` (0..255): training starts from the mean-chroma
    /// baseline instead of from gray.
    pub fn set_output_bias(&self, varmap: &VarMap, mean_uv: [f64; 2]) -> Result<()> {
        let logit = |m: f64| {
            let p = (m / 255.0).clamp(1e-3, 1.0 - 1e-3);
            (p / (1.0 - p)).ln() as f32
        };
        set_var(varmap, "out.bias", mean_uv.map(logit).to_vec())
    }

    /// For a bins head: sets the output bias to the log of the bins' prior
    /// (`prior`, summing to 1), so that step 0 predicts the training set's
    /// colour distribution, and saves the loss's rebalancing `weights`.
    pub fn set_bin_prior(&self, varmap: &VarMap, prior: &[f64], weights: &[f32]) -> Result<()> {
        let k = self.config.output_channels();
        if self.config.output != HeadOutput::Bins || prior.len() != k || weights.len() != k {
            candle_core::bail!("set_bin_prior: the head has {k} outputs, given {} priors", prior.len());
        }
        set_var(varmap, "out.bias", prior.iter().map(|p| p.max(1e-6).ln() as f32).collect())?;
        set_var(varmap, BIN_WEIGHTS_KEY, weights.to_vec())
    }

    /// The loss's per-bin rebalancing weights (ones until measured).
    pub fn bin_weights(&self, varmap: &VarMap) -> Result<Vec<f32>> {
        let vars = head_variables(varmap)?;
        match vars.get(BIN_WEIGHTS_KEY) {
            Some(var) => var.as_tensor().to_vec1(),
            None => candle_core::bail!("the head predicts (U, V), not colour bins"),
        }
    }

    /// Changes how a bins head decodes: the annealed mean's temperature
    /// and how much rebalancing is undone (`HeadConfig::temperature`,
    /// `undo_rebalance`); `None` keeps a setting.
    pub fn set_bin_decoding(
        &mut self,
        varmap: &VarMap,
        temperature: Option<f64>,
        undo_rebalance: Option<f64>,
    ) -> std::result::Result<(), ModelError> {
        let config = HeadConfig {
            temperature: temperature.unwrap_or(self.config.temperature),
            undo_rebalance: undo_rebalance.unwrap_or(self.config.undo_rebalance),
            ..self.config
        };
        config.validate().map_err(ModelError::BadConfig)?;
        if self.config.output != HeadOutput::Bins {
            return Err(ModelError::BadConfig(
                "--temperature, --undo-rebalance: this head predicts (U, V), not colour bins".into(),
            ));
        }
        set_var(varmap, TEMPERATURE_KEY, vec![config.temperature as f32])?;
        set_var(varmap, UNDO_KEY, vec![config.undo_rebalance as f32])?;
        self.config = config;
        Ok(())
    }

    /// Changes the blur of predictions (`HeadConfig::chroma_smoothing`).
    pub fn set_chroma_smoothing(&mut self, varmap: &VarMap, sigma: f64) -> std::result::Result<(), ModelError> {
        let config = HeadConfig { chroma_smoothing: sigma, ..self.config };
        config.validate().map_err(ModelError::BadConfig)?;
        set_var(varmap, SMOOTHING_KEY, vec![sigma as f32])?;
        self.config = config;
        Ok(())
    }

    /// Changes the guided filter of predictions (`HeadConfig::chroma_guide_radius`).
    pub fn set_chroma_guide_radius(&mut self, varmap: &VarMap, radius: f64) -> std::result::Result<(), ModelError> {
        let config = HeadConfig { chroma_guide_radius: radius, ..self.config };
        config.validate().map_err(ModelError::BadConfig)?;
        set_var(varmap, GUIDE_KEY, vec![radius as f32])?;
        self.config = config;
        Ok(())
    }

    /// Overwrites the variables with a saved head's (of the same shape),
    /// its prediction settings included. A head saved before chroma
    /// smoothing or the guided filter existed has none (0).
    pub fn load(&mut self, varmap: &VarMap, path: &Path) -> std::result::Result<(), ModelError> {
        let bad = |message: String| ModelError::BadFile { path: path.to_path_buf(), message };
        let saved = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| bad(format!("unreadable: {e}")))?;
        let chroma_smoothing = chroma_smoothing_in(&saved, path)?;
        let chroma_guide_radius = chroma_guide_radius_in(&saved, path)?;
        let temperature = temperature_in(&saved, path)?;
        let undo_rebalance = undo_rebalance_in(&saved, path)?;
        let vars = head_variables(varmap)?;
        for (name, var) in vars.iter() {
            let value = match saved.get(name) {
                Some(t) => t.to_dtype(var.dtype())?.to_device(var.device())?,
                None if name == SMOOTHING_KEY || name == GUIDE_KEY || name == UNDO_KEY => {
                    Tensor::zeros(1, var.dtype(), var.device())?
                }
                None => return Err(ModelError::MissingKey { path: path.to_path_buf(), key: name.clone() }),
            };
            if value.dims() != var.dims() {
                return Err(bad(format!("{name} has shape {:?}, this head expects {:?}", value.dims(), var.dims())));
            }
            var.set(&value)?;
        }
        self.config.chroma_smoothing = chroma_smoothing;
        self.config.chroma_guide_radius = chroma_guide_radius;
        if let Some(temperature) = temperature {
            self.config.temperature = temperature;
        }
        self.config.undo_rebalance = undo_rebalance;
        Ok(())
    }

    pub fn standardisation(&self) -> &Standardisation {
        &self.standardisation
    }

    pub fn config(&self) -> HeadConfig {
        self.config
    }

    /// The three convolutions, in order (for the training step's own backward).
    pub fn convs(&self) -> [&Conv2d; 3] {
        [&self.conv1, &self.conv2, &self.out]
    }

    /// `scene.weight` [c1, 256], for a head with scene context.
    pub fn scene_weight(&self) -> Option<&Tensor> {
        self.scene.as_ref()
    }

    /// The head's shape, read from a saved head's tensors.
    pub fn config_of_file(path: &Path) -> std::result::Result<HeadConfig, ModelError> {
        let conv1 = tensor_shape(path, "conv1.weight")?;
        let conv2 = tensor_shape(path, "conv2.weight")?;
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| ModelError::BadFile { path: path.to_path_buf(), message: format!("unreadable: {e}") })?;
        let blocks = (crate::trunk::METHOD_BLOCKS..=crate::trunk::MAX_BLOCKS)
            .find(|&b| conv1.get(1) == Some(&crate::trunk::hypercolumn_channels(b)));
        let standardise = is_standardised(&tensors, path, conv1.get(1).copied().unwrap_or(0))?;
        let chroma_smoothing = chroma_smoothing_in(&tensors, path)?;
        let chroma_guide_radius = chroma_guide_radius_in(&tensors, path)?;
        let defaults = HeadConfig::default();
        let (output, bin_spacing) = match scalar_in(&tensors, SPACING_KEY, path)? {
            None => (HeadOutput::Uv, defaults.bin_spacing),
            Some(spacing) if crate::colour_bins::BIN_SPACINGS.contains(&(spacing as u32)) => {
                (HeadOutput::Bins, spacing as u32)
            }
            Some(spacing) => {
                return Err(ModelError::BadFile {
                    path: path.to_path_buf(),
                    message: format!("{SPACING_KEY} is {spacing}, expected 2 to 64"),
                })
            }
        };
        let temperature = temperature_in(&tensors, path)?.unwrap_or(defaults.temperature);
        let undo_rebalance = undo_rebalance_in(&tensors, path)?;
        match (conv1.as_slice(), conv2.as_slice(), blocks) {
            ([c1, _, k1, _], [c2, _, k2, _], Some(trunk_blocks)) => Ok(HeadConfig {
                conv1_channels: *c1,
                conv1_kernel: *k1,
                conv2_channels: *c2,
                conv2_kernel: *k2,
                standardise,
                min_relative_std: defaults.min_relative_std,
                chroma_smoothing,
                chroma_guide_radius,
                output,
                bin_spacing,
                temperature,
                undo_rebalance,
                scene_context: tensors.contains_key(SCENE_KEY),
                trunk_blocks,
            }),
            _ => Err(ModelError::BadFile {
                path: path.to_path_buf(),
                message: format!("not a hypercolumn head: conv1.weight {conv1:?}, conv2.weight {conv2:?}"),
            }),
        }
    }
}

/// The head's variables, locked. A lock poisoned by a thread that
/// panicked while holding it is an error, not a second panic.
pub fn head_variables(varmap: &VarMap) -> Result<std::sync::MutexGuard<'_, HashMap<String, Var>>> {
    varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("the head's variables are poisoned (a thread panicked)".into()))
}

fn set_var(varmap: &VarMap, name: &str, values: Vec<f32>) -> Result<()> {
    let vars = head_variables(varmap)?;
    let var = vars.get(name).ok_or_else(|| candle_core::Error::Msg(format!("the head has no variable {name}")))?;
    var.set(&Tensor::from_vec(values, var.shape(), var.device())?)
}

/// Whether a saved head carries a standardisation other than the identity.
fn is_standardised(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
    channels: usize,
) -> std::result::Result<bool, ModelError> {
    let bad = |message: String| ModelError::BadFile { path: path.to_path_buf(), message };
    let mut identity = true;
    for (key, neutral) in [(SHIFT_KEY, 0.0f32), (SCALE_KEY, 1.0)] {
        let values: Vec<f32> = match tensors.get(key) {
            Some(t) if t.dims() == [channels] => t.to_dtype(candle_core::DType::F32)?.to_vec1()?,
            Some(t) => return Err(bad(format!("{key} has shape {:?}, expected [{channels}]", t.dims()))),
            None => return Err(bad(format!("{key} is missing (a head saved before standardisation existed)"))),
        };
        identity &= values.iter().all(|&v| v == neutral);
    }
    Ok(!identity)
}

/// The blur a saved head (its `tensors`, read from `path`) was tuned with;
/// 0 for a head saved before chroma smoothing existed.
fn chroma_smoothing_in(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> std::result::Result<f64, ModelError> {
    let bad = |message: String| ModelError::BadFile { path: path.to_path_buf(), message };
    let Some(saved) = tensors.get(SMOOTHING_KEY) else { return Ok(0.0) };
    let values: Vec<f32> = saved.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
    match values.as_slice() {
        [sigma] if (0.0..=crate::config::MAX_CHROMA_SMOOTHING).contains(&f64::from(*sigma)) => Ok(f64::from(*sigma)),
        _ => Err(bad(format!(
            "{SMOOTHING_KEY} is {values:?}, expected one value from 0 to {}",
            crate::config::MAX_CHROMA_SMOOTHING
        ))),
    }
}

/// The guided filter's radius a saved head was tuned with; 0 for a head
/// saved before the filter existed.
fn chroma_guide_radius_in(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> std::result::Result<f64, ModelError> {
    let max = crate::config::MAX_CHROMA_GUIDE_RADIUS;
    match scalar_in(tensors, GUIDE_KEY, path)? {
        Some(r) if !(0.0..=max).contains(&r) => Err(ModelError::BadFile {
            path: path.to_path_buf(),
            message: format!("{GUIDE_KEY} is {r}, expected 0 to {max}"),
        }),
        r => Ok(r.unwrap_or(0.0)),
    }
}

/// A one-value constant of a saved head, if it has it.
fn scalar_in(
    tensors: &std::collections::HashMap<String, Tensor>,
    key: &str,
    path: &Path,
) -> std::result::Result<Option<f64>, ModelError> {
    let Some(saved) = tensors.get(key) else { return Ok(None) };
    let values: Vec<f32> = saved.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
    match values.as_slice() {
        [value] if value.is_finite() => Ok(Some(f64::from(*value))),
        _ => Err(ModelError::BadFile {
            path: path.to_path_buf(),
            message: format!("{key} is {values:?}, expected one value"),
        }),
    }
}

/// The annealed mean's temperature a saved bins head was tuned with.
fn temperature_in(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> std::result::Result<Option<f64>, ModelError> {
    match scalar_in(tensors, TEMPERATURE_KEY, path)? {
        Some(t) if !(t > 0.0 && t <= 1.0) => Err(ModelError::BadFile {
            path: path.to_path_buf(),
            message: format!("{TEMPERATURE_KEY} is {t}, expected above 0 and at most 1"),
        }),
        t => Ok(t),
    }
}

/// How much rebalancing a saved bins head undoes when it decodes (0 when
/// the file predates the setting).
fn undo_rebalance_in(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> std::result::Result<f64, ModelError> {
    match scalar_in(tensors, UNDO_KEY, path)? {
        Some(a) if !(0.0..=1.0).contains(&a) => Err(ModelError::BadFile {
            path: path.to_path_buf(),
            message: format!("{UNDO_KEY} is {a}, expected 0 to 1"),
        }),
        a => Ok(a.unwrap_or(0.0)),
    }
}

impl HypercolumnHead {
    /// The prediction from logits: (U, V) / 255 [n, 2, h, w], the sigmoid of
    /// (U, V) logits or the annealed mean of bin logits.
    pub fn decode(&self, logits: &Tensor) -> Result<Tensor> {
        match &self.bin_centres {
            Some(centres) => {
                let logits = self.unbalanced_logits(logits, self.config.undo_rebalance)?;
                annealed_mean(&logits, centres, self.config.temperature)
            }
            None => candle_nn::ops::sigmoid(logits),
        }
    }

    /// A bins head's `logits` with the fraction `undo` of the training's
    /// rebalancing taken back: minus `undo` · log(weight) per bin. A head
    /// that predicts (U, V) has nothing to take back and is refused.
    pub fn unbalanced_logits(&self, logits: &Tensor, undo: f64) -> Result<Tensor> {
        let Some(weights) = &self.bin_weights else { candle_core::bail!("the head predicts (U, V), not colour bins") };
        if undo == 0.0 {
            return Ok(logits.clone());
        }
        let shift = (weights.log()? * undo)?.reshape((1, (), 1, 1))?;
        logits.broadcast_sub(&shift)
    }

    /// The colour bins' centres [K, 2] (0..255), for a head that predicts bins.
    pub fn bin_centres(&self) -> Option<&Tensor> {
        self.bin_centres.as_ref()
    }

    /// The logits [n, outputs, h, w] from the hypercolumn's parts (`first_conv`),
    /// for inference: no autograd graph is built.
    pub fn forward_parts(&self, parts: &HypercolumnParts) -> Result<Tensor> {
        let detached = |c: &Conv2d| Conv2d::new(c.weight().detach(), c.bias().detach());
        let (conv2, out) = (detached(&self.conv2)?, detached(&self.out)?);
        let scene = self.scene.as_ref().map(|w| w.detach());
        let a = add_scene_context(first_conv(&self.conv1, parts)?, scene.as_ref(), &parts.scene)?.relu()?;
        let b = conv2.forward(&a)?.relu()?;
        out.forward(&Tensor::cat(&[&a, &b], 1)?)
    }

    /// The paper's dense formulation, with autograd: t [n, 451, h, w] and
    /// the scene vectors [n, 256] (used only by a head with scene context)
    /// -> logits [n, outputs, h, w].
    pub fn forward(&self, t: &Tensor, scene: &Tensor) -> Result<Tensor> {
        let a = add_scene_context(self.conv1.forward(t)?, self.scene.as_ref(), scene)?.relu()?;
        let b = self.conv2.forward(&a)?.relu()?;
        let q = Tensor::cat(&[&a, &b], 1)?;
        self.out.forward(&q)
    }
}

/// conv1's pre-activation [n, c1, h, w] plus, with a scene weight [c1, 256],
/// each picture's `weight · scene[i]` at all its pixels.
pub fn add_scene_context(pre: Tensor, weight: Option<&Tensor>, scene: &Tensor) -> Result<Tensor> {
    let Some(weight) = weight else { return Ok(pre) };
    let (n, c1, _, _) = pre.dims4()?;
    if scene.dims() != [n, SCENE_CHANNELS] {
        candle_core::bail!("scene vectors {:?} for a batch of {n}: expected [{n}, {SCENE_CHANNELS}]", scene.dims());
    }
    let bias = scene.matmul(&weight.t()?)?; // [n, c1]
    pre.broadcast_add(&bias.reshape((n, c1, 1, 1))?)
}
