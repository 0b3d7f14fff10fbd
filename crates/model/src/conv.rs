//! `Conv2d`: the single convolution seam of the model.
//!
//! Every convolution of the trunk and the head is one of these, so a faster
//! kernel (issue: speed) replaces the body of `forward` and nothing else.
//! Today it is candle's stock `conv2d` (im2col + gemm) plus a bias.

use candle_core::{Module, Result, Tensor};

/// A stride-1 convolution with "same" padding and a bias.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// [out, in, k, k]
    weight: Tensor,
    /// [out]
    bias: Tensor,
}

impl Conv2d {
    pub fn new(weight: Tensor, bias: Tensor) -> Conv2d {
        Conv2d { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    fn padding(&self) -> usize {
        self.weight.dim(3).unwrap_or(1) / 2
    }
}

impl Module for Conv2d {
    /// [n, in, h, w] -> [n, out, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding(), 1, 1, 1)?;
        y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
}
