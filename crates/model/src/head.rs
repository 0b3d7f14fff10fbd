//! `HypercolumnHead`: the trained part of the network.

use crate::conv::Conv2d;
use crate::trunk::HYPERCOLUMN_CHANNELS;
use crate::weights::tensor_shape;
use crate::{HeadConfig, ModelError};
use candle_core::{Module, Result, Tensor};
use candle_nn::{init, VarBuilder, VarMap};
use colorize_core::Rng;
use std::path::Path;

/// conv1 (451→c1, k1) + ReLU → a; conv2 (c1→c2, k2) + ReLU → b;
/// Q = concat(a, b); out (1x1, Q→2) → logits of (U, V) / 255.
///
/// Variables, with stable names: `conv1.weight`, `conv1.bias`,
/// `conv2.weight`, `conv2.bias`, `out.weight`, `out.bias`, and the constant
/// `hypercolumn.scale` [4] (never trained: it has no gradient).
#[derive(Clone, Debug)]
pub struct HypercolumnHead {
    config: HeadConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    out: Conv2d,
}

fn conv(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Conv2d> {
    let weight = vb.get_with_hints((cout, cin, k, k), "weight", init::ZERO)?;
    let bias = vb.get_with_hints(cout, "bias", init::ZERO)?;
    Ok(Conv2d::new(weight, bias))
}

const SCALE_KEY: &str = "hypercolumn.scale";

impl HypercolumnHead {
    pub fn new(config: HeadConfig, vb: VarBuilder) -> Result<HypercolumnHead> {
        let HeadConfig { conv1_channels: c1, conv1_kernel: k1, conv2_channels: c2, conv2_kernel: k2, .. } = config;
        // Stored so that a saved head carries the factors its training used.
        let scale = vb.get_with_hints(4, SCALE_KEY, init::ONE)?;
        let values = Tensor::new(&config.hypercolumn_scale, scale.device())?;
        // A fresh variable is set to the config's factors; `load` overwrites it.
        scale.slice_set(&values, 0, 0)?;
        Ok(HypercolumnHead {
            config,
            conv1: conv(vb.pp("conv1"), HYPERCOLUMN_CHANNELS, c1, k1)?,
            conv2: conv(vb.pp("conv2"), c1, c2, k2)?,
            out: conv(vb.pp("out"), config.q_channels(), 2, 1)?,
        })
    }

    /// Draws every variable afresh from `seed`, as PyTorch initialises a
    /// convolution: weights and biases uniform in ±1/√fan_in (its
    /// Kaiming-uniform with a = √5). Variables are visited by name, so the
    /// result does not depend on the map's order.
    pub fn reinitialise(&self, varmap: &VarMap, seed: u64) -> Result<()> {
        let vars = varmap.data().lock().expect("the head's variables are not poisoned");
        let mut names: Vec<&String> = vars.keys().filter(|n| n.as_str() != SCALE_KEY).collect();
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

    pub fn config(&self) -> HeadConfig {
        self.config
    }

    /// The three convolutions, in order (for the training step's own backward).
    pub fn convs(&self) -> [&Conv2d; 3] {
        [&self.conv1, &self.conv2, &self.out]
    }

    /// The head's shape, read from a saved head's tensors.
    pub fn config_of_file(path: &Path) -> std::result::Result<HeadConfig, ModelError> {
        let conv1 = tensor_shape(path, "conv1.weight")?;
        let conv2 = tensor_shape(path, "conv2.weight")?;
        let hypercolumn_scale = read_scale(path)?;
        match (conv1.as_slice(), conv2.as_slice()) {
            ([c1, HYPERCOLUMN_CHANNELS, k1, _], [c2, _, k2, _]) => Ok(HeadConfig {
                conv1_channels: *c1,
                conv1_kernel: *k1,
                conv2_channels: *c2,
                conv2_kernel: *k2,
                hypercolumn_scale,
            }),
            _ => Err(ModelError::BadFile {
                path: path.to_path_buf(),
                message: format!("not a hypercolumn head: conv1.weight {conv1:?}, conv2.weight {conv2:?}"),
            }),
        }
    }
}

/// The hypercolumn factors a saved head was trained with (1s for a head
/// saved without them).
fn read_scale(path: &Path) -> std::result::Result<[f32; 4], ModelError> {
    let Ok(tensors) = candle_core::safetensors::load(path, &candle_core::Device::Cpu) else {
        return Err(ModelError::BadFile { path: path.to_path_buf(), message: "unreadable safetensors".into() });
    };
    match tensors.get(SCALE_KEY) {
        None => Ok([1.0; 4]),
        Some(t) => {
            let v: Vec<f32> = t.to_dtype(candle_core::DType::F32)?.to_vec1()?;
            v.try_into().map_err(|v: Vec<f32>| ModelError::BadFile {
                path: path.to_path_buf(),
                message: format!("{SCALE_KEY} has {} values, expected 4", v.len()),
            })
        }
    }
}

impl Module for HypercolumnHead {
    /// t: [n, 451, h, w] -> logits [n, 2, h, w]
    fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let a = self.conv1.forward(t)?.relu()?;
        let b = self.conv2.forward(&a)?.relu()?;
        let q = Tensor::cat(&[&a, &b], 1)?;
        self.out.forward(&q)
    }
}
