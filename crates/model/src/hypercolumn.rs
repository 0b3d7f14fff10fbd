//! The hypercolumn: the input and the trunk's taps, at the input's size.

use crate::trunk::Taps;
use candle_core::{Result, Tensor};

/// [n, 451, h, w]: x (3), conv1_2 (64), conv2_2 upsampled x2 (128),
/// conv3_3 upsampled x4 (256). Bilinear, half-pixel centres (PyTorch's
/// `align_corners=False`). Detached: the trunk is frozen, so no gradient
/// ever flows back through it.
pub fn hypercolumn(x: &Tensor, taps: &Taps) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let conv2_2 = taps.conv2_2.upsample_bilinear2d(h, w, false)?;
    let conv3_3 = taps.conv3_3.upsample_bilinear2d(h, w, false)?;
    Tensor::cat(&[x, &taps.conv1_2, &conv2_2, &conv3_3], 1)?.detach().contiguous()
}
