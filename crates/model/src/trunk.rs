//! `Vgg16Trunk`: VGG-16 up to the third max-pool (the method's), or up to
//! the fourth or fifth (`HeadConfig::trunk_blocks`), frozen, with its taps.

use crate::conv::Conv2d;
use crate::weights::check_tensors;
use crate::ModelError;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// (timm index in `features`, input channels, output channels) of conv1_1 … conv3_3.
pub const TRUNK_LAYERS: [(usize, usize, usize); 7] =
    [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256)];

/// conv4_1 … conv4_3 and conv5_1 … conv5_3, which a deeper trunk adds (a
/// max-pool before each block).
pub const DEEPER_BLOCKS: [[(usize, usize, usize); 3]; 2] =
    [[(17, 256, 512), (19, 512, 512), (21, 512, 512)], [(24, 512, 512), (26, 512, 512), (28, 512, 512)]];

/// The method's trunk: three blocks, every layer before the third max-pool.
pub const METHOD_BLOCKS: usize = 3;
/// The deepest trunk: VGG-16's five convolution blocks.
pub const MAX_BLOCKS: usize = 5;

/// Channels of the method's hypercolumn's parts: the input, conv1_2, conv2_2, conv3_3.
pub const HYPERCOLUMN_PARTS: [usize; 4] = [3, 64, 128, 256];
/// Channels of the method's hypercolumn: 451.
pub const HYPERCOLUMN_CHANNELS: usize = 3 + 64 + 128 + 256;

/// Channels of the parts of the hypercolumn of a trunk of `blocks` blocks
/// (3 to 5): the method's four, then conv4_3 (512) and conv5_3 (512).
pub fn hypercolumn_parts(blocks: usize) -> Vec<usize> {
    HYPERCOLUMN_PARTS.iter().copied().chain(deeper_blocks(blocks).iter().map(|block| block[2].2)).collect()
}

/// The blocks a trunk of `blocks` blocks adds to the method's.
fn deeper_blocks(blocks: usize) -> &'static [[(usize, usize, usize); 3]] {
    &DEEPER_BLOCKS[..blocks.saturating_sub(METHOD_BLOCKS).min(DEEPER_BLOCKS.len())]
}

/// Channels of that hypercolumn: 451, 963 or 1475.
pub fn hypercolumn_channels(blocks: usize) -> usize {
    hypercolumn_parts(blocks).iter().sum()
}

/// The factor a side must be a multiple of for a trunk of `blocks` blocks:
/// each max-pool before its deepest tap halves it exactly.
pub fn side_multiple(blocks: usize) -> usize {
    1 << (blocks.clamp(METHOD_BLOCKS, MAX_BLOCKS) - 1)
}

/// ImageNet normalisation the trunk's weights expect (RGB, on x / 255).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The ReLU outputs the hypercolumn is made of.
#[derive(Debug)]
pub struct Taps {
    /// [n, 64, h, w]
    pub conv1_2: Tensor,
    /// [n, 128, h/2, w/2]
    pub conv2_2: Tensor,
    /// [n, 256, h/4, w/4]
    pub conv3_3: Tensor,
    /// A deeper trunk's: conv4_3 [n, 512, h/8, w/8], then conv5_3
    /// [n, 512, h/16, w/16]. Empty for the method's trunk.
    pub deeper: Vec<Tensor>,
}

impl Taps {
    /// conv1_2, conv2_2, conv3_3 and the deeper taps, in that order.
    pub fn all(&self) -> Vec<&Tensor> {
        [&self.conv1_2, &self.conv2_2, &self.conv3_3].into_iter().chain(&self.deeper).collect()
    }
}

#[derive(Clone, Debug)]
pub struct Vgg16Trunk {
    /// The method's seven, then three per deeper block.
    convs: Vec<Conv2d>,
    identity: TrunkIdentity,
    /// The precision it computes in (`model.trunk_dtype`).
    precision: DType,
}

/// Which trunk this is: a name (`embedded`, `hub`, or the file's path) and
/// a fingerprint of its weights' values, which a head file records so that
/// it is never run on another trunk by mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkIdentity {
    pub name: String,
    pub fingerprint: String,
}

impl Vgg16Trunk {
    /// The tensors the method's trunk file must hold, with their shapes (timm's keys).
    pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
        Self::expected_tensors_of(METHOD_BLOCKS)
    }

    /// The tensors a trunk of `blocks` blocks reads.
    pub fn expected_tensors_of(blocks: usize) -> Vec<(String, Vec<usize>)> {
        layers(blocks)
            .iter()
            .flat_map(|&(i, cin, cout)| {
                [(format!("features.{i}.weight"), vec![cout, cin, 3, 3]), (format!("features.{i}.bias"), vec![cout])]
            })
            .collect()
    }

    /// Loads conv1_1 … conv3_3 from a safetensors file in timm's layout
    /// (memory-mapped; other tensors in the file, such as the classifier of
    /// a full VGG-16, are never read).
    pub fn load(path: &Path, device: &Device) -> std::result::Result<Vgg16Trunk, ModelError> {
        Self::load_blocks(path, METHOD_BLOCKS, device)
    }

    /// Loads the first `blocks` (3 to 5) blocks: conv1_1 … conv3_3, then
    /// conv4_1 … conv4_3 and conv5_1 … conv5_3.
    pub fn load_blocks(path: &Path, blocks: usize, device: &Device) -> std::result::Result<Vgg16Trunk, ModelError> {
        if !(METHOD_BLOCKS..=MAX_BLOCKS).contains(&blocks) {
            return Err(ModelError::BadConfig(format!(
                "a VGG-16 trunk of {blocks} blocks: the hypercolumn reads {METHOD_BLOCKS} to {MAX_BLOCKS}"
            )));
        }
        check_tensors(path, &Self::expected_tensors_of(blocks))?;
        // SAFETY: weights files are read-only while in use.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device)? };
        let mut trunk = Self::new_blocks(vb.pp("features"), blocks)?;
        trunk.identity = TrunkIdentity { name: crate::weights::trunk_name(path), fingerprint: trunk.fingerprint()? };
        Ok(trunk)
    }

    pub fn identity(&self) -> &TrunkIdentity {
        &self.identity
    }

    /// A fingerprint of the weights' values (f32, little-endian, in layer order).
    fn fingerprint(&self) -> Result<String> {
        let mut bytes = Vec::new();
        for conv in &self.convs {
            for t in [conv.weight(), conv.bias()] {
                let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        Ok(colorize_core::fingerprint(&bytes))
    }

    /// Builds the method's trunk from a `VarBuilder` rooted at timm's `features`.
    pub fn new(vb: VarBuilder) -> Result<Vgg16Trunk> {
        Self::new_blocks(vb, METHOD_BLOCKS)
    }

    /// Builds a trunk of `blocks` blocks from a `VarBuilder` rooted at timm's `features`.
    pub fn new_blocks(vb: VarBuilder, blocks: usize) -> Result<Vgg16Trunk> {
        let convs = layers(blocks)
            .iter()
            .map(|&(i, cin, cout)| {
                let vb = vb.pp(i.to_string());
                Conv2d::frozen(vb.get((cout, cin, 3, 3), "weight")?, vb.get(cout, "bias")?)
            })
            .collect::<Result<Vec<_>>>()?;
        // Named by `load` (a trunk built from a bare VarBuilder has no file).
        let identity = TrunkIdentity { name: "unnamed".into(), fingerprint: String::new() };
        Ok(Vgg16Trunk { convs, identity, precision: DType::F32 })
    }

    /// The trunk computing in `dtype` (its fingerprint stays the f32
    /// weights'): `forward` casts its input to it and the taps back to f32.
    /// Candle's CPU matrix products have no bf16 or f16, so on the CPU the
    /// precision is emulated as a GPU's tensor cores compute: weights and
    /// every layer's output rounded to `dtype`, products summed in f32.
    pub fn to_dtype(&self, dtype: DType) -> Result<Vgg16Trunk> {
        let emulate = self.convs[0].weight().device().is_cpu();
        let cast = |t: &Tensor| match emulate {
            true => t.to_dtype(dtype)?.to_dtype(DType::F32),
            false => t.to_dtype(dtype),
        };
        let convs = self
            .convs
            .iter()
            .map(|c| Conv2d::frozen(cast(c.weight())?, cast(c.bias())?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Vgg16Trunk { convs, identity: self.identity.clone(), precision: dtype })
    }

    /// The precision the trunk computes in.
    pub fn dtype(&self) -> DType {
        self.precision
    }

    /// Its convolution blocks: 3 (the method's) to 5.
    pub fn blocks(&self) -> usize {
        METHOD_BLOCKS + (self.convs.len() - TRUNK_LAYERS.len()) / 3
    }

    /// A layer's output in the trunk's precision: rounded to it where the
    /// arithmetic is f32 (the CPU's emulation), as it is elsewhere.
    fn round(&self, x: Tensor) -> Result<Tensor> {
        let computing = self.convs[0].weight().dtype();
        if computing == self.precision {
            return Ok(x);
        }
        x.to_dtype(self.precision)?.to_dtype(computing)
    }

    /// x: [n, 3, h, w], normalised; h and w multiples of `side_multiple`. The taps are f32
    /// whatever the trunk computes in.
    pub fn forward(&self, x: &Tensor) -> Result<Taps> {
        let c = &self.convs;
        let run = |conv: &Conv2d, x: &Tensor| self.round(conv.forward(x)?.relu()?);
        let layer = |i: usize, x: &Tensor| run(&c[i], x);
        let x = self.round(x.to_dtype(c[0].weight().dtype())?)?;
        let x = layer(0, &x)?;
        let conv1_2 = layer(1, &x)?;
        let x = conv1_2.max_pool2d(2)?;
        let x = layer(2, &x)?;
        let conv2_2 = layer(3, &x)?;
        let x = conv2_2.max_pool2d(2)?;
        let x = layer(4, &x)?;
        let x = layer(5, &x)?;
        let conv3_3 = layer(6, &x)?;
        let mut deeper = Vec::new();
        let mut x = conv3_3.clone();
        for block in c[TRUNK_LAYERS.len()..].chunks(3) {
            x = x.max_pool2d(2)?;
            for conv in block {
                x = run(conv, &x)?;
            }
            deeper.push(x.to_dtype(DType::F32)?);
        }
        let [conv1_2, conv2_2, conv3_3] = [conv1_2, conv2_2, conv3_3].map(|t| t.to_dtype(DType::F32));
        Ok(Taps { conv1_2: conv1_2?, conv2_2: conv2_2?, conv3_3: conv3_3?, deeper })
    }
}

/// (timm index, input channels, output channels) of a trunk of `blocks` blocks' layers.
fn layers(blocks: usize) -> Vec<(usize, usize, usize)> {
    TRUNK_LAYERS.iter().chain(deeper_blocks(blocks).iter().flatten()).copied().collect()
}

/// The trunk's input from gray values: y [n, 1, h, w] in 0..=255 becomes
/// [n, 3, h, w], Y repeated and normalised per channel.
pub fn normalise_gray(y: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = y.dims4()?;
    let device = y.device();
    let mean = Tensor::new(&IMAGENET_MEAN, device)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&IMAGENET_STD, device)?.reshape((1, 3, 1, 1))?;
    (y / 255.0)?.broadcast_as((n, 3, h, w))?.broadcast_sub(&mean)?.broadcast_div(&std)
}
