//! Moving between candle's channels-first layout [n, c, h, w] and
//! channels-last [n, h, w, c] on the CPU, a group of 16 channels (one cache
//! line of a channels-last pixel) at a time. Candle's strided copy of the
//! same permutation runs element by element, several times slower.

use super::buffers::{contiguous_f32, contiguous_f32_mut, zeroed};
use candle_core::{CpuStorage, CustomOp1, InplaceOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const GROUP: usize = 16;

/// [n, c, h, w] -> [n, h, w, c] (CPU f32; candle's permutation elsewhere).
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    if super::fast_cpu(&[x]) {
        x.apply_op1_no_bwd(&ToChannelsLast)
    } else {
        x.permute((0, 2, 3, 1))?.contiguous()
    }
}

/// `into` [n, c, h, w] += `x` [n, h, w, c], in place (CPU f32, `into` contiguous).
pub fn add_channels_last(into: &Tensor, x: &Tensor) -> Result<()> {
    into.inplace_op2(x, &AddChannelsLast)
}

struct ToChannelsLast;

impl CustomOp1 for ToChannelsLast {
    fn name(&self) -> &'static str {
        "to-channels-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let x = contiguous_f32(storage, layout, self.name())?;
        let pixels = h * w;
        let mut out = zeroed(n * pixels * c);
        for (src, dst) in x.chunks_exact(c * pixels).zip(out.chunks_exact_mut(pixels * c)) {
            // Each task writes a band of pixels, reading every channel plane there.
            dst.par_chunks_mut(c * 256).enumerate().for_each(|(band, dst)| {
                let first = band * 256;
                for (p, pixel) in dst.chunks_exact_mut(c).enumerate() {
                    for (ch, v) in pixel.iter_mut().enumerate() {
                        *v = src[ch * pixels + first + p];
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), (n, h, w, c).into()))
    }
}

struct AddChannelsLast;

impl InplaceOp2 for AddChannelsLast {
    fn name(&self) -> &'static str {
        "add-channels-last"
    }

    fn cpu_fwd(&self, into: &mut CpuStorage, into_layout: &Layout, x: &CpuStorage, x_layout: &Layout) -> Result<()> {
        let (n, c, h, w) = into_layout.shape().dims4()?;
        if x_layout.shape().dims() != [n, h, w, c] {
            candle_core::bail!("add-channels-last: {:?} into {:?}", x_layout.shape(), into_layout.shape());
        }
        let x = contiguous_f32(x, x_layout, self.name())?;
        let into = contiguous_f32_mut(into, into_layout, self.name())?;
        let pixels = h * w;
        for (src, dst) in x.chunks_exact(pixels * c).zip(into.chunks_exact_mut(c * pixels)) {
            // Each task owns GROUP channel planes and reads one cache line per pixel.
            dst.par_chunks_mut(GROUP * pixels).enumerate().for_each(|(group, planes)| {
                let first = group * GROUP;
                let count = planes.len() / pixels;
                for (p, pixel) in src.chunks_exact(c).enumerate() {
                    for (k, v) in pixel[first..first + count].iter().enumerate() {
                        planes[k * pixels + p] += v;
                    }
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn both_directions_agree_with_candles_permutation() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 37, 5, 7), &d).unwrap();
        let want = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let last = to_channels_last(&x).unwrap();
        assert_eq!(last.dims(), want.dims());
        let diff = (&last - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);

        let base = Tensor::randn(0f32, 1.0, (2, 37, 5, 7), &d).unwrap();
        let sum = base.copy().unwrap();
        add_channels_last(&sum, &last).unwrap();
        let diff = (sum - (base + x).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
