//! Oracle colourings: a prediction with one property of its chroma taken
//! from the truth, to measure what limits a colorizer. Scored like any
//! prediction (`eval --pred`), the copy with the truth's hue and the
//! prediction's own chroma magnitude says what knowing which hue a thing has
//! would be worth; the copy with the truth's magnitude and the prediction's
//! own hue, what saturation alone would be worth.
//!
//! Both keep the truth's gray (its rounded luma, as the colorizer does) and
//! build RGB with `yuv_to_rgb8_keep_luma`, so the gray is never changed.
//! The truth's chroma is first blurred (Gaussian, `sigma` in pixels), so
//! that the oracle knows a region's colour, not its pixel noise: a
//! colorizer's chroma is smooth.

use crate::measures::{check_same_size, MeasureError};
use colorize_core::yuv::{chroma_f64, luma8, yuv_to_rgb8_keep_luma};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// What an oracle copy takes from the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Take {
    /// The truth's hue angle, the prediction's chroma magnitude. Where the
    /// truth's (blurred) chroma is gray it has no hue: the prediction's stays.
    Hue,
    /// The truth's chroma magnitude, the prediction's hue angle. Where the
    /// prediction is gray it has no hue: the copy stays gray.
    Magnitude,
}

/// Below this chroma radius (U/V units) a colour has no hue to keep.
const NO_HUE: f32 = 0.5;

/// `pred` with its chroma's hue or magnitude (`take`) replaced by the
/// truth's, the truth's chroma blurred by `sigma` pixels (0: not blurred).
pub fn take_from_truth(pred: &RgbImage, truth: &RgbImage, take: Take, sigma: f32) -> Result<RgbImage, MeasureError> {
    check_same_size(pred, truth)?;
    let (w, h) = truth.dimensions();
    let chroma = |image: &RgbImage| -> [Vec<f32>; 2] {
        let uv: Vec<[f64; 2]> = image.pixels().map(|p| chroma_f64(p.0)).collect();
        [uv.iter().map(|c| c[0] as f32).collect(), uv.iter().map(|c| c[1] as f32).collect()]
    };
    let [tu, tv] = chroma(truth).map(|plane| gaussian_blur(&plane, w as usize, h as usize, sigma));
    let [pu, pv] = chroma(pred);
    let mut out = RgbImage::new(w, h);
    for (i, (pixel, truth_pixel)) in out.pixels_mut().zip(truth.pixels()).enumerate() {
        let (t, p) = ([tu[i], tv[i]], [pu[i], pv[i]]);
        let (t_radius, p_radius) = (t[0].hypot(t[1]), p[0].hypot(p[1]));
        // (direction of the hue) · (length of the magnitude)
        let [du, dv] = match take {
            Take::Hue if t_radius < NO_HUE => p,
            Take::Hue => t.map(|c| c / t_radius * p_radius),
            Take::Magnitude if p_radius < NO_HUE => [0.0, 0.0],
            Take::Magnitude => p.map(|c| c / p_radius * t_radius),
        };
        let y = f32::from(luma8(truth_pixel.0));
        pixel.0 = yuv_to_rgb8_keep_luma(y, 128.0 + du, 128.0 + dv);
    }
    Ok(out)
}

/// A separable Gaussian blur of a w x h plane (kernel radius 3σ, mirrored
/// edges); σ = 0 returns the plane.
fn gaussian_blur(plane: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 || w == 0 || h == 0 {
        return plane.to_vec();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius).map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    // Mirror an index into 0..n (…, 1, 0, 1, …, n−2, n−1, n−2, …).
    let mirror = |i: isize, n: usize| -> usize {
        let period = 2 * (n as isize - 1).max(1);
        let i = i.rem_euclid(period);
        (if i < n as isize { i } else { period - i }) as usize
    };
    let pass = |src: &[f32], along_rows: bool| -> Vec<f32> {
        let mut dst = vec![0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                let (pos, n) = if along_rows { (x, w) } else { (y, h) };
                let mut sum = 0f32;
                for (k, weight) in kernel.iter().enumerate() {
                    let j = mirror(pos as isize + k as isize - radius, n);
                    sum += weight * if along_rows { src[y * w + j] } else { src[j * w + x] };
                }
                dst[y * w + x] = sum;
            }
        }
        dst
    };
    pass(&pass(plane, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colorize_core::yuv::rgb_to_yuv8;

    /// A colourful picture: hue turns across it, saturation grows down it.
    fn truth() -> RgbImage {
        RgbImage::from_fn(24, 16, |x, y| {
            let angle = x as f32 / 24.0 * std::f32::consts::TAU;
            let radius = 10.0 + 3.0 * y as f32;
            image::Rgb(yuv_to_rgb8_keep_luma(120.0, 128.0 + radius * angle.cos(), 128.0 + radius * angle.sin()))
        })
    }

    /// `truth` with every chroma turned by `turn` radians and scaled by `scale`.
    fn altered(truth: &RgbImage, turn: f32, scale: f32) -> RgbImage {
        RgbImage::from_fn(truth.width(), truth.height(), |x, y| {
            let p = truth.get_pixel(x, y).0;
            let [u, v] = chroma_f64(p).map(|c| c as f32);
            let (s, c) = turn.sin_cos();
            let (u2, v2) = (scale * (u * c - v * s), scale * (u * s + v * c));
            image::Rgb(yuv_to_rgb8_keep_luma(f32::from(luma8(p)), 128.0 + u2, 128.0 + v2))
        })
    }

    fn largest_difference(a: &RgbImage, b: &RgbImage) -> u8 {
        a.pixels().zip(b.pixels()).flat_map(|(p, q)| (0..3).map(move |c| p.0[c].abs_diff(q.0[c]))).max().unwrap_or(0)
    }

    #[test]
    fn the_truths_hue_on_a_turned_prediction_gives_the_truth_back() {
        let truth = truth();
        let turned = altered(&truth, 2.0, 1.0);
        assert!(largest_difference(&turned, &truth) > 40, "the prediction's hue is wrong");
        let oracle = take_from_truth(&turned, &truth, Take::Hue, 0.0).unwrap();
        // Only rounding (twice through 8-bit RGB) separates them.
        assert!(largest_difference(&oracle, &truth) <= 2, "{}", largest_difference(&oracle, &truth));
        // The magnitude is the prediction's: a faded prediction stays faded.
        let faded = altered(&truth, 2.0, 0.5);
        let oracle = take_from_truth(&faded, &truth, Take::Hue, 0.0).unwrap();
        assert!(largest_difference(&oracle, &altered(&truth, 0.0, 0.5)) <= 2);
    }

    #[test]
    fn the_truths_magnitude_on_a_faded_prediction_gives_the_truth_back() {
        let truth = truth();
        let faded = altered(&truth, 0.0, 0.4);
        let oracle = take_from_truth(&faded, &truth, Take::Magnitude, 0.0).unwrap();
        assert!(largest_difference(&oracle, &truth) <= 2, "{}", largest_difference(&oracle, &truth));
        // The hue is the prediction's: a turned prediction stays turned.
        let turned = altered(&truth, 1.0, 0.4);
        let oracle = take_from_truth(&turned, &truth, Take::Magnitude, 0.0).unwrap();
        assert!(largest_difference(&oracle, &altered(&truth, 1.0, 1.0)) <= 2);
    }

    #[test]
    fn the_gray_is_kept_and_a_gray_prediction_has_no_hue_to_keep() {
        let truth = truth();
        let gray = RgbImage::from_fn(24, 16, |x, y| {
            let l = luma8(truth.get_pixel(x, y).0);
            image::Rgb([l, l, l])
        });
        let oracle = take_from_truth(&gray, &truth, Take::Magnitude, 2.0).unwrap();
        assert_eq!(oracle, gray, "no hue: stays gray");
        let oracle = take_from_truth(&gray, &truth, Take::Hue, 2.0).unwrap();
        assert_eq!(oracle, gray, "no magnitude: stays gray");
        let turned = take_from_truth(&altered(&truth, 2.0, 1.0), &truth, Take::Hue, 2.0).unwrap();
        for (p, t) in turned.pixels().zip(truth.pixels()) {
            assert!(rgb_to_yuv8(p.0)[0].abs_diff(luma8(t.0)) <= 1, "the luma is the truth's");
        }
        let small = RgbImage::new(8, 8);
        assert!(matches!(take_from_truth(&small, &truth, Take::Hue, 0.0), Err(MeasureError::SizeMismatch { .. })));
    }

    #[test]
    fn the_blur_matches_a_plain_two_dimensional_sum() {
        let (w, h, sigma) = (9usize, 7usize, 1.3f32);
        let plane: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32).collect();
        let got = gaussian_blur(&plane, w, h, sigma);
        let radius = (3.0 * sigma).ceil() as isize;
        let mirror = |i: isize, n: isize| -> usize {
            let mut i = i;
            while i < 0 || i >= n {
                i = if i < 0 { -i } else { 2 * (n - 1) - i };
            }
            i as usize
        };
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (mut sum, mut total) = (0f64, 0f64);
                for dy in -radius..=radius {
                    for dx in -radius..=radius {
                        let k = (-((dx * dx + dy * dy) as f64) / (2.0 * f64::from(sigma).powi(2))).exp();
                        sum += k * f64::from(plane[mirror(y + dy, h as isize) * w + mirror(x + dx, w as isize)]);
                        total += k;
                    }
                }
                let want = sum / total;
                let at = got[y as usize * w + x as usize];
                assert!((f64::from(at) - want).abs() < 1e-4, "({x}, {y}): {at} against {want}");
            }
        }
        assert_eq!(gaussian_blur(&plane, w, h, 0.0), plane);
    }
}
