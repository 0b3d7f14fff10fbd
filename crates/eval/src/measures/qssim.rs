//! Quaternion SSIM (A. Kolaman, O. Yadid-Pecht, "Quaternion Structural
//! Similarity: A New Quality Index for Color Images", IEEE TIP 21(4), 2012),
//! with the defaults of the authors' reference code (method.md):
//!
//! - both images / 256; each pixel the pure quaternion (R i + G j + B k) / √3;
//! - automatic downsampling by f = max(1, round(min(M, N) / 256)) (box filter);
//! - 11x11 Gaussian window, σ 1.5, 'valid'; C1 = 0.01², C2 = 0.03² (L = 1);
//! - map = ((2 μ1 μ2* + C1)(2 σ12* + C2)) / ((μ1 μ1* + μ2 μ2* + C1)(σ1² + σ2² + C2)*),
//!   QSSIM = mean over the map of |map|.
//!
//! For pure quaternions a, b: a b* = a·b − a×b. So with μ1, μ2 the windowed
//! means of the colour vectors:
//!
//! ```text
//! 2 μ1 μ2* + C1  = (2 μ1·μ2 + C1,  −2 μ1×μ2)
//! σ12 = E[q1 q2*] − μ1 μ2* = (E[v1·v2] − μ1·μ2,  −(E[v1×v2] − μ1×μ2)) = (s, w)
//! 2 σ12* + C2    = (2 s + C2,  −2 w)
//! σ1² = E[|v1|²] − |μ1|²   (real), likewise σ2²
//! ```
//!
//! The denominator is real, and |p q| = |p| |q| for quaternions, so
//! |map| = |2 μ1 μ2* + C1| · |2 σ12* + C2| / ((|μ1|² + |μ2|² + C1)(σ1² + σ2² + C2)).
//! The fast path filters the 12 planes these need (v1, v2, |v1|², |v2|²,
//! v1·v2, v1×v2) with the separable window and combines them per pixel.

use super::window::{box_downsample, downsample_factor, filter_valid, gaussian_1d, Plane, WINDOW};
use super::{check_same_size, MeasureError};
use image::RgbImage;

/// The stabilising constants (L = 1), shared with the training loss.
pub const C1: f64 = 0.01 * 0.01;
pub const C2: f64 = 0.03 * 0.03;

/// QSSIM of a prediction against its truth (symmetric in its arguments).
pub fn qssim(pred: &RgbImage, truth: &RgbImage) -> Result<f64, MeasureError> {
    Ok(qssim_map(pred, truth)?.mean())
}

/// The map of |local QSSIM|, at the downsampled size less the window's border.
pub fn qssim_map(pred: &RgbImage, truth: &RgbImage) -> Result<Plane, MeasureError> {
    check_same_size(pred, truth)?;
    let v1 = colour_vectors(pred)?;
    let v2 = colour_vectors(truth)?;
    let (w, h) = (v1[0].w, v1[0].h);
    let g = gaussian_1d();
    let per_pixel = |f: &dyn Fn(usize) -> f64| Plane { w, h, data: (0..w * h).map(f).collect() };

    let mean = |p: &Plane| filter_valid(p, &g);
    let mu1 = [mean(&v1[0]), mean(&v1[1]), mean(&v1[2])];
    let mu2 = [mean(&v2[0]), mean(&v2[1]), mean(&v2[2])];
    let vec_at = |v: &[Plane; 3], i: usize| [v[0].data[i], v[1].data[i], v[2].data[i]];
    let e_norm1 = mean(&per_pixel(&|i| dot(vec_at(&v1, i), vec_at(&v1, i))));
    let e_norm2 = mean(&per_pixel(&|i| dot(vec_at(&v2, i), vec_at(&v2, i))));
    let e_dot = mean(&per_pixel(&|i| dot(vec_at(&v1, i), vec_at(&v2, i))));
    let e_cross: Vec<Plane> = (0..3).map(|k| mean(&per_pixel(&|i| cross(vec_at(&v1, i), vec_at(&v2, i))[k]))).collect();

    let (ow, oh) = (e_dot.w, e_dot.h);
    let data = (0..ow * oh)
        .map(|i| {
            let m1 = vec_at(&mu1, i);
            let m2 = vec_at(&mu2, i);
            let mu_cross = cross(m1, m2);
            let a_norm = ((2.0 * dot(m1, m2) + C1).powi(2) + 4.0 * dot(mu_cross, mu_cross)).sqrt();
            let s = e_dot.data[i] - dot(m1, m2);
            let w = [0, 1, 2].map(|k| e_cross[k].data[i] - mu_cross[k]);
            let b_norm = ((2.0 * s + C2).powi(2) + 4.0 * dot(w, w)).sqrt();
            let var1 = e_norm1.data[i] - dot(m1, m1);
            let var2 = e_norm2.data[i] - dot(m2, m2);
            let denominator = (dot(m1, m1) + dot(m2, m2) + C1) * (var1 + var2 + C2);
            a_norm * b_norm / denominator
        })
        .collect();
    Ok(Plane { w: ow, h: oh, data })
}

/// The R, G, B planes of the pure quaternions (channel / 256 / √3), downsampled.
fn colour_vectors(image: &RgbImage) -> Result<[Plane; 3], MeasureError> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let scale = 1.0 / (256.0 * 3f64.sqrt());
    let raw = image.as_raw();
    let f = downsample_factor(w, h);
    let planes = [0, 1, 2].map(|c| {
        let plane = Plane { w, h, data: raw.iter().skip(c).step_by(3).map(|&v| f64::from(v) * scale).collect() };
        box_downsample(&plane, f)
    });
    if planes[0].w < WINDOW || planes[0].h < WINDOW {
        return Err(MeasureError::TooSmall {
            w: image.width(),
            h: image.height(),
            scaled_w: planes[0].w,
            scaled_h: planes[0].h,
        });
    }
    Ok(planes)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
