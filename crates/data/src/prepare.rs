//! From a decoded photograph to the model's square and its Y and UV planes.

use crate::CropPolicy;
use colorize_core::{yuv, Side};
use fast_image_resize::images::CroppedImage;
use fast_image_resize::{FilterType, ResizeAlg, ResizeError, ResizeOptions, Resizer};
use image::RgbImage;
use std::cell::RefCell;

/// How the squares are resampled, as a cache's manifest records it: the
/// cache's bytes depend on it.
pub const RESAMPLING: &str = "fast_image_resize 5 convolution, bilinear filter (support widened by the reduction, \
                              as Pillow's BILINEAR), on 8-bit sRGB values";

thread_local! {
    /// One resizer per thread: it keeps its buffers between pictures.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// The S x S square the model sees: `Center` scales the short side to S and
/// keeps the middle, `Squash` scales both sides to S.
///
/// For `Center` the crop is taken in source coordinates first (the middle
/// square of side min(w, h)) and then scaled: the same picture as
/// scale-then-crop, at a fraction of the resampling work. The resampling is
/// [`RESAMPLING`]: bilinear widens its support when shrinking, so it
/// anti-aliases like a box filter on big reductions.
pub fn square(rgb: &RgbImage, side: Side, policy: CropPolicy) -> Result<RgbImage, ResizeError> {
    let s = side.get();
    let (w, h) = rgb.dimensions();
    let (left, top, cw, ch) = match policy {
        CropPolicy::Center => {
            let m = w.min(h);
            ((w - m) / 2, (h - m) / 2, m, m)
        }
        CropPolicy::Squash => (0, 0, w, h),
    };
    // A cropped view, not the resizer's crop box: the box is a sub-pixel
    // window whose filter reads source pixels beyond its edges.
    let cropped = CroppedImage::new(rgb, left, top, cw, ch).map_err(ResizeError::SrcCroppingError)?;
    let mut out = RgbImage::new(s, s);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER.with(|resizer| resizer.borrow_mut().resize(&cropped, &mut out, &options))?;
    Ok(out)
}

/// The Y plane and U, V planes of a square, 8-bit, exact formulas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planes {
    /// [S*S]
    pub y: Vec<u8>,
    /// [2, S*S]: U plane, then V plane.
    pub uv: Vec<u8>,
}

impl Planes {
    pub fn from_rgb(rgb: &RgbImage) -> Planes {
        let n = rgb.width() as usize * rgb.height() as usize;
        let mut planes = Planes { y: vec![0; n], uv: vec![0; 2 * n] };
        yuv::rgb_to_planes(rgb.as_raw(), &mut planes.y, &mut planes.uv);
        planes
    }

    /// How far from gray: the 99th percentile over pixels of
    /// max(|U - 128|, |V - 128|). A percentile, not the maximum, so that a few
    /// noisy JPEG blocks in a gray-in-colour file do not make it colour.
    pub fn chroma_p99(&self) -> u8 {
        let n = self.y.len();
        let (u, v) = self.uv.split_at(n);
        let mut histogram = [0usize; 129];
        for (&u, &v) in u.iter().zip(v) {
            let d = u.abs_diff(128).max(v.abs_diff(128)).min(128);
            histogram[d as usize] += 1;
        }
        let mut below = 0;
        for (d, count) in histogram.iter().enumerate() {
            below += count;
            if below * 100 >= n * 99 {
                return d as u8;
            }
        }
        128
    }

    /// Sums of U and of V over the pixels (for the cache's mean chroma).
    pub fn uv_sums(&self) -> [u64; 2] {
        let (u, v) = self.uv.split_at(self.y.len());
        [u, v].map(|p| p.iter().map(|&x| u64::from(x)).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn center_crop_keeps_the_middle_of_a_wide_image() {
        // 8x4: left quarter red, middle half green, right quarter blue.
        let img = RgbImage::from_fn(8, 4, |x, _| match x {
            0..=1 => Rgb([255, 0, 0]),
            2..=5 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let side = Side::new(16).unwrap();
        let out = square(&img, side, CropPolicy::Center).unwrap();
        assert_eq!(out.dimensions(), (16, 16));
        assert!(out.pixels().all(|p| *p == Rgb([0, 255, 0])));
        let squashed = square(&img, side, CropPolicy::Squash).unwrap();
        assert_eq!(*squashed.get_pixel(0, 8), Rgb([255, 0, 0]));
        assert_eq!(*squashed.get_pixel(15, 8), Rgb([0, 0, 255]));
    }

    /// The SIMD resampler against a second implementation of the same
    /// filter, `image`'s triangle (bilinear with the support widened by the
    /// reduction): the same picture to within rounding.
    #[test]
    fn the_square_equals_a_second_bilinear_resampler() {
        let img = RgbImage::from_fn(301, 203, |x, y| {
            let f = |a: f64| (127.5 + 127.5 * a.sin()) as u8;
            Rgb([f(x as f64 / 7.0), f(y as f64 / 11.0), f((x + 2 * y) as f64 / 5.0)])
        });
        for (policy, crop) in [(CropPolicy::Center, (49, 0, 203, 203)), (CropPolicy::Squash, (0, 0, 301, 203))] {
            let ours = square(&img, Side::new(64).unwrap(), policy).unwrap();
            let view = image::imageops::crop_imm(&img, crop.0, crop.1, crop.2, crop.3).to_image();
            let reference = image::imageops::resize(&view, 64, 64, image::imageops::FilterType::Triangle);
            let diffs: Vec<u8> = ours.as_raw().iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            let max = diffs.iter().max().copied().unwrap_or(0);
            assert!(max <= 3 && mean < 0.5, "{policy:?}: max {max}, mean {mean}");
        }
    }

    #[test]
    fn chroma_percentile_ignores_a_few_outliers() {
        let mut planes = Planes { y: vec![0; 1000], uv: vec![128; 2000] };
        planes.uv[0..5].fill(200); // 0.5% of pixels far from gray
        assert_eq!(planes.chroma_p99(), 0);
        planes.uv[0..20].fill(140); // 2%
        assert_eq!(planes.chroma_p99(), 12);
    }
}
