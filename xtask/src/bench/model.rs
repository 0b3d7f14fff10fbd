//! The network's speed on this machine, side by side with PyTorch running
//! the identical network (trunk + hypercolumn + the method's default head,
//! random weights, f32, the same threads): forward and training step
//! (hypercolumn without gradient, the head's forward and backward) at the
//! issue's sizes. Ours also trains on sampled pixels (`train.sampled_pixels`),
//! which PyTorch has no counterpart for here.
//!
//! Forward and step rows are the fastest of `REPEATS` runs on each side.
//! Peak memory is each process's high-water mark so far (rows run in the
//! same order in both), so a row's figure covers the rows before it.

use super::{python_with, run_python};
use crate::flags::BenchArgs;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig};
use colorize_train::sampling::sample_pixels;
use colorize_train::step::{head_gradients, sampled_gradients, Supervision};
use colorize_train::Loss;
use std::collections::HashMap;
use std::time::Instant;

/// (side, batch) of each row, in order.
const ROWS: [(usize, usize); 4] = [(224, 1), (224, 4), (64, 16), (128, 8)];

/// Each forward and step row is the fastest of this many runs, on both
/// sides: this machine's speed drifts by tens of percent between minutes,
/// and a single run compares the two at different moments.
const REPEATS: usize = 3;

const PEER: &str = r#"
import sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]))
REPEATS = int(sys.argv[2])
torch.manual_seed(1)
trunk_layers = [(3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256), (256, 256)]

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.ModuleList([nn.Conv2d(i, o, 3, padding=1) for (i, o) in (l for l in trunk_layers if l != "pool")])
        self.conv1 = nn.Conv2d(451, 128, 3, padding=1)
        self.conv2 = nn.Conv2d(128, 16, 3, padding=1)
        self.out = nn.Conv2d(144, 2, 1)
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def hypercolumn(self, x):
        h, w = x.shape[2:]
        taps, k, y = [], 0, x
        for l in trunk_layers:
            if l == "pool":
                y = F.max_pool2d(y, 2)
            else:
                y = F.relu(self.trunk[k](y)); k += 1
                if k in (2, 4, 7):
                    taps.append(y)
        up = lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([x, taps[0], up(taps[1]), up(taps[2])], 1)

    def head(self, t):
        a = F.relu(self.conv1(t))
        b = F.relu(self.conv2(a))
        return self.out(torch.cat([a, b], 1))

def peak_mib():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would start at the
    # Rust bench's own peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")

net = Net()
for side, batch in [(224, 1), (224, 4), (64, 16), (128, 8)]:
    x = torch.full((batch, 3, side, side), 0.1)
    target = torch.full((batch, 2, side, side), 0.5)
    with torch.no_grad():
        torch.sigmoid(net.head(net.hypercolumn(x)))  # warm-up
    forward = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        with torch.no_grad():
            torch.sigmoid(net.head(net.hypercolumn(x)))
        forward = min(forward, time.perf_counter() - start)
    print(f"forward {side} {batch} {forward} {peak_mib()}", flush=True)
    step = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        with torch.no_grad():
            t = net.hypercolumn(x)
        net.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(net.head(t), target)
        loss.backward()
        step = min(step, time.perf_counter() - start)
    print(f"step {side} {batch} {step} {peak_mib()}", flush=True)
"#;

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Floating-point operations per image of the trunk, the head's forward
/// and the head's backward (weight gradients of all three layers, input
/// gradient of conv2 and out only: the hypercolumn needs none).
fn gflop_per_image(side: usize) -> (f64, f64, f64) {
    let conv = |cin: usize, cout: usize, k: usize, s: usize| 2.0 * (cin * cout * k * k * s * s) as f64;
    let s = side;
    let trunk = conv(3, 64, 3, s)
        + conv(64, 64, 3, s)
        + conv(64, 128, 3, s / 2)
        + conv(128, 128, 3, s / 2)
        + conv(128, 256, 3, s / 4)
        + 2.0 * conv(256, 256, 3, s / 4);
    let (c1, c2, c3) = (conv(451, 128, 3, s), conv(128, 16, 3, s), conv(144, 2, 1, s));
    let head = c1 + c2 + c3;
    let backward = (c1 + c2 + c3) + (c2 + c3);
    (trunk / 1e9, head / 1e9, backward / 1e9)
}

struct Row {
    name: String,
    images_per_s: f64,
    peak_mib: f64,
    gflop_per_image: f64,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = Device::Cpu;
    let threads = rayon::current_num_threads();
    let model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 1, &device)?;
    let mut rows = Vec::new();
    for (side, batch) in ROWS {
        let (trunk, head, backward) = gflop_per_image(side);
        let gray = vec![128u8; batch * side * side];
        let y = model.gray_tensor(&gray, batch, side, side)?;
        let targets = Tensor::full(0.5f32, (batch, 2, side, side), &device)?.to_dtype(DType::F32)?;
        model.predict(&y)?; // warm-up
        let seconds = fastest(|| Ok(model.predict(&y).map(drop)?))?;
        rows.push(row(format!("forward {side} {batch}"), seconds, batch, trunk + head));

        let seconds = fastest(|| {
            let t = model.hypercolumn_parts(&y)?;
            let supervision = Supervision::Dense { hypercolumn: &t, targets: &targets };
            let step = head_gradients(model.head(), supervision, Loss::Bce)?;
            anyhow::ensure!(step.loss.is_finite(), "the training step's loss is not finite");
            Ok(())
        })?;
        rows.push(row(format!("step {side} {batch}"), seconds, batch, trunk + head + backward));

        // Sampled-pixel training: one pixel in 64.
        let per_image = side * side / 64;
        let start = Instant::now();
        let pixels = sample_pixels(batch, side, per_image, 1, 0);
        let step = sampled_gradients(&model, &y, &pixels, vec![0.5; 2 * pixels.len()], Loss::Bce)?;
        anyhow::ensure!(step.loss.is_finite(), "the sampled step's loss is not finite");
        rows.push(row(format!("sampled {side} {batch}"), start.elapsed().as_secs_f64(), batch, f64::NAN));
    }

    let peer = if args.no_peer { HashMap::new() } else { pytorch_rows(threads) };
    println!("bench model: trunk + hypercolumn + 451->128->16->2 head, random input, f32, {threads} threads");
    println!(
        "{:<38} {:>10} {:>8} {:>8} {:>9} | {:>11} {:>8} {:>8} | {:>6}",
        "row", "ours img/s", "GFLOP/s", "peak MiB", "GFLOP/img", "torch img/s", "GFLOP/s", "peak MiB", "ratio"
    );
    for r in &rows {
        let label = match r.name.split(' ').collect::<Vec<_>>().as_slice() {
            ["forward", s, b] => format!("forward {s} batch {b}"),
            ["step", s, b] => format!("training step {s} batch {b}"),
            [_, s, b] => format!("  sampled 1/64 of pixels, {s} batch {b}"),
            _ => r.name.clone(),
        };
        let (peer_ips, peer_peak) = peer.get(&r.name).map_or((f64::NAN, f64::NAN), |(seconds, peak)| {
            let batch: f64 = r.name.rsplit(' ').next().and_then(|b| b.parse().ok()).unwrap_or(f64::NAN);
            (batch / seconds, *peak)
        });
        println!(
            "{:<38} {:>10} {:>8} {:>8} {:>9} | {:>11} {:>8} {:>8} | {:>6}",
            label,
            number(r.images_per_s, 2),
            number(r.images_per_s * r.gflop_per_image, 1),
            number(r.peak_mib, 0),
            number(r.gflop_per_image, 1),
            number(peer_ips, 2),
            number(peer_ips * r.gflop_per_image, 1),
            number(peer_peak, 0),
            number(r.images_per_s / peer_ips, 2) + if peer_ips.is_nan() { "" } else { "x" },
        );
    }
    println!("ratio: our images/s over PyTorch's (above 1: this project is faster); -: no counterpart");
    Ok(())
}

/// `x` with `decimals`, or "-" where there is no value.
fn number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "-".into()
    }
}

/// The fastest of `REPEATS` runs of `work`, in seconds.
fn fastest(mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        work()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn row(name: String, seconds: f64, batch: usize, gflop_per_image: f64) -> Row {
    Row { name, images_per_s: batch as f64 / seconds, peak_mib: peak_mib(), gflop_per_image }
}

/// PyTorch's (seconds, peak MiB) per row name; empty, with a message, when
/// it cannot be installed or run (PyPI's Linux wheel brings gigabytes of
/// CUDA libraries).
fn pytorch_rows(threads: usize) -> HashMap<String, (f64, f64)> {
    let result = python_with(&["torch", "numpy"])
        .and_then(|python| run_python(&python, PEER, &[threads.to_string(), REPEATS.to_string()]));
    match result {
        Ok(out) => out
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let [kind, side, batch, seconds, peak] = f.as_slice() else { return None };
                Some((format!("{kind} {side} {batch}"), (seconds.parse().ok()?, peak.parse().ok()?)))
            })
            .collect(),
        Err(e) => {
            println!("PyTorch peer not run: {e:#}");
            HashMap::new()
        }
    }
}
