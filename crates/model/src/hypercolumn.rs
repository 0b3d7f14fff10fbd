//! The hypercolumn: the input and the trunk's taps, at the input's size.

use crate::trunk::Taps;
use candle_core::{Result, Tensor};

/// [n, 451, h, w]: x (3), conv1_2 (64), conv2_2 upsampled x2 (128),
/// conv3_3 upsampled x4 (256). Bilinear, half-pixel centres (PyTorch's
/// `align_corners=False`). Detached: the trunk is frozen, so no gradient
/// ever flows back through it. Each part is multiplied by its `scale`
/// (`HeadConfig::hypercolumn_scale`; all 1 in the plain method).
pub fn hypercolumn(x: &Tensor, taps: &Taps, scale: [f32; 4]) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let conv2_2 = taps.conv2_2.upsample_bilinear2d(h, w, false)?;
    let conv3_3 = taps.conv3_3.upsample_bilinear2d(h, w, false)?;
    let parts = [x.clone(), taps.conv1_2.clone(), conv2_2, conv3_3];
    let scaled: Vec<Tensor> = parts
        .into_iter()
        .zip(scale)
        .map(|(part, s)| if s == 1.0 { Ok(part) } else { part.affine(f64::from(s), 0.0) })
        .collect::<Result<_>>()?;
    Tensor::cat(&scaled, 1)?.detach().contiguous()
}
