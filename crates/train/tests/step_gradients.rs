//! The hand-written backward against candle's autograd on the same head.

use candle_core::{DType, Device, Tensor};
use colorize_core::Rng;
use colorize_model::hypercolumn::Pixel;
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig, HeadOutput, HypercolumnHead};
use colorize_train::bin_loss::{rebalancing_weights, BinLossConfig, BinObjective, SoftEncoding};
use colorize_train::loss::{Objective, Targets};
use colorize_train::qssim_loss::{join_chroma, qssim, QssimTerm};
use colorize_train::step::{head_gradients, Supervision};
use colorize_train::Loss;

/// Every objective with the head output it trains: BCE and L2 on (U, V),
/// and the bins loss (a coarse grid, rebalanced by made-up frequencies, so
/// that the per-pixel weights differ).
fn objectives() -> Vec<(HeadOutput, Objective)> {
    let head = HeadConfig { output: HeadOutput::Bins, bin_spacing: 32, ..HeadConfig::default() };
    let bins = head.colour_bins();
    let config = BinLossConfig { rebalance: 0.5, sigma: 12.0, ..BinLossConfig::default() };
    let frequencies: Vec<f64> = (0..bins.len()).map(|k| (1 + k % 5) as f64 / bins.len() as f64 / 3.0).collect();
    let weights = rebalancing_weights(&frequencies, config.rebalance);
    let bins = Objective::Bins(BinObjective { encoding: SoftEncoding::new(&bins, &config), weights });
    vec![
        (HeadOutput::Uv, Objective::Uv(Loss::Bce)),
        (HeadOutput::Uv, Objective::Uv(Loss::L2)),
        (HeadOutput::Bins, bins),
    ]
}

/// A small head of `output` (bins on a 32-unit grid).
fn small_head(output: HeadOutput, k1: usize, k2: usize) -> HeadConfig {
    HeadConfig {
        conv1_channels: 8,
        conv1_kernel: k1,
        conv2_channels: 4,
        conv2_kernel: k2,
        output,
        bin_spacing: 32,
        ..HeadConfig::default()
    }
}

/// A fresh `head` (seeded) and two random 16x16 pictures: the model,
/// their gray [2, 1, 16, 16] (values in `gray`, inclusive) and (U, V) bytes
/// [2, 2, 16, 16] (uniform in `target`, inclusive).
fn small_batch(
    head: HeadConfig,
    seed: u64,
    data_seed: u64,
    gray: (u8, u8),
    target: (u8, u8),
) -> (Colorizer, Tensor, Vec<u8>) {
    let device = Device::Cpu;
    let model = Colorizer::new(&embedded_trunk(), head, seed, &device).unwrap();
    let (n, s) = (2, 16);
    let mut rng = Rng::new(data_seed);
    let levels = u64::from(gray.1 - gray.0) + 1;
    let ys: Vec<u8> = (0..n * s * s).map(|_| gray.0 + rng.below(levels) as u8).collect();
    let levels = u64::from(target.1 - target.0) + 1;
    let uv: Vec<u8> = (0..n * 2 * s * s).map(|_| target.0 + rng.below(levels) as u8).collect();
    let y = model.gray_tensor(&ys, n, s, s).unwrap();
    (model, y, uv)
}

/// Every objective, without and with scene context (whose weight is drawn
/// like the others, so its term is not zero).
#[test]
fn hand_written_gradients_equal_autograd() {
    for ((output, objective), scene_context) in objectives().into_iter().flat_map(|o| [(o.clone(), false), (o, true)]) {
        let head = HeadConfig { scene_context, ..small_head(output, 3, 3) };
        let (model, y, uv) = small_batch(head, 7, 3, (0, 255), (0, 255));
        let targets = objective.targets(&uv, (2, 16, 16), &Device::Cpu).unwrap();
        let parts = model.hypercolumn_parts(&y).unwrap();
        let supervision = Supervision::Dense { hypercolumn: &parts, targets: &targets, qssim: None };
        let hand = head_gradients(model.head(), supervision, &objective).unwrap();
        let logits = model.logits(&parts).unwrap();
        let auto_loss = objective.loss(&logits, &targets).unwrap();
        let auto = auto_loss.backward().unwrap();
        let auto_value = auto_loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        assert!((hand.loss - auto_value).abs() < 1e-6 * auto_value.abs().max(1.0));
        let vars = model.varmap().data().lock().unwrap();
        let trained = vars.keys().filter(|name| HypercolumnHead::is_trained(name)).count();
        let expected = if scene_context { 7 } else { 6 };
        assert_eq!(trained, expected, "conv1, conv2, out: weight and bias; scene.weight");
        assert_eq!(hand.grads.len(), trained, "a gradient for every trained variable");
        for (name, var) in vars.iter().filter(|(name, _)| HypercolumnHead::is_trained(name)) {
            let a: Vec<f32> = auto.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let h: Vec<f32> = hand.grads[name].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a.len(), h.len(), "{name}");
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
            let worst = a.iter().zip(&h).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * scale, "{objective:?} {name}: max difference {worst} (scale {scale})");
        }
    }
}

/// With the QSSIM term: the step's gradients equal autograd through the
/// head of BCE + λ (1 − QSSIM), the prediction smoothed by the head's
/// `smooth_chroma`.
#[test]
fn gradients_with_the_qssim_term_equal_autograd() {
    let head = HeadConfig { scene_context: true, ..small_head(HeadOutput::Uv, 3, 3) };
    let (model, y, uv) = small_batch(head, 9, 4, (30, 229), (77, 178));
    let bce = Objective::Uv(Loss::Bce);
    let targets = bce.targets(&uv, (2, 16, 16), &Device::Cpu).unwrap();
    let Targets::Uv(target_uv) = &targets else { unreachable!() };
    let parts = model.hypercolumn_parts(&y).unwrap();
    let (weight, smoothing) = (3.0, 1.5);
    let term = QssimTerm { gray: &y, weight, smoothing };
    let supervision = Supervision::Dense { hypercolumn: &parts, targets: &targets, qssim: Some(term) };
    let hand = head_gradients(model.head(), supervision, &bce).unwrap();

    let logits = model.logits(&parts).unwrap();
    let uv = colorize_model::smoothing::smooth_chroma(&candle_nn::ops::sigmoid(&logits).unwrap(), smoothing).unwrap();
    let pred = join_chroma(&y, &(uv * 255.0).unwrap(), true).unwrap();
    let truth = join_chroma(&y, &(target_uv * 255.0).unwrap(), false).unwrap();
    let score = qssim(&pred, &truth).unwrap();
    let total = (bce.loss(&logits, &targets).unwrap() + ((1.0 - score).unwrap() * weight).unwrap()).unwrap();
    let auto = total.backward().unwrap();
    let total = total.to_scalar::<f32>().unwrap() as f64;
    assert!((hand.loss - total).abs() < 1e-5 * total, "{} vs {total}", hand.loss);
    let vars = model.varmap().data().lock().unwrap();
    for (name, var) in vars.iter().filter(|(name, _)| HypercolumnHead::is_trained(name)) {
        let a: Vec<f32> = auto.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let h: Vec<f32> = hand.grads[name].flatten_all().unwrap().to_vec1().unwrap();
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let worst = a.iter().zip(&h).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-3 * scale, "{name}: max difference {worst} (scale {scale})");
    }
    // The term changes the update: without it the gradients differ.
    let plain = Supervision::Dense { hypercolumn: &parts, targets: &targets, qssim: None };
    let plain = head_gradients(model.head(), plain, &bce).unwrap();
    let diff = (&plain.grads["out.bias"] - &hand.grads["out.bias"]).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() > 1e-6);
}

/// Sampled-pixel training: the hand-written gradients on hypercolumn windows
/// with centre targets equal autograd through the dense head with the loss
/// taken at the same pixels only.
#[test]
fn window_gradients_equal_dense_autograd_at_the_sampled_pixels() {
    for (k1, k2) in [(3, 3), (5, 1), (1, 3), (3, 5)] {
        windows_against_dense(k1, k2);
    }
}

fn windows_against_dense(k1: usize, k2: usize) {
    for (output, objective) in objectives() {
        for scene_context in [false, true] {
            let head = HeadConfig { scene_context, ..small_head(output, k1, k2) };
            windows_against_dense_with(head, &objective);
        }
    }
}

fn windows_against_dense_with(head: HeadConfig, objective: &Objective) {
    let (k1, k2) = (head.conv1_kernel, head.conv2_kernel);
    let device = Device::Cpu;
    let model = Colorizer::new(&embedded_trunk(), head, 9, &device).unwrap();
    let (n, s) = (2, 16);
    let mut rng = Rng::new(5);
    let gray: Vec<u8> = (0..n * s * s).map(|_| rng.below(256) as u8).collect();
    let y = model.gray_tensor(&gray, n, s, s).unwrap();
    model.fit_standardisation(std::slice::from_ref(&y)).unwrap();
    let pixels: Vec<Pixel> = (0..12)
        .map(|_| Pixel {
            image: rng.below(n as u64) as usize,
            row: rng.below(s as u64) as usize,
            col: rng.below(s as u64) as usize,
        })
        .chain([Pixel { image: 0, row: 0, col: 0 }, Pixel { image: 1, row: 15, col: 15 }])
        .collect();
    let uv: Vec<u8> = (0..pixels.len() * 2).map(|_| rng.below(256) as u8).collect();
    let targets = objective.targets(&uv, (pixels.len(), 1, 1), &device).unwrap();

    let windows = model.hypercolumn_windows(&y, &pixels, head.receptive_field()).unwrap();
    let dense = model.logits(&model.hypercolumn_parts(&y).unwrap()).unwrap(); // [n, outputs, s, s]
    let outputs = dense.dim(1).unwrap();
    let flat = dense.permute((0, 2, 3, 1)).unwrap().reshape((n * s * s, outputs)).unwrap();
    let rows: Vec<u32> = pixels.iter().map(|p| ((p.image * s + p.row) * s + p.col) as u32).collect();
    let at_pixels = flat
        .index_select(&Tensor::new(rows, &device).unwrap(), 0)
        .unwrap()
        .reshape((pixels.len(), outputs, 1, 1))
        .unwrap();
    {
        let supervision = Supervision::Centres {
            windows: &windows.features,
            targets: &targets,
            inside: &windows.inside,
            scene: &windows.scene,
        };
        let hand = head_gradients(model.head(), supervision, objective).unwrap();
        let auto_loss = objective.loss(&at_pixels, &targets).unwrap();
        let auto = auto_loss.backward().unwrap();
        let auto_value = auto_loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        assert!((hand.loss - auto_value).abs() < 1e-5 * auto_value.abs().max(1.0), "{} vs {auto_value}", hand.loss);
        let vars = model.varmap().data().lock().unwrap();
        for (name, var) in vars.iter().filter(|(name, _)| HypercolumnHead::is_trained(name)) {
            let a: Vec<f32> = auto.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let h: Vec<f32> = hand.grads[name].flatten_all().unwrap().to_vec1().unwrap();
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
            let worst = a.iter().zip(&h).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            let scene = head.scene_context;
            assert!(
                worst <= 1e-4 * scale,
                "k{k1}/k{k2} scene {scene} {objective:?} {name}: max {worst} (scale {scale})"
            );
        }
    }
}

/// The weight gradients' reductions run in an order fixed by the data size:
/// a step with many pieces gives the same bits on 1 and 2 threads and when
/// repeated (rayon's work stealing decides nothing).
#[test]
fn gradients_are_bit_identical_across_threads_and_runs() {
    let device = Device::Cpu;
    let head = small_head(HeadOutput::Uv, 3, 3);
    let head = HeadConfig { conv1_channels: 64, scene_context: true, ..head };
    let model = Colorizer::new(&embedded_trunk(), head, 5, &device).unwrap();
    let (n, s) = (4, 64); // 4 images of 64 x 64: many pieces of 1024 pixels per layer
    let mut rng = Rng::new(8);
    let gray: Vec<u8> = (0..n * s * s).map(|_| rng.below(256) as u8).collect();
    let uv: Vec<u8> = (0..n * 2 * s * s).map(|_| rng.below(256) as u8).collect();
    let y = model.gray_tensor(&gray, n, s, s).unwrap();
    let objective = Objective::Uv(Loss::Bce);
    let targets = objective.targets(&uv, (n, s, s), &device).unwrap();
    let parts = model.hypercolumn_parts(&y).unwrap();
    let bits = |threads: usize| -> Vec<(String, Vec<u32>)> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let supervision = Supervision::Dense { hypercolumn: &parts, targets: &targets, qssim: None };
            let step = head_gradients(model.head(), supervision, &objective).unwrap();
            let mut grads: Vec<(String, Vec<u32>)> = step
                .grads
                .iter()
                .map(|(name, g)| {
                    let values: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                    (name.clone(), values.iter().map(|v| v.to_bits()).collect())
                })
                .collect();
            grads.sort();
            grads
        })
    };
    let one = bits(1);
    assert_eq!(one, bits(2), "1 thread and 2 threads");
    assert_eq!(bits(2), bits(2), "two runs on 2 threads");
}
