//! Loading weights: the errors a user meets, each naming the problem.

use candle_core::{Device, Tensor};
use colorize_model::trunk::Vgg16Trunk;
use colorize_model::{Colorizer, HeadConfig, HypercolumnHead, ModelError};
use std::collections::HashMap;
use std::path::PathBuf;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A trunk file with seeded random weights under timm's names.
fn random_trunk(skip: Option<&str>, reshape: Option<&str>) -> HashMap<String, Tensor> {
    random_trunk_of(3, skip, reshape)
}

/// `random_trunk` of `blocks` blocks.
fn random_trunk_of(blocks: usize, skip: Option<&str>, reshape: Option<&str>) -> HashMap<String, Tensor> {
    let device = Device::Cpu;
    let mut tensors = HashMap::new();
    for (key, shape) in Vgg16Trunk::expected_tensors_of(blocks) {
        if Some(key.as_str()) == skip {
            continue;
        }
        let shape = if Some(key.as_str()) == reshape { vec![shape[0] + 1] } else { shape };
        tensors.insert(key, Tensor::randn(0f32, 0.1, shape, &device).unwrap());
    }
    tensors
}

#[test]
fn a_missing_file_is_named() {
    let err = Vgg16Trunk::load(&PathBuf::from("/nowhere/vgg.safetensors"), &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingWeights(_)));
    assert!(err.to_string().contains("/nowhere/vgg.safetensors"), "{err}");
}

#[test]
fn a_missing_key_is_named() {
    let dir = tempdir("missing-key");
    let path = dir.join("trunk.safetensors");
    candle_core::safetensors::save(&random_trunk(Some("features.12.weight"), None), &path).unwrap();
    let err = Vgg16Trunk::load(&path, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("features.12.weight") && err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_wrong_shape_names_the_key_and_both_shapes() {
    let dir = tempdir("wrong-shape");
    let path = dir.join("trunk.safetensors");
    candle_core::safetensors::save(&random_trunk(None, Some("features.5.bias")), &path).unwrap();
    let err = Vgg16Trunk::load(&path, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("features.5.bias") && err.contains("[129]") && err.contains("[128]"), "{err}");
}

#[test]
fn random_weights_in_timm_layout_load_and_run() {
    let dir = tempdir("random");
    let path = dir.join("trunk.safetensors");
    candle_core::safetensors::save(&random_trunk(None, None), &path).unwrap();
    let model = Colorizer::new(&path, HeadConfig::default(), 1, &Device::Cpu).unwrap();
    let y = model.gray_tensor(&[100; 32 * 48], 1, 32, 48).unwrap();
    assert_eq!(model.predict(&y).unwrap().dims(), [1, 2, 32, 48], "any multiple of 4 keeps its size");
    assert!(matches!(model.gray_tensor(&[0; 30 * 30], 1, 30, 30), Err(ModelError::BadSide(30, 4))));
}

#[test]
fn a_head_on_a_deeper_trunk_needs_its_layers_and_keeps_its_depth() {
    let dir = tempdir("deep");
    let small = HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() };
    let deep = HeadConfig { trunk_blocks: 5, ..small };

    // The embedded trunk stops at conv3_3: the first missing layer is named.
    let err = Colorizer::new(&colorize_model::weights::embedded_trunk(), deep, 1, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("features.17.weight"), "{err}");
    let err = Colorizer::new(&PathBuf::from("unused"), HeadConfig { trunk_blocks: 6, ..small }, 1, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("model.head.trunk_blocks = 6"), "{err}");

    let trunk = dir.join("trunk.safetensors");
    candle_core::safetensors::save(&random_trunk_of(5, None, None), &trunk).unwrap();
    let model = Colorizer::new(&trunk, deep, 1, &Device::Cpu).unwrap();
    assert_eq!(model.side_multiple(), 16);
    assert!(matches!(model.gray_tensor(&[0; 40 * 40], 1, 40, 40), Err(ModelError::BadSide(40, 16))));
    let ramp: Vec<u8> = (0..2 * 32 * 32).map(|i| (i * 7 % 256) as u8).collect();
    let y = model.gray_tensor(&ramp, 2, 32, 32).unwrap();
    assert_eq!(model.hypercolumn(&y).unwrap().dims(), [2, 1475, 32, 32]);
    model.fit_standardisation(std::slice::from_ref(&y)).unwrap();
    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    assert_eq!(HypercolumnHead::config_of_file(&path).unwrap().trunk_blocks, 5, "read from conv1's input channels");
    let loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    assert_eq!(values(loaded.predict(&y).unwrap()), values(model.predict(&y).unwrap()));

    // The same file's first three blocks are the method's trunk; a
    // method's head cannot join the deep one in an ensemble.
    let method =
        Colorizer::new(&trunk, HeadConfig { output: colorize_model::HeadOutput::Bins, ..small }, 2, &Device::Cpu)
            .unwrap();
    let method_path = dir.join("method.safetensors");
    method.save_head(&method_path).unwrap();
    let mut deep_bins =
        Colorizer::new(&trunk, HeadConfig { output: colorize_model::HeadOutput::Bins, ..deep }, 3, &Device::Cpu)
            .unwrap();
    let err = deep_bins.add_ensemble_head(&method_path, false).unwrap_err().to_string();
    assert!(err.contains("blocks"), "{err}");
}

#[test]
fn a_head_saves_and_loads_with_stable_names_and_its_shape() {
    let dir = tempdir("head");
    let trunk = colorize_model::weights::embedded_trunk();
    let config =
        HeadConfig { conv1_channels: 8, conv1_kernel: 3, conv2_channels: 4, conv2_kernel: 1, ..HeadConfig::default() };
    let model = Colorizer::new(&trunk, config, 1, &Device::Cpu).unwrap();
    let ramp: Vec<u8> = (0..2 * 16 * 16).map(|i| (i * 7 % 256) as u8).collect();
    model.fit_standardisation(&[model.gray_tensor(&ramp, 2, 16, 16).unwrap()]).unwrap();
    model.set_output_bias([100.0, 150.0]).unwrap();
    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut names: Vec<_> = saved.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "guide.radius",
            "hypercolumn.scale",
            "hypercolumn.shift",
            "out.bias",
            "out.weight",
            "smoothing.sigma"
        ]
    );

    let loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    assert_eq!(loaded.head().config(), config);
    let y = model.gray_tensor(&[60; 16 * 16], 1, 16, 16).unwrap();
    let a: Vec<f32> = model.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = loaded.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
    let fresh = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    let fresh_head = Colorizer::new(&trunk, config, 1, &Device::Cpu).unwrap();
    let c: Vec<f32> = fresh_head.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_ne!(a, c, "the standardisation and output bias are part of the saved head");
    drop(fresh);

    // Loading into a head of another shape is refused, naming the file.
    let mut other = Colorizer::new(&trunk, HeadConfig::default(), 1, &Device::Cpu).unwrap();
    let err = other.load_head(&path).unwrap_err().to_string();
    assert!(err.contains("head.safetensors"), "{err}");
}

#[test]
fn chroma_smoothing_is_saved_with_the_head_and_blurs_its_predictions() {
    let dir = tempdir("smoothing");
    let trunk = colorize_model::weights::embedded_trunk();
    let small = HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() };
    let sharp = Colorizer::new(&trunk, small, 1, &Device::Cpu).unwrap();
    let smoothed = Colorizer::new(&trunk, HeadConfig { chroma_smoothing: 1.5, ..small }, 1, &Device::Cpu).unwrap();
    let ramp: Vec<u8> = (0..32 * 32).map(|i| (i * 13 % 256) as u8).collect();
    let y = sharp.gray_tensor(&ramp, 1, 32, 32).unwrap();
    let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let want = values(colorize_model::smoothing::smooth_chroma(&sharp.predict(&y).unwrap(), 1.5).unwrap());
    assert_eq!(values(smoothed.predict(&y).unwrap()), want, "same weights (same seed), blurred output");

    let path = dir.join("head.safetensors");
    smoothed.save_head(&path).unwrap();
    let mut loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    assert_eq!(loaded.head().config().chroma_smoothing, 1.5);
    assert_eq!(values(loaded.predict(&y).unwrap()), want);
    loaded.set_chroma_smoothing(0.0).unwrap();
    assert_eq!(values(loaded.predict(&y).unwrap()), values(sharp.predict(&y).unwrap()), "the override");
    let err = loaded.set_chroma_smoothing(-1.0).unwrap_err().to_string();
    assert!(err.contains("chroma_smoothing") && err.contains("-1"), "{err}");

    // A head saved before smoothing existed loads with none.
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("smoothing.sigma");
    let old = dir.join("old.safetensors");
    candle_core::safetensors::save(&tensors, &old).unwrap();
    let loaded = Colorizer::load(&trunk, &old, &Device::Cpu).unwrap();
    assert_eq!(loaded.head().config().chroma_smoothing, 0.0);
    assert_eq!(values(loaded.predict(&y).unwrap()), values(sharp.predict(&y).unwrap()));
}

#[test]
fn the_guide_radius_is_saved_with_the_head() {
    let dir = tempdir("guide");
    let trunk = colorize_model::weights::embedded_trunk();
    let small = HeadConfig { conv1_channels: 8, conv2_channels: 4, chroma_guide_radius: 7.5, ..HeadConfig::default() };
    let model = Colorizer::new(&trunk, small, 1, &Device::Cpu).unwrap();
    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    assert_eq!(HypercolumnHead::config_of_file(&path).unwrap().chroma_guide_radius, 7.5);
    let mut loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    assert_eq!(loaded.head().config().chroma_guide_radius, 7.5);
    let err = loaded.set_chroma_guide_radius(-3.0).unwrap_err().to_string();
    assert!(err.contains("chroma_guide_radius") && err.contains("-3"), "{err}");
    assert_eq!(loaded.head().config().chroma_guide_radius, 7.5, "a refused setting changes nothing");

    // A head saved before the guide existed loads with none; a bad value is refused naming the key and file.
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("guide.radius");
    let old = dir.join("old.safetensors");
    candle_core::safetensors::save(&tensors, &old).unwrap();
    assert_eq!(Colorizer::load(&trunk, &old, &Device::Cpu).unwrap().head().config().chroma_guide_radius, 0.0);
    tensors.insert("guide.radius".into(), Tensor::new(&[1000f32], &Device::Cpu).unwrap());
    let bad = dir.join("bad.safetensors");
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    let Err(err) = Colorizer::load(&trunk, &bad, &Device::Cpu) else { panic!("a radius of 1000 loaded") };
    let err = err.to_string();
    assert!(err.contains("guide.radius is 1000") && err.contains("bad.safetensors"), "{err}");
}

/// A head that predicts colour bins keeps its bins, temperature and
/// rebalancing weights in its file; its predictions are the annealed mean
/// of its bins, and `--temperature` changes them.
/// A small bins head: 8 and 4 channels, bins 24 U/V units apart, T 0.5.
fn small_bins_head() -> HeadConfig {
    HeadConfig {
        conv1_channels: 8,
        conv2_channels: 4,
        output: colorize_model::HeadOutput::Bins,
        bin_spacing: 24,
        temperature: 0.5,
        ..HeadConfig::default()
    }
}

#[test]
fn a_bins_head_round_trips_its_decoding() {
    use colorize_model::colour_bins::annealed_mean;
    use colorize_model::HeadOutput;
    let dir = tempdir("bins");
    let trunk = colorize_model::weights::embedded_trunk();
    let config = small_bins_head();
    let model = Colorizer::new(&trunk, config, 3, &Device::Cpu).unwrap();
    let k = config.colour_bins().len();
    let prior: Vec<f64> = (0..k).map(|i| (i + 1) as f64).collect();
    let total: f64 = prior.iter().sum();
    let prior: Vec<f64> = prior.iter().map(|p| p / total).collect();
    let weights: Vec<f32> = (0..k).map(|i| 0.5 + i as f32 / k as f32).collect();
    model.head().set_bin_prior(model.varmap(), &prior, &weights).unwrap();
    let ramp: Vec<u8> = (0..32 * 32).map(|i| (i * 7 % 256) as u8).collect();
    let y = model.gray_tensor(&ramp, 1, 32, 32).unwrap();
    let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let logits = model.logits(&model.hypercolumn_parts(&y).unwrap()).unwrap();
    assert_eq!(logits.dim(1).unwrap(), k);
    let centres = model.head().bin_centres().unwrap();
    let want = values(annealed_mean(&logits, centres, 0.5).unwrap());
    let got = values(model.predict(&y).unwrap());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));

    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    let read = HypercolumnHead::config_of_file(&path).unwrap();
    assert_eq!((read.output, read.bin_spacing, read.temperature), (HeadOutput::Bins, 24, 0.5));
    let mut loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    assert_eq!(loaded.head().bin_weights(loaded.varmap()).unwrap(), weights);
    let again = values(loaded.predict(&y).unwrap());
    assert!(again.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-6));
    loaded.set_bin_decoding(Some(1.0), None).unwrap();
    let mean = values(annealed_mean(&logits, centres, 1.0).unwrap());
    let at_mean = values(loaded.predict(&y).unwrap());
    assert!(at_mean.iter().zip(&mean).all(|(a, b)| (a - b).abs() < 1e-5), "the override");
    // Undoing the rebalancing: the logits less ln w (the weights above), decoded.
    loaded.set_bin_decoding(None, Some(1.0)).unwrap();
    let log_w = Tensor::new(weights.iter().map(|w| w.ln()).collect::<Vec<f32>>(), &Device::Cpu).unwrap();
    let corrected = logits.broadcast_sub(&log_w.reshape((1, k, 1, 1)).unwrap()).unwrap();
    let want = values(annealed_mean(&corrected, centres, 1.0).unwrap());
    let got = values(loaded.predict(&y).unwrap());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "undo_rebalance 1");
    let path2 = dir.join("decoding.safetensors");
    loaded.save_head(&path2).unwrap();
    let read = HypercolumnHead::config_of_file(&path2).unwrap();
    assert_eq!((read.temperature, read.undo_rebalance), (1.0, 1.0), "decoding saved with the head");
    assert!(loaded.set_bin_decoding(None, Some(1.5)).is_err());
    let err = loaded.set_bin_decoding(Some(0.0), None).unwrap_err().to_string();
    assert!(err.contains("temperature"), "{err}");
    // A (U, V) head has no temperature to set.
    let mut uv = Colorizer::new(
        &trunk,
        HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() },
        1,
        &Device::Cpu,
    )
    .unwrap();
    assert!(uv.set_bin_decoding(Some(0.5), None).is_err());
}

/// A head file records its trunk (name and fingerprint) and the side it
/// was trained at; loading it on another trunk is refused unless asked for.
#[test]
fn a_head_knows_its_trunk_and_input_side() {
    use colorize_model::provenance::HeadProvenance;
    let dir = tempdir("provenance");
    let trunk = colorize_model::weights::embedded_trunk();
    let small = HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() };
    let mut model = Colorizer::new(&trunk, small, 1, &Device::Cpu).unwrap();
    model.set_input_side(48).unwrap();
    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    let provenance = HeadProvenance::of_file(&path).unwrap();
    assert_eq!(provenance.trunk.as_deref(), Some("embedded"));
    assert_eq!(provenance.input_side, Some(48));
    assert_eq!(provenance.trunk_fingerprint.as_deref(), Some(model.trunk().identity().fingerprint.as_str()));
    assert_eq!(Colorizer::load(&trunk, &path, &Device::Cpu).unwrap().input_side(), Some(48));

    // Another trunk: the embedded one with one weight changed.
    let mut tensors = candle_core::safetensors::load(&trunk, &Device::Cpu).unwrap();
    let bias = tensors["features.0.bias"].clone();
    tensors.insert("features.0.bias".into(), (bias + 0.5).unwrap());
    let other = dir.join("other-trunk.safetensors");
    candle_core::safetensors::save(&tensors, &other).unwrap();
    let err = Colorizer::load(&other, &path, &Device::Cpu).err().expect("refused").to_string();
    assert!(err.contains("trained on the trunk 'embedded'") && err.contains("--other-trunk"), "{err}");
    assert!(Colorizer::load_checked(&other, &path, &Device::Cpu, false).is_ok(), "the explicit override");

    // A head saved before heads recorded this has none of it, and loads anywhere.
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let old = dir.join("old.safetensors");
    candle_core::safetensors::save(&tensors, &old).unwrap();
    assert_eq!(HeadProvenance::of_file(&old).unwrap(), HeadProvenance::default());
    assert!(Colorizer::load(&other, &old, &Device::Cpu).is_ok());
}

/// A head with scene context: `scene.weight` travels with it; the scene
/// vector is the picture-wide mean of the standardised conv3_3; the
/// parts path predicts what the dense reference does; and the scene term
/// lets a pixel's colour depend on content far outside its hypercolumn's
/// reach (a head without it cannot see there).
#[test]
fn a_scene_head_sees_the_whole_picture_and_round_trips() {
    let dir = tempdir("scene");
    let trunk = colorize_model::weights::embedded_trunk();
    let plain = HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() };
    let config = HeadConfig { scene_context: true, ..plain };
    let model = Colorizer::new(&trunk, config, 2, &Device::Cpu).unwrap();
    let without = Colorizer::new(&trunk, plain, 2, &Device::Cpu).unwrap();
    // Two 96 px pictures alike except in their bottom-right 32 x 32, more
    // than conv3_3's ~40 px reach (plus the head's) from the top-left corner.
    let s = 96;
    let picture = |seed: usize| -> Vec<u8> {
        (0..s * s)
            .map(|i| {
                let (y, x) = (i / s, i % s);
                let far = y >= 64 && x >= 64;
                ((x * 5 + y * 3 + if far { seed * (x * y % 17) } else { 0 }) % 256) as u8
            })
            .collect()
    };
    let gray = [picture(0), picture(7)].concat();
    let y = model.gray_tensor(&gray, 2, s, s).unwrap();
    for m in [&model, &without] {
        m.fit_standardisation(std::slice::from_ref(&y)).unwrap();
    }

    // The scene vector against plain loops over the standardised conv3_3.
    let parts = model.hypercolumn_parts(&y).unwrap();
    let conv3_3: Vec<Vec<Vec<Vec<f32>>>> =
        (0..2).map(|i| parts.coarse[1].get(i).unwrap().to_vec3::<f32>().unwrap()).collect();
    let scene: Vec<Vec<f32>> = parts.scene.to_vec2().unwrap();
    for (i, picture) in conv3_3.iter().enumerate() {
        for (c, plane) in picture.iter().enumerate() {
            let values: Vec<f64> = plane.iter().flatten().map(|&v| f64::from(v)).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            assert!((f64::from(scene[i][c]) - mean).abs() < 1e-4 * mean.abs().max(1.0), "picture {i} channel {c}");
        }
    }
    assert_ne!(scene[0], scene[1], "the far corners differ, so the scenes do");

    // The parts path against the dense reference.
    let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let dense = values(candle_nn::ops::sigmoid(&model.logits(&parts).unwrap()).unwrap());
    let predicted = values(model.predict(&y).unwrap());
    assert!(dense.iter().zip(&predicted).all(|(a, b)| (a - b).abs() < 1e-5));

    // At the top-left pixel, only the scene head tells the two pictures apart.
    let corner = |m: &Colorizer| -> [f32; 2] {
        let uv = m.predict(&y).unwrap();
        let at = |i: usize| uv.get(i).unwrap().narrow(1, 0, 1).unwrap().narrow(2, 0, 1).unwrap().flatten_all();
        let (a, b): (Vec<f32>, Vec<f32>) = (at(0).unwrap().to_vec1().unwrap(), at(1).unwrap().to_vec1().unwrap());
        [(a[0] - b[0]).abs(), (a[1] - b[1]).abs()]
    };
    assert_eq!(corner(&without), [0.0, 0.0], "without scene context the corner cannot see the far corner");
    assert!(corner(&model).iter().any(|&d| d > 1e-4), "{:?}", corner(&model));

    // Saved and loaded: the weight, the config and the predictions.
    let path = dir.join("head.safetensors");
    model.save_head(&path).unwrap();
    let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert_eq!(saved["scene.weight"].dims(), [8, 256]);
    assert!(HypercolumnHead::config_of_file(&path).unwrap().scene_context);
    let loaded = Colorizer::load(&trunk, &path, &Device::Cpu).unwrap();
    assert_eq!(values(loaded.predict(&y).unwrap()), predicted);
    // A plain head's file has no scene weight to give a scene head.
    let plain_path = dir.join("plain.safetensors");
    without.save_head(&plain_path).unwrap();
    let mut scene_head = Colorizer::new(&trunk, config, 2, &Device::Cpu).unwrap();
    let err = scene_head.load_head(&plain_path).unwrap_err().to_string();
    assert!(err.contains("scene.weight"), "{err}");
}

/// An ensemble averages its heads' log-probabilities per bin (each head's
/// rebalancing undone by its own weights, as far as the first head's
/// `undo_rebalance` says) and decodes the average with the first head's
/// temperature; checked against plain loops over the heads' own logits.
#[test]
fn an_ensemble_averages_its_heads_log_probabilities() {
    let dir = tempdir("ensemble");
    let trunk = colorize_model::weights::embedded_trunk();
    let config = HeadConfig { undo_rebalance: 0.7, ..small_bins_head() };
    let k = config.colour_bins().len();
    let ramp: Vec<u8> = (0..32 * 32).map(|i| (i * 7 % 256) as u8).collect();
    // Two heads of other seeds, rebalancing weights and standardisations.
    let mut heads = Vec::new();
    for seed in [3u64, 4] {
        let model = Colorizer::new(&trunk, config, seed, &Device::Cpu).unwrap();
        let prior = vec![1.0 / k as f64; k];
        let weights: Vec<f32> = (0..k).map(|i| 0.5 + ((i as u64 * (seed + 1)) % 7) as f32 / 4.0).collect();
        model.head().set_bin_prior(model.varmap(), &prior, &weights).unwrap();
        if seed == 4 {
            model.fit_standardisation(&[model.gray_tensor(&ramp, 1, 32, 32).unwrap()]).unwrap();
        }
        let path = dir.join(format!("head-{seed}.safetensors"));
        model.save_head(&path).unwrap();
        heads.push((model, path, weights));
    }
    let y = heads[0].0.gray_tensor(&ramp, 1, 32, 32).unwrap();
    let logits: Vec<Vec<f32>> = heads
        .iter()
        .map(|(m, _, _)| m.logits(&m.hypercolumn_parts(&y).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let centres = config.colour_bins().centres().to_vec();
    let pixels = 32 * 32;
    let mut want = vec![0f32; 2 * pixels];
    for p in 0..pixels {
        let mut mean_log_p = vec![0f64; k];
        for ((_, _, weights), logits) in heads.iter().zip(&logits) {
            let z: Vec<f64> =
                (0..k).map(|b| f64::from(logits[b * pixels + p]) - 0.7 * f64::from(weights[b]).ln()).collect();
            let log_total = z.iter().map(|z| z.exp()).sum::<f64>().ln();
            for (m, z) in mean_log_p.iter_mut().zip(&z) {
                *m += (z - log_total) / 2.0;
            }
        }
        let p_t: Vec<f64> = mean_log_p.iter().map(|m| (m / 0.5).exp()).collect();
        let total: f64 = p_t.iter().sum();
        for c in 0..2 {
            let uv: f64 = p_t.iter().zip(&centres).map(|(p, centre)| p * f64::from(centre[c])).sum::<f64>() / total;
            want[c * pixels + p] = (uv / 255.0) as f32;
        }
    }
    let mut ensemble = Colorizer::load(&trunk, &heads[0].1, &Device::Cpu).unwrap();
    ensemble.add_ensemble_head(&heads[1].1, true).unwrap();
    assert_eq!(ensemble.head_count(), 2);
    let got: Vec<f32> = ensemble.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "ensemble against the plain loops: off by {worst}");
    let alone: Vec<f32> = heads[0].0.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(got.iter().zip(&alone).any(|(a, b)| (a - b).abs() > 1e-3), "the second head counts");

    // Heads that cannot join: another bin grid, and a (U, V) head.
    let other = Colorizer::new(&trunk, HeadConfig { bin_spacing: 16, ..config }, 5, &Device::Cpu).unwrap();
    let other_path = dir.join("spacing-16.safetensors");
    other.save_head(&other_path).unwrap();
    let err = ensemble.add_ensemble_head(&other_path, true).unwrap_err().to_string();
    assert!(err.contains("spacing-16.safetensors") && err.contains("16 U/V units"), "{err}");
    let uv = Colorizer::new(
        &trunk,
        HeadConfig { conv1_channels: 8, conv2_channels: 4, ..HeadConfig::default() },
        1,
        &Device::Cpu,
    )
    .unwrap();
    let uv_path = dir.join("uv.safetensors");
    uv.save_head(&uv_path).unwrap();
    let err = ensemble.add_ensemble_head(&uv_path, true).unwrap_err().to_string();
    assert!(err.contains("uv.safetensors") && err.contains("colour bins"), "{err}");
    assert_eq!(ensemble.head_count(), 2, "refused heads are not added");
}
