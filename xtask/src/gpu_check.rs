//! `cargo xtask gpu-check`: what a GPU machine without Rust can check with
//! binaries built here (`scripts/build-gpu.sh`):
//!
//! 1. the device path against the CPU: the trunk's taps, the hypercolumn,
//!    the head's logits and prediction, one dense and one sampled step's
//!    gradients, within stated tolerances;
//! 2. a training run at 224 (200 steps by default) on the shipped sample
//!    photographs, with its throughput and peak memory;
//! 3. `bench model` on the device, side by side with PyTorch there.
//!
//! With `--device cpu` the same check runs here: step 1 then compares the
//! reference path (the one a GPU takes) with the fast CPU path.

use crate::flags::{BenchArgs, BenchTarget, GpuCheckArgs};
use crate::{flag_path, interrupt_flag, project_root};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use colorize_data::write_cache;
use colorize_model::kernels::ReferenceScope;
use colorize_model::weights::embedded_trunk;
use colorize_model::{parse_device, Colorizer, HeadConfig};
use colorize_train::path_check::{compare, run_paths, test_batch, PathOutputs};
use colorize_train::{train, Event, Experiment, TrainOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest relative difference (‖device − CPU‖ / ‖CPU‖) each output may
/// show: f32 sums in another order (cuDNN, cuBLAS) differ by ~1e-6 per
/// element; a step's gradients sum over every pixel, so they get more room.
const FORWARD_TOLERANCE: f32 = 1e-4;
const GRADIENT_TOLERANCE: f32 = 1e-3;

pub fn run(args: GpuCheckArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    println!("gpu-check on {} ({})", args.device, if device.is_cpu() { "the reference path" } else { "the device" });
    if device.is_cuda() {
        // TF32 off everywhere (cuBLAS, cuDNN, and PyTorch's child): f32 means f32.
        // SAFETY: set before any thread or CUDA context exists.
        unsafe { std::env::set_var("NVIDIA_TF32_OVERRIDE", "0") };
    }
    let failures = check_device_path(&device)?;
    training_run(&args, &device)?;
    if !args.no_peer || device.is_cuda() {
        println!("\n3/3 bench model on {} (TF32 off on both sides)", args.device);
        let bench = BenchArgs {
            target: BenchTarget::Model,
            source: None,
            size: None,
            no_peer: args.no_peer,
            layers: false,
            device: args.device.clone(),
        };
        crate::bench::run(bench)?;
    }
    if failures > 0 {
        bail!("{failures} outputs of the device path are outside their tolerance (listed above)");
    }
    Ok(())
}

/// Step 1: one batch through both paths, every output compared.
fn check_device_path(device: &Device) -> Result<usize> {
    println!("\n1/3 the device path against the CPU (2 pictures at 64 px, the default head)");
    let (n, s) = (2, 64);
    let (y, uv) = test_batch(n, s, 7);
    let cpu_model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 3, &Device::Cpu)?;
    let want = run_paths(&cpu_model, &y, &uv, n, s)?;
    let got: PathOutputs = if device.is_cpu() {
        let _reference = ReferenceScope::enter();
        run_paths(&cpu_model, &y, &uv, n, s)?
    } else {
        let model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 3, device)?;
        run_paths(&model, &y, &uv, n, s)?
    };
    let mut failures = 0;
    for (name, difference) in compare(&want, &got)? {
        let tolerance = if name.contains("gradient") { GRADIENT_TOLERANCE } else { FORWARD_TOLERANCE };
        let ok = difference <= tolerance;
        failures += usize::from(!ok);
        println!("    {:<44} {difference:>10.2e}  {}", name, if ok { "ok" } else { "OUT OF TOLERANCE" });
    }
    println!("    (‖device − CPU‖ / ‖CPU‖; tolerance {FORWARD_TOLERANCE:e} forward, {GRADIENT_TOLERANCE:e} gradients)");
    Ok(failures)
}

/// Step 2: a fresh head trained on the sample photographs at `args.size`.
fn training_run(args: &GpuCheckArgs, device: &Device) -> Result<()> {
    let (steps, side, batch) = (args.steps, args.size, args.batch_size);
    println!("\n2/3 training: {steps} steps of {batch} pictures at {side} px on the sample photographs");
    let out = flag_path(args.out.as_deref(), "runs/gpu-check");
    let text = format!(
        "name = \"gpu-check\"\n[data]\nsource = \"datasets/samples\"\ncache = \"{cache}\"\nsize = {side}\n\
         [train]\nbatch_size = {batch}\nmax_steps = {steps}\nlog_every = {log}\ncheckpoint_every = {steps}\n",
        cache = out.join(format!("cache-{side}")).display(),
        log = (steps / 4).max(1),
    );
    let experiment = Experiment::parse(&text, "gpu-check", &project_root()).map_err(anyhow::Error::msg)?;
    let cache_exists = experiment.data.cache.join("manifest.json").exists();
    write_cache(&experiment.data, cache_exists, &interrupt_flag(), &|_| {})?;
    let run_dir = out.join("train");
    let _ = std::fs::remove_dir_all(&run_dir);
    let options = TrainOptions {
        runs_root: out.clone(),
        run_dir: Some(run_dir.clone()),
        resume: None,
        device: device.clone(),
        stop: interrupt_flag(),
        project_root: project_root(),
    };
    let memory = MemoryWatch::start(device);
    let start = Instant::now();
    let mut last = None;
    train(&experiment, &options, &mut |event| {
        if let Event::Step { step, loss, images_per_s, .. } = event {
            println!("    step {step:>5}  loss {loss:.5}  {images_per_s:.2} images/s");
            last = Some(images_per_s);
        }
    })
    .context("the training run")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "    {steps} steps in {seconds:.1} s: {:.2} images/s overall (set-up included), {:.2} in the last logged window",
        (steps as usize * batch) as f64 / seconds,
        last.unwrap_or(f64::NAN)
    );
    println!("    peak memory: {}; run folder {}", memory.stop(), run_dir.display());
    Ok(())
}

/// Peak memory while it lives: the GPU's (nvidia-smi, sampled every 100 ms,
/// what this process holds) or, on the CPU, this process's resident peak.
struct MemoryWatch {
    cuda: bool,
    stop: Arc<AtomicBool>,
    peak_mib: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryWatch {
    fn start(device: &Device) -> MemoryWatch {
        let (stop, peak_mib) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let thread = device.is_cuda().then(|| {
            let (stop, peak) = (stop.clone(), peak_mib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(mib) = crate::gpu_memory_of_this_process() {
                        peak.fetch_max(mib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        MemoryWatch { cuda: device.is_cuda(), stop, peak_mib, thread }
    }

    fn stop(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match self.cuda {
            true => format!("{} MiB on the GPU (nvidia-smi, sampled)", self.peak_mib.load(Ordering::Relaxed)),
            false => format!("{} resident (this process)", crate::peak_memory()),
        }
    }
}
