//! `Conv2d`: the single convolution seam of the model.
//!
//! Every convolution of the trunk and the head is one of these, so a faster
//! kernel replaces the body of `forward` and nothing else.
//!
//! The body is a sum over the k² kernel taps of one matrix product each:
//! y[n, :, p] = Σ_taps W[:, :, ky, kx] · x_padded[n, :, p + (ky, kx)], which
//! keeps all the arithmetic in candle's gemm. Candle's own CPU `conv2d`
//! (`stock_conv2d`, kept as the reference) builds and zeroes im2col tiles on
//! every call and ran at under 2 GFLOP/s on the head's shapes here.

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
    ///
    /// The input is padded once, with one extra row at the bottom, and
    /// flattened: the input under kernel tap (ky, kx) for every output pixel
    /// of a row-major "wide" grid (w + 2p columns) is then the single slice
    /// starting at ky·(w + 2p) + kx, which candle's matmul reads in place.
    /// The 2p extra columns of the result are dropped at the end.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, cin, h, w) = x.dims4()?;
        let (cout, _, k, _) = self.weight.dims4()?;
        let bias = self.bias.reshape((1, (), 1, 1))?;
        if k == 1 {
            let y = self.weight.reshape((cout, cin))?.broadcast_matmul(&x.reshape((n, cin, h * w))?)?;
            return y.reshape((n, cout, h, w))?.broadcast_add(&bias);
        }
        let pad = self.padding();
        let wide = w + 2 * pad;
        let flat = pad_spatial(x, [pad, pad + 1, pad, pad])?.reshape((n, cin, (h + 2 * pad + 1) * wide))?;
        let mut sum: Option<Tensor> = None;
        for ky in 0..k {
            for kx in 0..k {
                let tap = self.weight.narrow(2, ky, 1)?.narrow(3, kx, 1)?.contiguous()?.reshape((cout, cin))?;
                let part = tap.broadcast_matmul(&flat.narrow(2, ky * wide + kx, h * wide)?)?;
                sum = Some(match sum {
                    Some(acc) => (acc + part)?,
                    None => part,
                });
            }
        }
        let y = sum.expect("a kernel has at least one tap").reshape((n, cout, h, wide))?.narrow(3, 0, w)?;
        y.broadcast_add(&bias)
    }
}

/// Zero padding of the two spatial dimensions by [top, bottom, left, right]:
/// one pass on the CPU (candle's `pad_with_zeros` concatenates, several
/// times slower), candle's op elsewhere. Differentiable.
pub fn pad_spatial(x: &Tensor, [top, bottom, left, right]: [usize; 4]) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.apply_op1(ZeroPad2d { top, bottom, left, right })
    } else {
        x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)
    }
}

struct ZeroPad2d {
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
}

impl candle_core::CustomOp1 for ZeroPad2d {
    fn name(&self) -> &'static str {
        "zero-pad-2d"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let src = match (storage, layout.contiguous_offsets()) {
            (candle_core::CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            _ => candle_core::bail!("zero-pad-2d takes a contiguous f32 tensor"),
        };
        let (ph, pw) = (h + self.top + self.bottom, w + self.left + self.right);
        let mut out = vec![0f32; n * c * ph * pw];
        for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(ph * pw)) {
            for (row, line) in plane.chunks_exact(w).enumerate() {
                let at = (row + self.top) * pw + self.left;
                dst[at..at + w].copy_from_slice(line);
            }
        }
        Ok((candle_core::CpuStorage::F32(out), (n, c, ph, pw).into()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, ph, pw) = grad.dims4()?;
        let inner = grad.narrow(2, self.top, ph - self.top - self.bottom)?;
        Ok(Some(inner.narrow(3, self.left, pw - self.left - self.right)?))
    }
}

/// Candle's stock convolution plus the bias: the reference the fast path is
/// tested against.
pub fn stock_conv2d(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let y = x.conv2d(&conv.weight, conv.padding(), 1, 1, 1)?;
    y.broadcast_add(&conv.bias.reshape((1, (), 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn padding_is_exact_and_differentiable() {
        let d = Device::Cpu;
        let x = candle_core::Var::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &d).unwrap();
        let p = pad_spatial(x.as_tensor(), [1, 2, 0, 1]).unwrap();
        let want = x.as_tensor().pad_with_zeros(2, 1, 2).unwrap().pad_with_zeros(3, 0, 1).unwrap();
        assert_eq!(p.to_vec3::<f32>().ok(), None); // 4-d
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grads = (p * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), [3.0; 4]);
    }

    #[test]
    fn the_tap_sum_equals_candles_convolution() {
        let d = Device::Cpu;
        for (cin, cout, k, h, w) in [(5, 7, 3, 9, 6), (4, 3, 1, 5, 5), (3, 2, 5, 8, 11)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &d).unwrap();
            let conv = Conv2d::new(
                Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap(),
                Tensor::randn(0f32, 1.0, cout, &d).unwrap(),
            );
            let fast = conv.forward(&x).unwrap();
            let stock = stock_conv2d(&conv, &x).unwrap();
            let diff = (fast - stock).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{cin}->{cout} k{k}: {diff}");
        }
    }
}
