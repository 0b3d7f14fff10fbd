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
    /// Constant factors for the hypercolumn's four parts (input, conv1_2,
    /// conv2_2, conv3_3) before the head sees them. The source is silent; 1
    /// is the plain method. Taps whose values are tens of times the input's
    /// make plain SGD ill-conditioned; scaling them to a similar size lets it
    /// learn at a usable rate. Saved with the head (`hypercolumn.scale`).
    #[serde(default = "default_scale")]
    pub hypercolumn_scale: [f32; 4],
}

fn default_scale() -> [f32; 4] {
    [1.0; 4]
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
            hypercolumn_scale: default_scale(),
        }
    }
}

impl HeadConfig {
    /// Channels of Q, the concatenation the output layer reads.
    pub fn q_channels(&self) -> usize {
        self.conv1_channels + self.conv2_channels
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, k) in [("conv1_kernel", self.conv1_kernel), ("conv2_kernel", self.conv2_kernel)] {
            if k % 2 == 0 || k > 9 {
                return Err(format!(
                    "model.head.{name} = {k}: kernels are odd, 1 to 9 (the output keeps the input's size)"
                ));
            }
        }
        if self.hypercolumn_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("model.head.hypercolumn_scale = {:?}: factors are positive", self.hypercolumn_scale));
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
    #[serde(default)]
    pub head: HeadConfig,
}
