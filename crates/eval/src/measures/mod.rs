//! The measures: each takes a prediction and its truth, two RGB images of
//! equal size, and returns one number.
//!
//! | measure | range | better | definition |
//! | --- | --- | --- | --- |
//! | `qssim` | 0..1 | higher | Kolaman & Yadid-Pecht 2012, the authors' reference defaults (see `qssim`) |
//! | `psnr` | dB | higher | RGB, 8-bit peak; capped at 100 dB (identical images) |
//! | `ssim` | -1..1 | higher | Wang et al. 2004 per R, G, B channel, averaged; the reference code's downsampling |
//! | `colorfulness` | 0.. | — | Hasler & Süsstrunk 2003, of the prediction |
//! | `colorfulness_gap` | | 0 best | prediction's colourfulness minus the truth's |
//! | `auc` | 0..1 | higher | area under the cumulative chroma-error curve, thresholds 0..150 |
//! | `hue` | 0..1 | higher | share of the truth's clearly coloured pixels whose predicted hue is within 30° (see `hue`) |

mod auc;
mod colorfulness;
mod hue;
mod psnr;
mod qssim;
mod ssim;
pub mod window;

pub use auc::{auc, chroma_error_curve};
pub use colorfulness::colorfulness;
pub use hue::{hue_accuracy, HUE_MIN_CHROMA, HUE_MIN_PREDICTED_CHROMA, HUE_TOLERANCE_DEGREES};
pub use psnr::psnr;
pub use qssim::{qssim, qssim_map, C1 as QSSIM_C1, C2 as QSSIM_C2};
pub use ssim::ssim;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why two images cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    #[error("sizes differ: prediction {pred_w}x{pred_h}, truth {truth_w}x{truth_h}")]
    SizeMismatch { pred_w: u32, pred_h: u32, truth_w: u32, truth_h: u32 },
    #[error("image is {w}x{h} ({scaled_w}x{scaled_h} after downsampling), smaller than the 11x11 window")]
    TooSmall { w: u32, h: u32, scaled_w: usize, scaled_h: usize },
}

pub(crate) fn check_same_size(pred: &RgbImage, truth: &RgbImage) -> Result<(), MeasureError> {
    if pred.dimensions() != truth.dimensions() {
        let ((pred_w, pred_h), (truth_w, truth_h)) = (pred.dimensions(), truth.dimensions());
        return Err(MeasureError::SizeMismatch { pred_w, pred_h, truth_w, truth_h });
    }
    Ok(())
}

/// A measure, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Qssim,
    Psnr,
    Ssim,
    Colorfulness,
    ColorfulnessGap,
    Auc,
    Hue,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Qssim,
        Metric::Psnr,
        Metric::Ssim,
        Metric::Colorfulness,
        Metric::ColorfulnessGap,
        Metric::Auc,
        Metric::Hue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Qssim => "qssim",
            Metric::Psnr => "psnr",
            Metric::Ssim => "ssim",
            Metric::Colorfulness => "colorfulness",
            Metric::ColorfulnessGap => "colorfulness_gap",
            Metric::Auc => "auc",
            Metric::Hue => "hue",
        }
    }

    /// Whether the measure has no value for some pictures (NaN), which are
    /// then left out of its mean rather than failed.
    pub fn may_be_undefined(self) -> bool {
        self == Metric::Hue
    }

    /// A comma list of names, or `all`. `colorfulness` brings its gap along.
    pub fn parse_list(list: &str) -> Result<Vec<Metric>, String> {
        let mut metrics = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => metrics.extend(Metric::ALL),
                "colorfulness" | "colourfulness" => metrics.extend([Metric::Colorfulness, Metric::ColorfulnessGap]),
                _ => match Metric::ALL.iter().find(|m| m.name() == name) {
                    Some(m) => metrics.push(*m),
                    None => {
                        let known: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
                        return Err(format!("unknown metric '{name}' (known: {}, all)", known.join(", ")));
                    }
                },
            }
        }
        metrics.sort();
        metrics.dedup();
        if metrics.is_empty() {
            return Err("no metric given".into());
        }
        Ok(metrics)
    }

    pub fn compute(self, pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
        match self {
            Metric::Qssim => qssim(pred, truth),
            Metric::Psnr => psnr(pred, truth),
            Metric::Ssim => ssim(pred, truth),
            Metric::Colorfulness => {
                check_same_size(pred, truth)?;
                Ok(colorfulness(pred))
            }
            Metric::ColorfulnessGap => {
                check_same_size(pred, truth)?;
                Ok(colorfulness(pred) - colorfulness(truth))
            }
            Metric::Auc => auc(pred, truth),
            Metric::Hue => hue_accuracy(pred, truth),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lists_parse() {
        assert_eq!(Metric::parse_list("qssim").unwrap(), [Metric::Qssim]);
        assert_eq!(Metric::parse_list("psnr, qssim").unwrap(), [Metric::Qssim, Metric::Psnr]);
        assert_eq!(Metric::parse_list("all").unwrap(), Metric::ALL);
        assert!(Metric::parse_list("qssim,lpips").unwrap_err().contains("lpips"));
    }
}
