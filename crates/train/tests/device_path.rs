//! The path a GPU takes, run on the CPU: with the reference path forced
//! (`kernels::ReferenceScope`), every op takes its device-generic
//! implementation (candle's convolution, the dense first convolution, the
//! generic weight gradients, the broadcast standardisation), as on any
//! device but the CPU. It must compute what the fast CPU path computes: then
//! everything that runs on a GPU is tested here except candle's own kernels.

use candle_core::{DType, Device, Tensor};
use colorize_data::write_cache;
use colorize_model::kernels::ReferenceScope;
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig, TrunkDtype};
use colorize_train::path_check::{compare, joined_gradients, relative_difference, run_paths, test_batch, PathOutputs};
use colorize_train::{train, Event, Experiment, TrainOptions};
use image::{Rgb, RgbImage};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const SIDE: usize = 32;
const BATCH: usize = 2;

fn head() -> HeadConfig {
    HeadConfig { conv1_channels: 16, conv2_channels: 4, ..HeadConfig::default() }
}

fn outputs(model: &Colorizer) -> PathOutputs {
    let (y, uv) = test_batch(BATCH, SIDE, 7);
    run_paths(model, &y, &uv, BATCH, SIDE).unwrap()
}

#[test]
fn the_reference_path_computes_what_the_fast_cpu_path_computes() {
    let model = Colorizer::new(&embedded_trunk(), head(), 3, &Device::Cpu).unwrap();
    let fast = outputs(&model);
    let reference = {
        let _reference = ReferenceScope::enter();
        outputs(&model)
    };
    let differences = compare(&fast, &reference).unwrap();
    assert!(differences.len() > 10, "every tap, output and gradient compared");
    assert!(differences.iter().any(|(_, d)| *d > 0.0), "the scope ran other kernels (sums in another order)");
    for (name, d) in differences {
        // f32 sums in another order: agreement to a few units of 1e-6.
        assert!(d < 2e-5, "{name}: the reference path differs by {d:e} (relative)");
    }
}

/// Twenty steps of a real run (cache, batch loader, SGD with momentum) on
/// each path: the losses agree step by step.
#[test]
fn twenty_training_steps_agree_on_both_paths() {
    let dir = std::env::temp_dir().join(format!("colorize-device-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    for (i, colour) in [[220u8, 40, 30], [30, 200, 60], [40, 60, 220], [230, 210, 40]].iter().enumerate() {
        RgbImage::from_fn(40, 40, |x, y| Rgb(colour.map(|c| (f32::from(c) * (0.4 + (x + y) as f32 / 130.0)) as u8)))
            .save(dir.join(format!("photos/p{i}.png")))
            .unwrap();
    }
    let text = "[data]\nsource = \"photos\"\ncache = \"cache\"\nsize = 32\n[model.head]\nconv1_channels = 16\n\
                conv2_channels = 4\n[train]\nbatch_size = 2\nmax_steps = 20\nlog_every = 1\ncheckpoint_every = 20\n\
                [train.optimizer]\nlr = 0.1\nmomentum = 0.9\n";
    let experiment = Experiment::parse(text, "device-path", &dir).unwrap();
    write_cache(&experiment.data, false, &AtomicBool::new(false), &|_| {}).unwrap();
    let losses = |run: &str| {
        let options = TrainOptions {
            runs_root: dir.join("runs"),
            run_dir: Some(dir.join("runs").join(run)),
            resume: None,
            device: Device::Cpu,
            stop: Arc::new(AtomicBool::new(false)),
            project_root: dir.clone(),
        };
        let mut losses = Vec::new();
        train(&experiment, &options, &mut |event| {
            if let Event::Step { loss, .. } = event {
                losses.push(loss);
            }
        })
        .unwrap();
        losses
    };
    let fast = losses("fast");
    let reference = {
        let _reference = ReferenceScope::enter();
        losses("reference")
    };
    assert_eq!(fast.len(), 20);
    assert_eq!(reference.len(), 20);
    assert!(fast[19] < fast[0], "the loss falls: {fast:?}");
    for (step, (a, b)) in fast.iter().zip(&reference).enumerate() {
        // Rounding differences grow with the steps; 1e-4 relative bounds them.
        assert!((a - b).abs() <= 1e-4 * a.abs(), "step {}: fast {a}, reference {b}", step + 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a bf16 or f16 trunk costs against f32, measured on the same batch:
/// the hypercolumn (standardised, so every channel counts alike) and one
/// step's gradients. The figures are printed (`--nocapture`) and bounded.
#[test]
fn a_lower_precision_trunk_stays_close_to_f32() {
    let (y, _) = test_batch(BATCH, SIDE, 7);
    let f32_model = Colorizer::new(&embedded_trunk(), head(), 3, &Device::Cpu).unwrap();
    let y_tensor = f32_model.gray_tensor(&y, BATCH, SIDE, SIDE).unwrap();
    f32_model.fit_standardisation(std::slice::from_ref(&y_tensor)).unwrap();
    let want = outputs(&f32_model);
    for (dtype, bound) in [(TrunkDtype::Bf16, 0.1), (TrunkDtype::F16, 0.02)] {
        let mut model = Colorizer::new(&embedded_trunk(), head(), 3, &Device::Cpu).unwrap();
        model.fit_standardisation(std::slice::from_ref(&y_tensor)).unwrap();
        model.set_trunk_dtype(dtype).unwrap();
        assert_eq!(model.trunk().dtype(), dtype.dtype());
        let got = outputs(&model);
        assert_eq!(got.tensors[3].1.dtype(), DType::F32, "the hypercolumn stays f32");
        // One step's gradients as one vector: every head variable's, joined.
        let joined = |g| joined_gradients(g).unwrap();
        let relative = |a: &Tensor, b: &Tensor| relative_difference(a, b).unwrap();
        let hypercolumn = relative(&want.tensors[3].1, &got.tensors[3].1);
        let dense = relative(&joined(&want.dense), &joined(&got.dense));
        let sampled = relative(&joined(&want.sampled), &joined(&got.sampled));
        eprintln!(
            "{dtype:?} trunk against f32: hypercolumn {hypercolumn:.2e}, dense step's gradients {dense:.2e}, sampled \
             step's gradients {sampled:.2e} (‖difference‖ / ‖f32 value‖)"
        );
        for (what, d) in [("hypercolumn", hypercolumn), ("dense gradients", dense), ("sampled gradients", sampled)] {
            assert!(d < bound && d > 0.0, "{dtype:?}: {what} differ by {d:e}");
        }
    }
}
