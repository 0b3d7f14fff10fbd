//! The `[model]` table of an experiment config.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The trained head: two convolutions whose outputs are concatenated, then
/// a 1x1 convolution to (U, V). method.md's default: 451→128 (3x3) + ReLU,
/// 128→16 (3x3) + ReLU, concat 144, 1x1 → 2, sigmoid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    #[serde(default = "default_conv1_channels")]
    pub conv1_channels: usize,
    #[serde(default = "default_kernel")]
    pub conv1_kernel: usize,
    #[serde(default = "default_conv2_channels")]
    pub conv2_channels: usize,
    #[serde(default = "default_kernel")]
    pub conv2_kernel: usize,
    /// Standardise each hypercolumn channel to mean 0 and standard deviation
    /// 1 before the head sees it, with statistics measured on the training
    /// images when a run starts and saved with the head. The source is
    /// silent; `false` is the raw hypercolumn. Raw, its channels are all
    /// non-negative and spread over two orders of magnitude (conv1_2 about
    /// 18 ± 43, the input about 0 ± 1), which leaves plain SGD so
    /// ill-conditioned that it barely moves from the mean colour.
    #[serde(default = "default_standardise")]
    pub standardise: bool,
    /// A channel whose spread is below this fraction of its part's mean
    /// spread (the part: input, conv1_2, conv2_2 or conv3_3) is scaled as
    /// if it had that spread, so that weak, nearly dead channels are not
    /// blown up into noise. 1: weak channels keep their size relative to
    /// the part. Measured (10 minutes of sampled-pixel training on the
    /// embedded set, BSDS500 val): 1.0 gave QSSIM 0.9650 and PSNR 24.44 dB,
    /// 0.01 gave 0.9597 and 24.39.
    #[serde(default = "default_min_relative_std")]
    pub min_relative_std: f64,
    /// Standard deviation, in pixels of the model's input, of the Gaussian
    /// blur applied to the predicted U and V (see `smoothing`); 0: none.
    /// The source is silent. Only predictions are blurred, never the
    /// per-pixel loss (the optional QSSIM term scores the blurred
    /// prediction, as `colorize` shows it). Saved with the head.
    #[serde(default)]
    pub chroma_smoothing: f64,
    /// Radius, in pixels of the model's input, of the guided filter that
    /// aligns the predicted chroma with the picture's own gray edges once
    /// it is scaled to the picture's size (`guided_filter`); 0: none. Not
    /// in the method. Like the smoothing, it shapes predictions only, never
    /// the loss. Saved with the head.
    #[serde(default)]
    pub chroma_guide_radius: f64,
    /// What the output layer predicts: `uv` (method.md: two sigmoid
    /// channels) or `bins` (a distribution over colour bins). Follows
    /// `train.loss` (the experiment config sets it).
    #[serde(default)]
    pub output: HeadOutput,
    /// For `bins`: the grid spacing of the bins, in U/V units of the 0..255
    /// scale (`colour_bins`). Zhang et al. used 10 in Lab's a, b.
    #[serde(default = "default_bin_spacing")]
    pub bin_spacing: u32,
    /// For `bins`: the annealed mean's temperature, from the mode (→ 0) to
    /// the mean (1). Zhang et al.'s 0.38. Saved with the head; `--temperature`
    /// overrides it in `eval`, `colorize` and `demo`.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// For `bins` trained with rebalancing (`train.bins.rebalance`): how
    /// much of it decoding takes back, 0 to 1. A head trained with weights
    /// w predicts about w·p, so its logits minus ln w estimate the colours'
    /// true distribution p: 1 decodes that (what distance measures reward),
    /// 0 the rebalanced one (more colourful). Saved with the head;
    /// `--undo-rebalance` overrides it.
    #[serde(default)]
    pub undo_rebalance: f64,
    /// Add the picture's scene vector (the picture-wide mean of the
    /// standardised conv3_3, `hypercolumn::scene_vector`) to the first
    /// convolution's pre-activation through a trained linear map
    /// (`scene.weight` [conv1_channels, 256]), as Iizuka et al. add a global
    /// branch: the hypercolumn alone sees ~40 pixels around each pixel, not
    /// what kind of scene it is in. Not in the method; `false` is its head.
    #[serde(default)]
    pub scene_context: bool,
    /// How many of VGG-16's convolution blocks the hypercolumn taps: 3,
    /// the method's (conv1_2, conv2_2, conv3_3: 451 channels, every layer
    /// before the third max-pool); 4 adds conv4_3 (963 channels); 5 adds
    /// conv5_3 (1475). The deeper taps see more of the picture (about 100
    /// and 200 pixels against conv3_3's 40) and are what ImageNet's
    /// classes shaped most; Larsson et al.'s hypercolumn reads them. Not in
    /// the method. A deeper trunk needs a weights file that holds its
    /// layers (`model.trunk_weights`; the embedded trunk stops at conv3_3)
    /// and sides that are multiples of 8 or 16. Read from a head file by
    /// its first convolution's input channels.
    #[serde(default = "default_trunk_blocks")]
    pub trunk_blocks: usize,
}

/// The head's output layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadOutput {
    /// Logits of (U, V) / 255; the prediction is their sigmoid.
    #[default]
    Uv,
    /// Logits over the in-gamut colour bins; the prediction is their
    /// annealed mean.
    Bins,
}

fn default_trunk_blocks() -> usize {
    crate::trunk::METHOD_BLOCKS
}

fn default_bin_spacing() -> u32 {
    10
}

fn default_temperature() -> f64 {
    0.38
}

/// Past this the blur spans a 224-pixel input several times over.
pub const MAX_CHROMA_SMOOTHING: f64 = 64.0;

/// Past this a guide window spans a 224-pixel input.
pub const MAX_CHROMA_GUIDE_RADIUS: f64 = 112.0;

fn default_min_relative_std() -> f64 {
    1.0
}

fn default_standardise() -> bool {
    true
}

fn default_conv1_channels() -> usize {
    128
}
fn default_conv2_channels() -> usize {
    16
}
fn default_kernel() -> usize {
    3
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            conv1_channels: 128,
            conv1_kernel: 3,
            conv2_channels: 16,
            conv2_kernel: 3,
            standardise: default_standardise(),
            min_relative_std: default_min_relative_std(),
            chroma_smoothing: 0.0,
            chroma_guide_radius: 0.0,
            output: HeadOutput::Uv,
            bin_spacing: default_bin_spacing(),
            temperature: default_temperature(),
            undo_rebalance: 0.0,
            scene_context: false,
            trunk_blocks: default_trunk_blocks(),
        }
    }
}

impl HeadConfig {
    /// Side of the window of hypercolumn that one output pixel depends on.
    pub fn receptive_field(&self) -> usize {
        self.conv1_kernel + self.conv2_kernel - 1
    }

    /// The output layer's channels: 2, or one per colour bin.
    pub fn output_channels(&self) -> usize {
        match self.output {
            HeadOutput::Uv => 2,
            HeadOutput::Bins => self.colour_bins().len(),
        }
    }

    /// The colour bins of `bin_spacing` (whatever the output).
    pub fn colour_bins(&self) -> crate::colour_bins::ColourBins {
        crate::colour_bins::ColourBins::in_gamut(self.bin_spacing)
    }

    /// Channels of the hypercolumn the head reads (451 for the method's trunk).
    pub fn hypercolumn_channels(&self) -> usize {
        crate::trunk::hypercolumn_channels(self.trunk_blocks)
    }

    /// Channels of Q, the concatenation the output layer reads.
    pub fn q_channels(&self) -> usize {
        self.conv1_channels + self.conv2_channels
    }

    /// Range checks; each message reads "model.head.<key> = <value>: <why>".
    pub fn validate(&self) -> Result<(), String> {
        for (name, k) in [("conv1_kernel", self.conv1_kernel), ("conv2_kernel", self.conv2_kernel)] {
            if k % 2 == 0 || k > 9 {
                return Err(format!(
                    "model.head.{name} = {k}: kernels are odd, 1 to 9 (the output keeps the input's size)"
                ));
            }
        }
        if !(self.min_relative_std > 0.0 && self.min_relative_std.is_finite()) {
            return Err(format!("model.head.min_relative_std = {}: must be positive", self.min_relative_std));
        }
        if !(0.0..=MAX_CHROMA_SMOOTHING).contains(&self.chroma_smoothing) {
            return Err(format!(
                "model.head.chroma_smoothing = {}: must be 0 (none) to {MAX_CHROMA_SMOOTHING} pixels",
                self.chroma_smoothing
            ));
        }
        if !(0.0..=MAX_CHROMA_GUIDE_RADIUS).contains(&self.chroma_guide_radius) {
            return Err(format!(
                "model.head.chroma_guide_radius = {}: must be 0 (none) to {MAX_CHROMA_GUIDE_RADIUS} pixels",
                self.chroma_guide_radius
            ));
        }
        if !crate::colour_bins::BIN_SPACINGS.contains(&self.bin_spacing) {
            return Err(format!("model.head.bin_spacing = {}: must be 2 to 64 U/V units", self.bin_spacing));
        }
        if !(self.temperature > 0.0 && self.temperature <= 1.0) {
            return Err(format!(
                "model.head.temperature = {}: must be above 0 (the mode) and at most 1 (the mean)",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.undo_rebalance) {
            return Err(format!("model.head.undo_rebalance = {}: must be 0 to 1", self.undo_rebalance));
        }
        if !(crate::trunk::METHOD_BLOCKS..=crate::trunk::MAX_BLOCKS).contains(&self.trunk_blocks) {
            return Err(format!(
                "model.head.trunk_blocks = {}: must be {} (the method's) to {} (all of VGG-16's blocks)",
                self.trunk_blocks,
                crate::trunk::METHOD_BLOCKS,
                crate::trunk::MAX_BLOCKS
            ));
        }
        for (name, c) in [("conv1_channels", self.conv1_channels), ("conv2_channels", self.conv2_channels)] {
            if c == 0 || c > 4096 {
                return Err(format!("model.head.{name} = {c}: must be 1 to 4096"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The trunk's safetensors file; absent: the embedded offline trunk.
    /// `"hub"`: timm/vgg16.tv_in1k from the Hugging Face cache.
    #[serde(default)]
    pub trunk_weights: Option<PathBuf>,
    /// The precision the frozen trunk computes in; the hypercolumn it feeds,
    /// the head and its gradients stay f32. See `TrunkDtype`.
    #[serde(default)]
    pub trunk_dtype: TrunkDtype,
    #[serde(default)]
    pub head: HeadConfig,
}

/// The frozen trunk's precision (`model.trunk_dtype`). bf16 and f16 halve
/// its memory traffic and run on a GPU's tensor cores; on the CPU they take
/// candle's generic kernels (the fast ones are f32), so f32 is the CPU's
/// choice (there it is emulated: weights and each layer's output rounded,
/// products summed in f32, as tensor cores do). Measured on the CPU against
/// f32 (`a_lower_precision_trunk_stays_close_to_f32`, 2 pictures at 32 px,
/// ‖difference‖ / ‖f32‖): bf16 moves the hypercolumn by 0.53%, a dense step's
/// gradients by 2.0% and a sampled step's by 6.8%; f16 by 0.067%, 0.93% and
/// 0.066%.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl TrunkDtype {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            TrunkDtype::F32 => candle_core::DType::F32,
            TrunkDtype::Bf16 => candle_core::DType::BF16,
            TrunkDtype::F16 => candle_core::DType::F16,
        }
    }
}
