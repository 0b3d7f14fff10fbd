//! Zero padding of the spatial dimensions.

use super::buffers::contiguous_f32;
use candle_core::{Result, Tensor};

/// Zero padding of the two spatial dimensions by [top, bottom, left, right]:
/// one pass on the CPU (candle's `pad_with_zeros` concatenates, several
/// times slower), candle's op elsewhere. Differentiable.
pub fn pad_spatial(x: &Tensor, sides: [usize; 4]) -> Result<Tensor> {
    let [top, bottom, left, right] = sides;
    if super::fast_cpu(&[x]) {
        x.apply_op1(ZeroPad2d { top, bottom, left, right })
    } else {
        reference(x, sides)
    }
}

/// `pad_spatial` in candle's ops.
pub fn reference(x: &Tensor, [top, bottom, left, right]: [usize; 4]) -> Result<Tensor> {
    x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)
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
        let src = contiguous_f32(storage, layout, self.name())?;
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
#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn padding_equals_its_reference_and_is_differentiable() {
        let d = Device::Cpu;
        let x = candle_core::Var::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &d).unwrap();
        let p = pad_spatial(x.as_tensor(), [1, 2, 0, 1]).unwrap();
        let want = reference(x.as_tensor(), [1, 2, 0, 1]).unwrap();
        assert_eq!(p.dims(), [1, 1, 5, 3]);
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grads = (p * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), [3.0; 4]);
    }
}
