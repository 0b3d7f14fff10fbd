//! The trunk and hypercolumn against plain loops written here.

use candle_core::{DType, Device, Tensor};
use colorize_core::Rng;
use colorize_model::hypercolumn::{hypercolumn, hypercolumn_patches, Pixel, Standardisation};
use colorize_model::trunk::{
    normalise_gray, Taps, Vgg16Trunk, DEEPER_BLOCKS, IMAGENET_MEAN, IMAGENET_STD, METHOD_BLOCKS, TRUNK_LAYERS,
};
use colorize_model::weights::embedded_trunk;
use std::collections::HashMap;

/// A [c, h, w] activation in f64.
#[derive(Clone)]
struct Act {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl Act {
    fn at(&self, c: usize, y: usize, x: usize) -> f64 {
        self.v[(c * self.h + y) * self.w + x]
    }
}

/// 3x3 convolution, zero padding 1, bias, then ReLU.
fn conv3x3_relu(input: &Act, weight: &[f32], bias: &[f32], cout: usize) -> Act {
    let (cin, h, w) = (input.c, input.h, input.w);
    let mut out = vec![0.0; cout * h * w];
    for o in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let mut sum = f64::from(bias[o]);
                for i in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (sy, sx) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                            if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                continue;
                            }
                            let wv = weight[((o * cin + i) * 3 + ky) * 3 + kx];
                            sum += f64::from(wv) * input.at(i, sy as usize, sx as usize);
                        }
                    }
                }
                out[(o * h + y) * w + x] = sum.max(0.0);
            }
        }
    }
    Act { c: cout, h, w, v: out }
}

fn max_pool2(input: &Act) -> Act {
    let (h, w) = (input.h / 2, input.w / 2);
    let mut v = vec![0.0; input.c * h * w];
    for c in 0..input.c {
        for y in 0..h {
            for x in 0..w {
                let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| input.at(c, 2 * y + dy, 2 * x + dx))
                    .fold(f64::MIN, f64::max);
                v[(c * h + y) * w + x] = m;
            }
        }
    }
    Act { c: input.c, h, w, v }
}

fn to_act(t: &Tensor) -> Act {
    let (_, c, h, w) = t.dims4().unwrap();
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    Act { c, h, w, v: v.into_iter().map(f64::from).collect() }
}

fn max_diff(a: &Act, b: &Act) -> f64 {
    assert_eq!((a.c, a.h, a.w), (b.c, b.h, b.w));
    a.v.iter().zip(&b.v).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn random_gray(side: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..side * side).map(|_| rng.below(256) as u8).collect()
}

/// Runs the trunk in `path` and the plain loops on a random 16x16 gray
/// input; returns (tap, max abs difference, peak |value|) per tap.
fn compare_taps(path: &std::path::Path) -> Vec<(&'static str, f64, f64)> {
    compare_deep_taps(path, METHOD_BLOCKS)
}

/// `compare_taps` for a trunk of `blocks` blocks.
fn compare_deep_taps(path: &std::path::Path, blocks: usize) -> Vec<(&'static str, f64, f64)> {
    let device = Device::Cpu;
    let trunk = Vgg16Trunk::load_blocks(path, blocks, &device).unwrap();
    assert_eq!(trunk.blocks(), blocks);
    let weights: HashMap<String, Tensor> = candle_core::safetensors::load(path, &device).unwrap();
    let get = |k: &str| -> Vec<f32> { weights[k].flatten_all().unwrap().to_vec1().unwrap() };

    let side = 16;
    let gray = random_gray(side, 3);
    // The normalised input, written out by hand.
    let mut input = Act { c: 3, h: side, w: side, v: vec![0.0; 3 * side * side] };
    for c in 0..3 {
        for (i, &g) in gray.iter().enumerate() {
            let x = f64::from(g) / 255.0;
            input.v[c * side * side + i] = (x - f64::from(IMAGENET_MEAN[c])) / f64::from(IMAGENET_STD[c]);
        }
    }
    let y = Tensor::from_slice(&gray, (1, 1, side, side), &device).unwrap().to_dtype(DType::F32).unwrap();
    let x = normalise_gray(&y).unwrap();
    assert!(max_diff(&to_act(&x), &input) < 1e-5, "normalisation");

    let mut act = input;
    let mut reference = Vec::new();
    for (layer, &(i, _, cout)) in TRUNK_LAYERS.iter().enumerate() {
        act = conv3x3_relu(&act, &get(&format!("features.{i}.weight")), &get(&format!("features.{i}.bias")), cout);
        if matches!(layer, 1 | 3 | 6) {
            reference.push(act.clone());
        }
        if matches!(layer, 1 | 3) {
            act = max_pool2(&act);
        }
    }
    for block in &DEEPER_BLOCKS[..blocks - METHOD_BLOCKS] {
        act = max_pool2(&act);
        for &(i, _, cout) in block {
            act = conv3x3_relu(&act, &get(&format!("features.{i}.weight")), &get(&format!("features.{i}.bias")), cout);
        }
        reference.push(act.clone());
    }
    let taps = trunk.forward(&x).unwrap();
    assert_eq!(taps.deeper.len(), blocks - METHOD_BLOCKS);
    let names = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"];
    names
        .into_iter()
        .zip(taps.all())
        .zip(&reference)
        .map(|((name, got), want)| {
            (name, max_diff(&to_act(got), want), want.v.iter().fold(0.0f64, |m, x| m.max(x.abs())))
        })
        .collect()
}

/// A trunk file of `blocks` blocks with seeded random weights (He's scale,
/// so that activations neither vanish nor blow up through 13 layers).
fn random_trunk_file(blocks: usize, name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("colorize-{name}-{}.safetensors", std::process::id()));
    let mut rng = Rng::new(42);
    let tensors: HashMap<String, Tensor> = Vgg16Trunk::expected_tensors_of(blocks)
        .into_iter()
        .map(|(key, shape)| {
            let n: usize = shape.iter().product();
            let fan_in = if shape.len() == 4 { shape[1] * 9 } else { 64 };
            let scale = (2.0 / fan_in as f64).sqrt();
            let values: Vec<f32> = (0..n).map(|_| ((rng.unit_f64() * 2.0 - 1.0) * scale) as f32).collect();
            (key, Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
        })
        .collect();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

#[test]
fn trunk_taps_match_plain_loops_with_seeded_random_weights() {
    let path = random_trunk_file(METHOD_BLOCKS, "random-trunk");
    for (name, diff, peak) in compare_taps(&path) {
        assert!(diff <= 1e-4, "{name}: max abs difference {diff} (peak {peak})");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_deeper_trunks_taps_match_plain_loops() {
    let path = random_trunk_file(5, "random-deep-trunk");
    let taps = compare_deep_taps(&path, 5);
    assert_eq!(taps.len(), 5, "conv1_2 … conv5_3");
    for (name, diff, peak) in taps {
        assert!(peak > 0.0, "{name}: all zero, so the comparison says nothing");
        assert!(diff <= 1e-4 * peak.max(1.0), "{name}: max abs difference {diff} (peak {peak})");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn trunk_taps_match_plain_loops_with_the_real_weights() {
    // Real weights give large activations, where one f32 step is large
    // too: the bound is relative to the tap's peak (a few f32 roundings of it).
    for (name, diff, peak) in compare_taps(&embedded_trunk()) {
        assert!(diff <= 2e-6 * peak.max(1.0), "{name}: max abs difference {diff} (peak {peak})");
    }
}

/// The embedded trunk is torchvision's ImageNet VGG-16 (timm's `tv_in1k`),
/// in OIHW: conv1_1's first output channel, red input, as torchvision
/// prints it. A kernel left in flax's HWIO order, or transposed in space,
/// reads other values here.
#[test]
fn embedded_trunk_is_torchvisions_imagenet_vgg16() {
    let weights: HashMap<String, Tensor> = candle_core::safetensors::load(embedded_trunk(), &Device::Cpu).unwrap();
    let conv1_1 = &weights["features.0.weight"];
    assert_eq!(conv1_1.dims(), [64, 3, 3, 3]);
    let kernel: Vec<Vec<f32>> = conv1_1.get(0).unwrap().get(0).unwrap().to_vec2().unwrap();
    let torchvision = [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]];
    for (row, want_row) in kernel.iter().zip(torchvision) {
        for (got, want) in row.iter().zip(want_row) {
            assert!((got - want).abs() < 1e-4, "conv1_1[0, 0]: {kernel:?}, torchvision's {torchvision:?}");
        }
    }
}

#[test]
fn hypercolumn_stacks_input_then_taps_upsampled_bilinearly() {
    let device = Device::Cpu;
    let (h, w) = (8, 8);
    let x = Tensor::arange(0f32, (3 * h * w) as f32, &device).unwrap().reshape((1, 3, h, w)).unwrap();
    let conv1_2 = Tensor::full(7f32, (1, 64, h, w), &device).unwrap();
    // conv2_2 at 4x4 holds its column index in every channel: 0, 1, 2, 3.
    let ramp = Tensor::arange(0f32, 4.0, &device).unwrap();
    let conv2_2 = ramp.reshape((1, 1, 1, 4)).unwrap().broadcast_as((1, 128, 4, 4)).unwrap().contiguous().unwrap();
    let conv3_3 = Tensor::full(-1f32, (1, 256, 2, 2), &device).unwrap();
    let t = hypercolumn(&x, &Taps { conv1_2, conv2_2, conv3_3, deeper: vec![] }, &identity()).unwrap();
    assert_eq!(t.dims(), [1, 451, 8, 8]);
    let at = |c: usize, y: usize, xx: usize| -> f32 {
        t.get(0).unwrap().get(c).unwrap().get(y).unwrap().get(xx).unwrap().to_scalar().unwrap()
    };
    assert_eq!(at(0, 0, 0), 0.0);
    assert_eq!(at(2, 7, 7), (2 * 64 + 63) as f32, "channels 0..3 are the input");
    assert_eq!(at(3, 4, 4), 7.0);
    assert_eq!(at(66, 0, 0), 7.0, "channels 3..67 are conv1_2");
    // Half-pixel centres, x2: output column o samples source (o + 0.5) / 2 - 0.5.
    for (o, want) in [(0, 0.0), (1, 0.25), (2, 0.75), (3, 1.25), (6, 2.75), (7, 3.0)] {
        assert!((at(67, 3, o) - want).abs() < 1e-6, "conv2_2 column {o}: {} vs {want}", at(67, 3, o));
        assert!((at(194, 5, o) - want).abs() < 1e-6);
    }
    assert_eq!(at(195, 0, 0), -1.0, "channels 195..451 are conv3_3");
    assert_eq!(at(450, 7, 7), -1.0);
}

fn identity() -> Standardisation {
    Standardisation {
        shift: Tensor::zeros(451, DType::F32, &Device::Cpu).unwrap(),
        scale: Tensor::ones(451, DType::F32, &Device::Cpu).unwrap(),
    }
}

/// Applying the standardisation to the taps before upsampling (the fast
/// way) equals applying it to the upsampled hypercolumn (the definition).
#[test]
fn standardising_before_upsampling_equals_standardising_the_hypercolumn() {
    let device = Device::Cpu;
    let mut rng = colorize_core::Rng::new(3);
    let mut random = |dims: (usize, usize, usize, usize)| {
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let values: Vec<f32> = (0..n).map(|_| (rng.unit_f64() * 50.0) as f32).collect();
        Tensor::from_vec(values, dims, &device).unwrap()
    };
    let x = random((2, 3, 12, 8));
    let taps = Taps {
        conv1_2: random((2, 64, 12, 8)),
        conv2_2: random((2, 128, 6, 4)),
        conv3_3: random((2, 256, 3, 2)),
        deeper: vec![],
    };
    let shift: Vec<f32> = (0..451).map(|c| c as f32 * 0.1).collect();
    let scale: Vec<f32> = (0..451).map(|c| 1.0 / (1.0 + c as f32)).collect();
    let standardisation = Standardisation {
        shift: Tensor::new(shift.as_slice(), &device).unwrap(),
        scale: Tensor::new(scale.as_slice(), &device).unwrap(),
    };
    let fast = hypercolumn(&x, &taps, &standardisation).unwrap();
    let raw: Vec<f32> = hypercolumn(&x, &taps, &identity()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let fast: Vec<f32> = fast.flatten_all().unwrap().to_vec1().unwrap();
    let area = 12 * 8;
    for (i, (f, r)) in fast.iter().zip(&raw).enumerate() {
        let c = (i / area) % 451;
        let want = (r - shift[c]) * scale[c];
        assert!((f - want).abs() <= 1e-4 * want.abs().max(1.0), "element {i} (channel {c}): {f} vs {want}");
    }
}

/// After `fit_standardisation` on a batch, that batch's hypercolumn has
/// channels of mean ~0 and spread ~1 (not exactly: the moments are taken
/// on the taps before upsampling, which smooths them a little).
#[test]
fn a_fitted_standardisation_centres_and_scales_every_live_channel() {
    use colorize_model::{Colorizer, HeadConfig};
    let model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 1, &Device::Cpu).unwrap();
    let (n, s) = (2, 32);
    let gray: Vec<u8> = (0..n * s * s)
        .map(|i| {
            let (img, y, x) = (i / (s * s), (i / s) % s, i % s);
            (((x * 7 + y * y * 3 + img * 50) % 256) as u8).wrapping_add(if (x / 5 + y / 3) % 2 == 0 { 0 } else { 60 })
        })
        .collect();
    let y = model.gray_tensor(&gray, n, s, s).unwrap();
    let raw = model.hypercolumn(&y).unwrap();
    model.fit_standardisation(std::slice::from_ref(&y)).unwrap();
    let t = model.hypercolumn(&y).unwrap();
    let per_channel = |t: &Tensor| -> (Vec<f32>, Vec<f32>) {
        let c = t.transpose(0, 1).unwrap().contiguous().unwrap().reshape((451, ())).unwrap();
        let mean = c.mean(1).unwrap();
        let var = c.broadcast_sub(&mean.unsqueeze(1).unwrap()).unwrap().sqr().unwrap().mean(1).unwrap();
        (mean.to_vec1().unwrap(), var.sqrt().unwrap().to_vec1().unwrap())
    };
    let (raw_mean, raw_std) = per_channel(&raw);
    let (mean, std) = per_channel(&t);
    // Channels below their part's mean spread are deliberately not blown up
    // to 1 (HeadConfig::min_relative_std, 1 by default); the rest must be
    // standardised.
    let mut live = Vec::new();
    let mut offset = 0;
    for c in colorize_model::trunk::HYPERCOLUMN_PARTS {
        let typical = raw_std[offset..offset + c].iter().sum::<f32>() / c as f32;
        live.extend((offset..offset + c).filter(|&k| raw_std[k] > 1.05 * typical));
        offset += c;
    }
    assert!(live.len() > 60, "only {} live channels", live.len());
    assert!(std.iter().all(|&s| s < 1.05), "no channel is amplified beyond a spread of 1");
    for &c in &live {
        assert!(mean[c].abs() < 0.15, "channel {c}: mean {} (raw {})", mean[c], raw_mean[c]);
        assert!((0.6..1.05).contains(&std[c]), "channel {c}: std {} (raw {})", std[c], raw_std[c]);
    }
}

/// Windows gathered from the taps equal the dense hypercolumn's windows,
/// zero outside the image, at corners, edges and inside, for r = 1, 3, 5.
#[test]
fn hypercolumn_patches_equal_windows_of_the_dense_hypercolumn() {
    // The method's hypercolumn, and a deeper trunk's (conv4_3 at 1/8,
    // conv5_3 at 1/16 of the size).
    for (deeper, h, w) in [(0, 12, 8), (2, 32, 16)] {
        patches_equal_dense_windows(deeper, h, w);
    }
}

fn patches_equal_dense_windows(deeper: usize, h: usize, w: usize) {
    let device = Device::Cpu;
    let mut rng = Rng::new(11);
    let mut random = |dims: (usize, usize, usize, usize)| {
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let values: Vec<f32> = (0..n).map(|_| (rng.unit_f64() * 10.0) as f32).collect();
        Tensor::from_vec(values, dims, &device).unwrap()
    };
    let n = 2;
    let x = random((n, 3, h, w));
    let taps = Taps {
        conv1_2: random((n, 64, h, w)),
        conv2_2: random((n, 128, h / 2, w / 2)),
        conv3_3: random((n, 256, h / 4, w / 4)),
        deeper: [8, 16].into_iter().take(deeper).map(|f| random((n, 512, h / f, w / f))).collect(),
    };
    let channels = colorize_model::trunk::hypercolumn_channels(METHOD_BLOCKS + deeper);
    let standardisation = Standardisation {
        shift: random((1, 1, 1, channels)).flatten_all().unwrap(),
        scale: random((1, 1, 1, channels)).flatten_all().unwrap(),
    };
    let dense = hypercolumn(&x, &taps, &standardisation).unwrap(); // [n, 451, h, w]
    let dense: Vec<f32> = dense.flatten_all().unwrap().to_vec1().unwrap();
    let pixels = [
        Pixel { image: 0, row: 0, col: 0 },
        Pixel { image: 1, row: h - 1, col: w - 1 },
        Pixel { image: 1, row: 5, col: 0 },
        Pixel { image: 0, row: 6, col: 3 },
        Pixel { image: 1, row: 1, col: 6 },
    ];
    for r in [1usize, 3, 5] {
        let windows = hypercolumn_patches(&x, &taps, &standardisation, &pixels, r).unwrap();
        assert_eq!(windows.features.dims(), [pixels.len(), channels, r, r]);
        let patches: Vec<f32> = windows.features.flatten_all().unwrap().to_vec1().unwrap();
        let inside: Vec<f32> = windows.inside.flatten_all().unwrap().to_vec1().unwrap();
        let half = (r / 2) as isize;
        for (i, p) in pixels.iter().enumerate() {
            for c in 0..channels {
                for dy in 0..r {
                    for dx in 0..r {
                        let (y, xx) = (p.row as isize + dy as isize - half, p.col as isize + dx as isize - half);
                        let in_image = (0..h as isize).contains(&y) && (0..w as isize).contains(&xx);
                        assert_eq!(inside[(i * r + dy) * r + dx], if in_image { 1.0 } else { 0.0 });
                        let want = if in_image {
                            dense[((p.image * channels + c) * h + y as usize) * w + xx as usize]
                        } else {
                            0.0
                        };
                        let got = patches[((i * channels + c) * r + dy) * r + dx];
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{deeper} deeper, r {r} pixel {p:?} channel {c} ({dy}, {dx}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
