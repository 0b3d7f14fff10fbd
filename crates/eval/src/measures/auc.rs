//! The cumulative chroma-error curve and its area (as in Zhang, Isola, Efros
//! 2016): per pixel, the Euclidean distance between the predicted and true
//! (U, V) (0..255 scale, the method's formulas); the curve is the fraction
//! of pixels within each threshold 0, 1, ..., 150; the area is the
//! trapezoid rule over [0, 150], divided by 150 so that it lies in [0, 1].

use super::{check_same_size, MeasureError};
use image::RgbImage;

pub const MAX_THRESHOLD: usize = 150;

fn uv(rgb: [u8; 3]) -> [f64; 2] {
    let [r, g, b] = rgb.map(f64::from);
    [r * -0.168736 + g * -0.331264 + b * 0.5, r * 0.5 + g * -0.418688 + b * -0.081312]
}

/// Fraction of pixels whose chroma error is at most t, for t = 0..=150.
pub fn chroma_error_curve(pred: &RgbImage, truth: &RgbImage) -> Result<Vec<f64>, MeasureError> {
    check_same_size(pred, truth)?;
    let mut histogram = vec![0usize; MAX_THRESHOLD + 2];
    for (a, b) in pred.pixels().zip(truth.pixels()) {
        let (p, t) = (uv(a.0), uv(b.0));
        let error = ((p[0] - t[0]).powi(2) + (p[1] - t[1]).powi(2)).sqrt();
        // Within threshold t means error <= t: the bin is ceil(error).
        let bin = (error.ceil() as usize).min(MAX_THRESHOLD + 1);
        histogram[bin] += 1;
    }
    let n = (pred.width() as f64) * (pred.height() as f64);
    let mut within = 0usize;
    Ok(histogram[..=MAX_THRESHOLD]
        .iter()
        .map(|count| {
            within += count;
            within as f64 / n
        })
        .collect())
}

pub fn auc(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    let curve = chroma_error_curve(pred, truth)?;
    let inner: f64 = curve.iter().sum::<f64>() - 0.5 * (curve[0] + curve[MAX_THRESHOLD]);
    Ok(inner / MAX_THRESHOLD as f64)
}
