//! SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) on RGB: the reference code's
//! definition (L = 255, K = 0.01 / 0.03, 11x11 Gaussian σ 1.5, 'valid', and
//! its automatic downsampling by max(1, round(min(M, N) / 256))) applied to
//! R, G and B separately; the result is the mean of the three channels'
//! mean SSIM.

use super::window::{box_downsample, downsample_factor, filter_valid, gaussian_1d, Plane, WINDOW};
use super::{check_same_size, MeasureError};
use image::RgbImage;

const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

pub fn ssim(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    check_same_size(pred, truth)?;
    let (w, h) = (pred.width() as usize, pred.height() as usize);
    let f = downsample_factor(w, h);
    let g = gaussian_1d();
    let mut total = 0.0;
    for c in 0..3 {
        let channel = |image: &RgbImage| {
            let data = image.as_raw().iter().skip(c).step_by(3).map(|&v| f64::from(v)).collect();
            box_downsample(&Plane { w, h, data }, f)
        };
        let (x, y) = (channel(pred), channel(truth));
        if x.w < WINDOW || x.h < WINDOW {
            return Err(MeasureError::TooSmall { w: pred.width(), h: pred.height(), scaled_w: x.w, scaled_h: x.h });
        }
        let product = |a: &Plane, b: &Plane| Plane {
            w: a.w,
            h: a.h,
            data: a.data.iter().zip(&b.data).map(|(p, q)| p * q).collect(),
        };
        let (mx, my) = (filter_valid(&x, &g), filter_valid(&y, &g));
        let (exx, eyy, exy) = (
            filter_valid(&product(&x, &x), &g),
            filter_valid(&product(&y, &y), &g),
            filter_valid(&product(&x, &y), &g),
        );
        let n = mx.data.len();
        let sum: f64 = (0..n)
            .map(|i| {
                let (mx, my) = (mx.data[i], my.data[i]);
                let (vx, vy, cxy) = (exx.data[i] - mx * mx, eyy.data[i] - my * my, exy.data[i] - mx * my);
                ((2.0 * mx * my + C1) * (2.0 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
            })
            .sum();
        total += sum / n as f64;
    }
    Ok(total / 3.0)
}
