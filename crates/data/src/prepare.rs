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

    /// Whether the square is gray: at least 99% of its pixels have
    /// max(|U - 128|, |V - 128|) <= `tolerance` (the 99th percentile of that
    /// distance is within it). A percentile, not the maximum, so that a few
    /// noisy JPEG blocks in a gray-in-colour file do not make it colour.
    pub fn is_gray(&self, tolerance: u8) -> bool {
        let n = self.y.len();
        let (u, v) = self.uv.split_at(n);
        // A count the compiler vectorises, in chunks whose counts fit u32.
        let within: usize = u
            .chunks(1 << 20)
            .zip(v.chunks(1 << 20))
            .map(|(u, v)| {
                let count: u32 =
                    u.iter().zip(v).map(|(&u, &v)| u32::from(u.abs_diff(128).max(v.abs_diff(128)) <= tolerance)).sum();
                count as usize
            })
            .sum();
        within * 100 >= n * 99
    }

    /// Sums of U and of V over the pixels (for the cache's mean chroma).
    pub fn uv_sums(&self) -> [u64; 2] {
        let (u, v) = self.uv.split_at(self.y.len());
        // u32 partial sums (a chunk of 2^20 bytes sums below 2^28) vectorise.
        let sum = |plane: &[u8]| -> u64 {
            plane.chunks(1 << 20).map(|c| u64::from(c.iter().map(|&x| u32::from(x)).sum::<u32>())).sum()
        };
        [sum(u), sum(v)]
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

    /// The gray test against its definition: the 99th percentile (nearest
    /// rank) of the sorted distances, computed here by sorting.
    #[test]
    fn gray_test_is_the_99th_percentile_of_the_chroma_distance() {
        let percentile = |planes: &Planes| {
            let n = planes.y.len();
            let mut d: Vec<u8> =
                (0..n).map(|i| planes.uv[i].abs_diff(128).max(planes.uv[n + i].abs_diff(128))).collect();
            d.sort_unstable();
            d[(n * 99).div_ceil(100) - 1]
        };
        let mut planes = Planes { y: vec![0; 1000], uv: vec![128; 2000] };
        planes.uv[0..5].fill(200); // 0.5% of pixels far from gray
        assert!(planes.is_gray(0));
        planes.uv[1000..1020].fill(140); // 2% of pixels 12 from gray in V
        assert_eq!(percentile(&planes), 12);
        assert!(!planes.is_gray(11) && planes.is_gray(12));
        let mut seed = 7u32;
        for _ in 0..50 {
            let n = 1 + (seed % 3000) as usize;
            let uv: Vec<u8> = (0..2 * n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (128 + (seed >> 24) % 9) as u8 - 4 + if (seed >> 8).is_multiple_of(50) { 60 } else { 0 }
                })
                .collect();
            let planes = Planes { y: vec![0; n], uv };
            let p = percentile(&planes);
            for tolerance in 0..=8 {
                assert_eq!(planes.is_gray(tolerance), p <= tolerance, "n {n}, p99 {p}, tolerance {tolerance}");
            }
        }
    }

    #[test]
    fn uv_sums_add_each_plane() {
        let n = 3 * (1 << 20) + 5;
        let uv: Vec<u8> = (0..2 * n).map(|i| (i % 251) as u8).collect();
        let planes = Planes { y: vec![0; n], uv };
        let want = [0, n].map(|start| planes.uv[start..start + n].iter().map(|&x| u64::from(x)).sum::<u64>());
        assert_eq!(planes.uv_sums(), want);
    }
}
