//! Moving from candle's channels-first layout [n, c, h, w] to channels-last
//! [n, h, w, c] on the CPU, a band of pixels per task. Candle's strided copy
//! of the same permutation runs element by element, several times slower.

use super::buffers::{contiguous_f32, zeroed};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// [n, c, h, w] -> [n, h, w, c] (CPU f32; candle's permutation elsewhere).
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    if super::fast_cpu(&[x]) {
        x.apply_op1_no_bwd(&ToChannelsLast)
    } else {
        x.permute((0, 2, 3, 1))?.contiguous()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn channels_last_agrees_with_candles_permutation() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 37, 5, 7), &d).unwrap();
        let want = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let last = to_channels_last(&x).unwrap();
        assert_eq!(last.dims(), want.dims());
        let diff = (&last - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}
