//! The hand-written backward against candle's autograd on the same head.

use candle_core::{DType, Device, Tensor};
use colorize_core::Rng;
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig};
use colorize_train::loss::loss;
use colorize_train::step::head_gradients;
use colorize_train::Loss;

#[test]
fn hand_written_gradients_equal_autograd() {
    let device = Device::Cpu;
    let head =
        HeadConfig { conv1_channels: 8, conv1_kernel: 3, conv2_channels: 4, conv2_kernel: 3, ..HeadConfig::default() };
    let model = Colorizer::new(&embedded_trunk(), head, 7, &device).unwrap();
    let (n, s) = (2, 16);
    let mut rng = Rng::new(3);
    let gray: Vec<u8> = (0..n * s * s).map(|_| rng.below(256) as u8).collect();
    let targets: Vec<f32> = (0..n * 2 * s * s).map(|_| rng.unit_f64() as f32).collect();
    let targets = Tensor::from_vec(targets, (n, 2, s, s), &device).unwrap();
    let t = model.hypercolumn(&model.gray_tensor(&gray, n, s, s).unwrap()).unwrap();

    for kind in [Loss::Bce, Loss::L2] {
        let hand = head_gradients(model.head(), &t, &targets, kind).unwrap();
        let logits = model.logits(&t).unwrap();
        let auto_loss = loss(kind, &logits, &targets).unwrap();
        let auto = auto_loss.backward().unwrap();
        let auto_value = auto_loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        assert!((hand.loss - auto_value).abs() < 1e-6 * auto_value.abs().max(1.0));
        let vars = model.varmap().data().lock().unwrap();
        // Every variable but the constant hypercolumn factors has a gradient.
        assert_eq!(hand.grads.len(), vars.len() - 1, "a gradient for every trained variable");
        for (name, var) in vars.iter().filter(|(name, _)| name.as_str() != "hypercolumn.scale") {
            let a: Vec<f32> = auto.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let h: Vec<f32> = hand.grads[name].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a.len(), h.len(), "{name}");
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
            let worst = a.iter().zip(&h).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * scale, "{kind:?} {name}: max difference {worst} (scale {scale})");
        }
    }
}
