//! Colorizing a picture of any size with a `Colorizer`.
//!
//! The model sees the picture squashed to S x S (so that every part of it
//! gets a prediction); its U and V are scaled back to the picture's size and
//! joined to the picture's own full-resolution Y (optionally aligned with its
//! edges first: `guided_filter`). The output's luminance is
//! therefore the input's gray, up to rounding and RGB clamping: colorizing
//! never blurs or shifts the picture.

use crate::guided_filter::GuidedFilter;
use crate::{Colorizer, ModelError};
use colorize_core::{yuv, Side};
use image::imageops::{self, FilterType};
use image::{GrayImage, ImageBuffer, Luma, RgbImage};

/// The full-resolution gray (Y) of a picture.
pub fn luma(image: &RgbImage) -> GrayImage {
    GrayImage::from_fn(image.width(), image.height(), |x, y| Luma([yuv::luma8(image.get_pixel(x, y).0)]))
}

/// Predicted U and V planes (0..255 scale) at the gray picture's size.
pub fn predict_uv(model: &Colorizer, gray: &GrayImage, side: Side) -> Result<[Vec<f32>; 2], ModelError> {
    let s = side.get();
    let small = imageops::resize(gray, s, s, FilterType::Triangle);
    let y = model.gray_tensor(small.as_raw(), 1, s as usize, s as usize)?;
    // Kept as real numbers until the RGB conversion rounds: smooth chroma
    // quantised to 8-bit levels would come out in bands (steps of up to 1.8
    // RGB levels) that the truth does not have.
    // (U, V) / 255: `image` takes f32 pixels to lie in 0..1 and clamps there.
    let uv = model.predict(&y)?;
    let planes: Vec<Vec<f32>> = uv.squeeze(0)?.flatten_from(1)?.to_vec2()?;
    let (w, h) = gray.dimensions();
    let mut out = [Vec::new(), Vec::new()];
    for (plane, dst) in planes.into_iter().zip(&mut out) {
        let small = ImageBuffer::<Luma<f32>, _>::from_raw(s, s, plane)
            .ok_or_else(|| candle_core::Error::Msg(format!("a predicted plane is not {s} x {s}")))?;
        *dst = imageops::resize(&small, w, h, FilterType::Triangle).into_raw().into_iter().map(|x| x * 255.0).collect();
    }
    let radius = guide_radius(model.head().config().chroma_guide_radius, w, h, s);
    if radius > 0 {
        let guide: Vec<f32> = gray.as_raw().iter().map(|&g| f32::from(g) / 255.0).collect();
        let filter = GuidedFilter::new(&guide, w as usize, h as usize, radius);
        // Centred on gray (128) so the fits' intercepts stay small.
        for plane in &mut out {
            plane.iter_mut().for_each(|c| *c -= 128.0);
            *plane = filter.apply(plane);
            plane.iter_mut().for_each(|c| *c += 128.0);
        }
    }
    Ok(out)
}

/// The guided filter's radius in the picture's pixels for `radius` in the
/// model's (a `side`-pixel square squashed from w x h): scaled by the
/// geometric mean of the two axes' factors, rounded.
fn guide_radius(radius: f64, w: u32, h: u32, side: u32) -> usize {
    let scale = (f64::from(w) * f64::from(h)).sqrt() / f64::from(side);
    (radius * scale).round() as usize
}

/// Colorizes a picture (colour or gray: only its luminance is used).
pub fn colorize_image(model: &Colorizer, image: &RgbImage, side: Side) -> Result<RgbImage, ModelError> {
    let gray = luma(image);
    let [u, v] = predict_uv(model, &gray, side)?;
    let rgb = yuv::planes_to_rgb(gray.as_raw(), &u, &v);
    let (w, h) = image.dimensions();
    Ok(RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| candle_core::Error::Msg(format!("the colorized picture is not {w} x {h}")))?)
}
/// gray | colorized | truth side by side, at the truth's size: how demos,
/// validation previews and reports show a colouring.
pub fn comparison_strip(model: &Colorizer, truth: &RgbImage, side: Side) -> Result<RgbImage, ModelError> {
    let gray = image::DynamicImage::ImageLuma8(luma(truth)).to_rgb8();
    let colorized = colorize_image(model, truth, side)?;
    let (w, h) = truth.dimensions();
    let mut strip = RgbImage::new(3 * w, h);
    for (i, part) in [&gray, &colorized, truth].into_iter().enumerate() {
        imageops::replace(&mut strip, part, i as i64 * i64::from(w), 0);
    }
    Ok(strip)
}
