//! The gradient through a ReLU, in place.

use super::buffers::{contiguous_f32, contiguous_f32_mut};
use candle_core::{Result, Tensor};

/// (`grad` + `extra`) where `pre` > 0, else 0: the gradient through a
/// ReLU, with a second gradient summed in. On the CPU one pass, in place in
/// `grad` (a tensor of this step's own): candle's sum, mask, conversion and
/// product made four new tensors of the layer's size, whose first writes
/// (page faults) cost more than the arithmetic at batch 4.
pub fn relu_backward(grad: Tensor, extra: Option<&Tensor>, pre: &Tensor) -> Result<Tensor> {
    let mut operands = vec![&grad, pre];
    operands.extend(extra);
    if super::fast_cpu(&operands) {
        let grad = grad.contiguous()?;
        let pre = pre.contiguous()?;
        match extra {
            Some(extra) => grad.inplace_op3(&extra.contiguous()?, &pre, &ReluBackward)?,
            None => grad.inplace_op2(&pre, &ReluBackward)?,
        }
        return Ok(grad);
    }
    reference(grad, extra, pre)
}

/// `relu_backward` in candle's ops.
pub fn reference(grad: Tensor, extra: Option<&Tensor>, pre: &Tensor) -> Result<Tensor> {
    let sum = match extra {
        Some(extra) => (grad + extra)?,
        None => grad,
    };
    sum * pre.gt(0f32)?.to_dtype(pre.dtype())?
}

struct ReluBackward;

impl ReluBackward {
    fn run(grad: &mut [f32], extra: Option<&[f32]>, pre: &[f32]) -> Result<()> {
        if pre.len() != grad.len() || extra.is_some_and(|e| e.len() != grad.len()) {
            candle_core::bail!("relu-backward: tensors of different sizes");
        }
        match extra {
            Some(e) => grad.iter_mut().zip(e).zip(pre).for_each(|((g, e), p)| *g = if *p > 0.0 { *g + e } else { 0.0 }),
            None => grad.iter_mut().zip(pre).for_each(|(g, p)| *g = if *p > 0.0 { *g } else { 0.0 }),
        }
        Ok(())
    }
}

impl candle_core::InplaceOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu-backward"
    }

    fn cpu_fwd(
        &self,
        grad: &mut candle_core::CpuStorage,
        grad_layout: &candle_core::Layout,
        pre: &candle_core::CpuStorage,
        pre_layout: &candle_core::Layout,
    ) -> Result<()> {
        let name = candle_core::InplaceOp2::name(self);
        ReluBackward::run(contiguous_f32_mut(grad, grad_layout, name)?, None, contiguous_f32(pre, pre_layout, name)?)
    }
}

impl candle_core::InplaceOp3 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu-backward-of-a-sum"
    }

    fn cpu_fwd(
        &self,
        grad: &mut candle_core::CpuStorage,
        grad_layout: &candle_core::Layout,
        extra: &candle_core::CpuStorage,
        extra_layout: &candle_core::Layout,
        pre: &candle_core::CpuStorage,
        pre_layout: &candle_core::Layout,
    ) -> Result<()> {
        let name = candle_core::InplaceOp3::name(self);
        let (extra, pre) = (contiguous_f32(extra, extra_layout, name)?, contiguous_f32(pre, pre_layout, name)?);
        ReluBackward::run(contiguous_f32_mut(grad, grad_layout, name)?, Some(extra), pre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relu_backward_equals_its_reference_with_and_without_a_second_gradient() {
        let d = Device::Cpu;
        let grad = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &d).unwrap();
        let extra = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &d).unwrap();
        let pre = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &d).unwrap();
        for extra in [None, Some(&extra)] {
            let fast = relu_backward(grad.copy().unwrap(), extra, &pre).unwrap();
            let want = reference(grad.clone(), extra, &pre).unwrap();
            let diff = (fast - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0);
        }
        assert!(relu_backward(grad.copy().unwrap(), None, &pre.narrow(0, 0, 1).unwrap()).is_err(), "sizes differ");
    }
}
