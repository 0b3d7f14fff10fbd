//! The network's speed on this machine: forward and training step (the
//! project's hand-written head backward) at the sizes, with the
//! method's default head, dense and on sampled pixels. Peak RSS is the
//! process's high-water mark so far (rows run in order). No peer runs here (PyTorch is not installed by
//! the bench: its wheel brings gigabytes of CUDA libraries).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig};
use colorize_train::sampling::sample_pixels;
use colorize_train::step::{head_gradients, Supervision};
use colorize_train::Loss;
use std::time::Instant;

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run() -> Result<()> {
    let device = Device::Cpu;
    let model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 1, &device)?;
    println!(
        "bench model: method's network (trunk + 451->128->16->2 head), f32, {} threads",
        rayon::current_num_threads()
    );
    println!("{:<28} {:>10} {:>12} {:>14}", "row", "seconds", "images/s", "peak RSS MiB");
    for (side, batch) in [(224usize, 1usize), (224, 4), (64, 16), (128, 8)] {
        let gray = vec![128u8; batch * side * side];
        let y = model.gray_tensor(&gray, batch, side, side)?;
        let targets = Tensor::full(0.5f32, (batch, 2, side, side), &device)?;
        model.predict(&y)?; // warm-up
        let start = Instant::now();
        model.predict(&y)?;
        let forward = start.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>10.3} {:>12.2} {:>14.0}",
            format!("forward {side} batch {batch}"),
            forward,
            batch as f64 / forward,
            peak_mib()
        );
        let start = Instant::now();
        let t = model.hypercolumn(&y)?;
        let targets = targets.to_dtype(DType::F32)?;
        let step = head_gradients(model.head(), &t, Supervision::Dense { targets: &targets }, Loss::Bce)?;
        let seconds = start.elapsed().as_secs_f64();
        assert!(step.loss.is_finite());
        println!(
            "{:<28} {:>10.3} {:>12.2} {:>14.0}",
            format!("train step {side} batch {batch}"),
            seconds,
            batch as f64 / seconds,
            peak_mib()
        );
        // Sampled-pixel training (train.sampled_pixels): one pixel in 64.
        let per_image = side * side / 64;
        let start = Instant::now();
        let pixels = sample_pixels(batch, side, per_image, 1, 0);
        let targets = Tensor::full(0.5f32, (pixels.len(), 2, 1, 1), &device)?;
        let windows = model.hypercolumn_windows(&y, &pixels, model.head().config().receptive_field())?;
        let supervision = Supervision::Centres { targets: &targets, inside: &windows.inside };
        let step = head_gradients(model.head(), &windows.features, supervision, Loss::Bce)?;
        let seconds = start.elapsed().as_secs_f64();
        assert!(step.loss.is_finite());
        println!(
            "{:<28} {:>10.3} {:>12.2} {:>14.0}",
            format!("  sampled, {per_image} px/image"),
            seconds,
            batch as f64 / seconds,
            peak_mib()
        );
    }
    Ok(())
}
