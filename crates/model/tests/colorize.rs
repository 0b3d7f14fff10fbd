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
