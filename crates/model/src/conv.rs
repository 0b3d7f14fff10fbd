//! `Conv2d`: the single convolution seam of the model.
//!
//! Every convolution of the trunk and the head is one of these: a checked
//! weight and bias whose `forward` is `kernels::convolution::conv2d_same`,
//! so a faster kernel goes there and nothing here changes.

use crate::kernels::convolution::conv2d_same_prepared;
use candle_core::{Module, Result, Tensor};
use std::sync::{Arc, OnceLock};

/// A stride-1 convolution with "same" padding and a bias.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// [out, in, k, k]
    weight: Tensor,
    /// [out]
    bias: Tensor,
    /// For a layer whose weight never changes (`frozen`): the weight as a
    /// kernel prepares it, made at the first call that needs it.
    prepared: Option<Arc<OnceLock<Tensor>>>,
}

impl Conv2d {
    /// A stride-1 'same' convolution. The weight must be [out, in, k, k]
    /// with k odd and the bias [out]: the kernels trust these sizes
    /// (an even or non-square kernel would reach gemm with the wrong ones).
    pub fn new(weight: Tensor, bias: Tensor) -> Result<Conv2d> {
        let dims = weight.dims();
        let square_odd = matches!(dims, [_, _, k, k2] if k == k2 && k % 2 == 1);
        if !square_odd {
            candle_core::bail!("a convolution weight must be [out, in, k, k] with k odd, not {dims:?}");
        }
        if bias.dims() != [dims[0]] {
            candle_core::bail!("a convolution bias must be [{}], not {:?}", dims[0], bias.dims());
        }
        Ok(Conv2d { weight, bias, prepared: None })
    }

    /// A convolution whose weight never changes (the trunk's): the kernels
    /// may keep a transformed copy of it between calls.
    pub fn frozen(weight: Tensor, bias: Tensor) -> Result<Conv2d> {
        let conv = Conv2d::new(weight, bias)?;
        Ok(Conv2d { prepared: Some(Arc::default()), ..conv })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for Conv2d {
    /// [n, in, h, w] -> [n, out, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d_same_prepared(x, &self.weight, &self.bias, self.prepared.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn a_weight_that_is_not_an_odd_square_kernel_is_refused() {
        let d = Device::Cpu;
        let zeros = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &d).unwrap();
        for dims in [&[4, 3, 2, 2][..], &[4, 3, 3, 1], &[4, 3, 3], &[4, 3, 5, 3]] {
            let err = Conv2d::new(zeros(dims), zeros(&[4])).expect_err("refused");
            assert!(err.to_string().contains("k odd"), "{dims:?}: {err}");
        }
        assert!(Conv2d::new(zeros(&[4, 3, 3, 3]), zeros(&[3])).is_err(), "a bias of the wrong size");
        assert!(Conv2d::new(zeros(&[4, 3, 3, 3]), zeros(&[4])).is_ok());
    }
}
