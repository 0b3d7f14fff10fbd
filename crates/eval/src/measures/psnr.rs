//! PSNR over the R, G, B values, 8-bit peak (255).

use super::{check_same_size, MeasureError};
use image::RgbImage;

/// PSNR in dB. Identical images have infinite PSNR; it is capped at this, so
/// that means over many images stay finite.
pub const PSNR_CAP_DB: f64 = 100.0;

pub fn psnr(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    check_same_size(pred, truth)?;
    let sum: f64 = pred
        .as_raw()
        .iter()
        .zip(truth.as_raw())
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum();
    let mse = sum / pred.as_raw().len() as f64;
    if mse == 0.0 {
        return Ok(PSNR_CAP_DB);
    }
    Ok((10.0 * (255.0 * 255.0 / mse).log10()).min(PSNR_CAP_DB))
}
