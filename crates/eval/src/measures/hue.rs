//! Hue accuracy: whether a colouring knows which hue a thing has, which
//! QSSIM and PSNR (distances) do not say. Among the truth's clearly coloured
//! pixels (chroma radius √((U−128)² + (V−128)²) above `HUE_MIN_CHROMA`), the
//! fraction whose predicted hue angle atan2(V−128, U−128) is within
//! `HUE_TOLERANCE_DEGREES` of the truth's. A predicted pixel with almost no
//! chroma (radius below `HUE_MIN_PREDICTED_CHROMA`) has no hue and counts as
//! a miss, so gray scores 0. A truth with no clearly coloured pixel has no
//! score (NaN: left out of the mean).

use super::{check_same_size, MeasureError};
use colorize_core::yuv::chroma_f64;
use image::RgbImage;

/// Chroma radius (U/V units, 0..255 scale) above which a truth pixel counts.
pub const HUE_MIN_CHROMA: f64 = 10.0;
/// Largest hue difference that counts as right, in degrees.
pub const HUE_TOLERANCE_DEGREES: f64 = 30.0;
/// Below this chroma radius a predicted pixel has no hue.
pub const HUE_MIN_PREDICTED_CHROMA: f64 = 2.0;

pub fn hue_accuracy(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    check_same_size(pred, truth)?;
    let (mut coloured, mut right) = (0u64, 0u64);
    for (p, t) in pred.pixels().zip(truth.pixels()) {
        let [tu, tv] = chroma_f64(t.0);
        if tu.hypot(tv) <= HUE_MIN_CHROMA {
            continue;
        }
        coloured += 1;
        let [pu, pv] = chroma_f64(p.0);
        if pu.hypot(pv) < HUE_MIN_PREDICTED_CHROMA {
            continue;
        }
        let difference = (pv.atan2(pu) - tv.atan2(tu)).to_degrees().rem_euclid(360.0);
        if difference.min(360.0 - difference) <= HUE_TOLERANCE_DEGREES {
            right += 1;
        }
    }
    Ok(if coloured == 0 { f64::NAN } else { right as f64 / coloured as f64 })
}
