//! Colorizing pictures: the luminance is the input's, and a neutral head gives gray.

use candle_core::{Device, Tensor};
use colorize_core::{yuv, Side};
use colorize_model::weights::embedded_trunk;
use colorize_model::{colorize_image, Colorizer, HeadConfig};
use image::{Rgb, RgbImage};

fn small_head() -> HeadConfig {
    HeadConfig { conv1_channels: 8, conv1_kernel: 3, conv2_channels: 4, conv2_kernel: 3, ..HeadConfig::default() }
}

fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(40 + x * 150 / w) as u8, (60 + y * 140 / h) as u8, ((x + y) % 90 + 70) as u8]))
}

#[test]
fn the_output_keeps_the_input_luminance_at_full_resolution() {
    let model = Colorizer::new(&embedded_trunk(), small_head(), 5, &Device::Cpu).unwrap();
    let input = photo(53, 37); // odd size, not square
    let output = colorize_image(&model, &input, Side::new(32).unwrap()).unwrap();
    assert_eq!(output.dimensions(), (53, 37));
    let mut worst = 0;
    for (a, b) in input.pixels().zip(output.pixels()) {
        worst = worst.max(yuv::luma8(a.0).abs_diff(yuv::luma8(b.0)));
    }
    assert!(worst <= 1, "luminance moved by {worst}");
}

#[test]
fn a_head_that_outputs_neutral_chroma_turns_any_picture_into_its_gray() {
    let model = Colorizer::new(&embedded_trunk(), small_head(), 5, &Device::Cpu).unwrap();
    // U = V = 128 is neutral: the head's output 128 / 255.
    set_output(&model, [128.0 / 255.0; 2]);
    let input = photo(40, 24);
    let output = colorize_image(&model, &input, Side::new(16).unwrap()).unwrap();
    for (a, b) in input.pixels().zip(output.pixels()) {
        let g = yuv::luma8(a.0);
        assert_eq!(b.0, [g, g, g]);
    }
}

#[test]
fn full_resolution_chroma_is_the_heads_real_valued_prediction() {
    // A head whose output is the constant (U, V) / 255 = (0.3, 0.7), whatever its input.
    let model = Colorizer::new(&embedded_trunk(), small_head(), 5, &Device::Cpu).unwrap();
    set_output(&model, [0.3, 0.7]);
    let gray = colorize_model::colorize::luma(&photo(50, 38));
    let [u, v] = colorize_model::colorize::predict_uv(&model, &gray, Side::new(16).unwrap()).unwrap();
    assert_eq!(u.len(), 50 * 38);
    // 76.5 and 178.5 at every pixel: not rounded to bytes, not clamped to 0..1 by the resize.
    for (plane, want) in [(&u, 76.5f32), (&v, 178.5f32)] {
        assert!(plane.iter().all(|&x| (x - want).abs() < 1e-3), "{want}: {:?}", &plane[..4]);
    }
}

/// With `chroma_guide_radius` R, the full-resolution chroma is the unguided
/// one passed through the guided filter, guided by the picture's gray, at
/// R scaled from the model's pixels to the picture's (here 2 x √(50·38)/16
/// = 5.45, so 5).
#[test]
fn the_guide_filters_the_full_resolution_chroma_with_the_pictures_gray() {
    use colorize_model::guided_filter::GuidedFilter;
    let mut model = Colorizer::new(&embedded_trunk(), small_head(), 5, &Device::Cpu).unwrap();
    let gray = colorize_model::colorize::luma(&photo(50, 38));
    let side = Side::new(16).unwrap();
    let plain = colorize_model::colorize::predict_uv(&model, &gray, side).unwrap();
    model.set_chroma_guide_radius(2.0).unwrap();
    let guided = colorize_model::colorize::predict_uv(&model, &gray, side).unwrap();
    let guide: Vec<f32> = gray.as_raw().iter().map(|&g| f32::from(g) / 255.0).collect();
    let filter = GuidedFilter::new(&guide, 50, 38, 5);
    for (plain, guided) in plain.iter().zip(&guided) {
        let centred: Vec<f32> = plain.iter().map(|c| c - 128.0).collect();
        let want: Vec<f32> = filter.apply(&centred).iter().map(|c| c + 128.0).collect();
        assert_ne!(plain, guided, "the guide changes a varying chroma");
        for (k, (a, b)) in guided.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-3, "pixel {k}: {a} vs {b}");
        }
    }
    // A uniform prediction stays uniform, and the output keeps the luminance.
    set_output(&model, [0.3, 0.7]);
    let [u, v] = colorize_model::colorize::predict_uv(&model, &gray, side).unwrap();
    for (plane, want) in [(&u, 76.5f32), (&v, 178.5f32)] {
        assert!(plane.iter().all(|&x| (x - want).abs() < 1e-2), "{want}: {:?}", &plane[..4]);
    }
    let input = photo(50, 38);
    let output = colorize_image(&model, &input, side).unwrap();
    for (a, b) in input.pixels().zip(output.pixels()) {
        assert!(yuv::luma8(a.0).abs_diff(yuv::luma8(b.0)) <= 1);
    }
}

/// Zeroes the output layer's weights and sets its bias so that the head
/// predicts `uv` (sigmoid scale) at every pixel.
fn set_output(model: &Colorizer, uv: [f32; 2]) {
    let logits: Vec<f32> = uv.iter().map(|p| (p / (1.0 - p)).ln()).collect();
    for (name, var) in model.varmap().data().lock().unwrap().iter() {
        let value = match name.as_str() {
            "out.weight" => Tensor::zeros(var.shape(), var.dtype(), &Device::Cpu).unwrap(),
            "out.bias" => Tensor::new(logits.as_slice(), &Device::Cpu).unwrap(),
            _ => continue,
        };
        var.set(&value).unwrap();
    }
}
