//! The network's speed on this machine, side by side with PyTorch running
//! the identical network (trunk + hypercolumn + the method's default head,
//! random weights, f32, the same threads): forward and training step
//! (hypercolumn without gradient, the head's forward and backward) at the
//! issue's sizes. Ours also trains on sampled pixels (`train.sampled_pixels`),
//! which PyTorch has no counterpart for here.
//!
//! Forward and step rows are the fastest of `REPEATS` runs on each side,
//! ours and PyTorch's alternating (PyTorch in a child process that times
//! one run per request), so that both meet the machine in the same state.
//! Peak memory is each process's high-water mark so far (rows run in the
//! same order in both), so a row's figure covers the rows before it.

use super::python_with;
use crate::flags::BenchArgs;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use colorize_model::weights::embedded_trunk;
use colorize_model::{Colorizer, HeadConfig};
use colorize_train::loss::Objective;
use colorize_train::sampling::sample_pixels;
use colorize_train::step::{head_gradients, sampled_gradients, Supervision};
use colorize_train::Loss;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
device = torch.device(sys.argv[2])
# f32 means f32: no TF32 in matrix products or convolutions (ours: NVIDIA_TF32_OVERRIDE=0).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
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

def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()

def peak_mib():
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would start at the
    # Rust bench's own peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")

# One timed run per request line "forward|step SIDE BATCH", answered with
# "SECONDS PEAK_MIB": the bench interleaves these with its own runs.
net = Net().to(device)
inputs = {}
print(torch.__version__, flush=True)
convs = {}
for line in sys.stdin:
    if line.startswith("conv "):
        # "conv CIN COUT K SIDE BATCH": one convolution, no gradient.
        cin, cout, k, side, batch = map(int, line.split()[1:])
        key = (cin, cout, k, side, batch)
        if key not in convs:
            convs[key] = (torch.randn(batch, cin, side, side, device=device),
                          torch.randn(cout, cin, k, k, device=device), torch.randn(cout, device=device))
        x, w, b = convs[key]
        with torch.no_grad():
            F.conv2d(x, w, b, padding=k // 2)  # warm-up
            sync()
            start = time.perf_counter()
            F.conv2d(x, w, b, padding=k // 2)
            sync()
        print(f"{time.perf_counter() - start} {peak_mib()}", flush=True)
        continue
    kind, side, batch = line.split()
    side, batch = int(side), int(batch)
    if (side, batch) not in inputs:
        x = torch.full((batch, 3, side, side), 0.1, device=device)
        target = torch.full((batch, 2, side, side), 0.5, device=device)
        inputs[(side, batch)] = (x, target)
        with torch.no_grad():
            torch.sigmoid(net.head(net.hypercolumn(x)))  # warm-up
    x, target = inputs[(side, batch)]
    sync()
    start = time.perf_counter()
    if kind == "forward":
        with torch.no_grad():
            torch.sigmoid(net.head(net.hypercolumn(x)))
    else:
        with torch.no_grad():
            t = net.hypercolumn(x)
        net.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(net.head(t), target)
        loss.backward()
    sync()
    print(f"{time.perf_counter() - start} {peak_mib()}", flush=True)
"#;

/// Arithmetic per image, in GFLOP: as PyTorch computes it (the dense
/// hypercolumn) and as this project does (the head's first convolution on
/// the hypercolumn's parts, `first_conv`).
#[derive(Clone, Copy)]
struct Gflop {
    dense: f64,
    ours: f64,
}

/// The arithmetic of a forward pass and of a training step (the head's
/// backward: weight gradients of all three layers, input gradient of conv2
/// and out only, the hypercolumn needs none).
fn gflop_per_image(side: usize) -> (Gflop, Gflop) {
    let conv = |cin: usize, cout: usize, k: usize, s: usize| 2.0 * (cin * cout * k * k * s * s) as f64 / 1e9;
    let s = side;
    let trunk = conv(3, 64, 3, s)
        + conv(64, 64, 3, s)
        + conv(64, 128, 3, s / 2)
        + conv(128, 128, 3, s / 2)
        + conv(128, 256, 3, s / 4)
        + 2.0 * conv(256, 256, 3, s / 4);
    let dense_conv1 = conv(451, 128, 3, s);
    // The full-size parts at full size, each coarse part's products at its own.
    let parts_conv1 = conv(67, 128, 3, s) + conv(128, 128, 3, s / 2) + conv(256, 128, 3, s / 4);
    let (c2, c3) = (conv(128, 16, 3, s), conv(144, 2, 1, s));
    let forward = |conv1: f64| trunk + conv1 + c2 + c3;
    let step = |conv1: f64| forward(conv1) + (conv1 + c2 + c3) + (c2 + c3);
    (
        Gflop { dense: forward(dense_conv1), ours: forward(parts_conv1) },
        Gflop { dense: step(dense_conv1), ours: step(parts_conv1) },
    )
}

/// The machine's f32 peak as gemm reaches it: the fastest of `REPEATS`
/// 2048 x 2048 matrix products (candle's matmul, the gemm crate with its
/// AVX-512 kernels), on the bench's threads. GFLOP/s.
fn gemm_peak(device: &Device) -> Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    a.matmul(&b)?; // warm-up
    device.synchronize()?;
    let mut seconds = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        a.matmul(&b)?;
        device.synchronize()?;
        seconds = seconds.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / seconds / 1e9)
}

struct Row {
    name: String,
    batch: usize,
    timing: Timing,
    /// Our process's high-water mark after this row.
    peak_mib: f64,
    gflop_per_image: Gflop,
}

/// The fastest run of a row on each side, in seconds (infinite: not run),
/// and the peer's high-water mark after it.
#[derive(Clone, Copy, Debug)]
struct Timing {
    ours: f64,
    peer: f64,
    peer_peak_mib: f64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing { ours: f64::INFINITY, peer: f64::INFINITY, peer_peak_mib: f64::NAN }
    }
}

impl Timing {
    fn ours(&mut self, seconds: f64) {
        self.ours = self.ours.min(seconds);
    }

    /// Records a peer run; a failed one is reported and leaves the row without a peer.
    fn peer(&mut self, run: Option<Result<(f64, f64)>>) {
        match run {
            Some(Ok((seconds, peak))) => {
                self.peer = self.peer.min(seconds);
                self.peer_peak_mib = peak;
            }
            Some(Err(e)) => println!("PyTorch run failed: {e:#}"),
            None => {}
        }
    }
}

/// The rows (forward, training step, sampled step at each size), then the
/// table.
pub fn run(args: &BenchArgs) -> Result<()> {
    let device = colorize_model::parse_device(&args.device)?;
    let threads = rayon::current_num_threads();
    let mut peer = if args.no_peer { None } else { PytorchPeer::start(threads, &args.device) };
    if args.layers {
        return layers(&device, peer.as_mut());
    }
    let model = Colorizer::new(&embedded_trunk(), HeadConfig::default(), 1, &device)?;
    let mut rows = Vec::new();
    for (side, batch) in ROWS {
        rows.extend(measure(&model, side, batch, peer.as_mut())?);
    }
    let peak = gemm_peak(&device)?;
    let on = if device.is_cpu() { format!("{threads} threads") } else { format!("{}, TF32 off", args.device) };
    println!("bench model: trunk + hypercolumn + 451->128->16->2 head, random input, f32, {on}");
    if let Some(version) = peer.as_ref().and_then(|p| p.version.clone()) {
        println!("peer: PyTorch {version} (pinned in the bench venv: {TORCH})");
    }
    println!("machine peak: {peak:.1} GFLOP/s (f32 2048 x 2048 matrix product, {on})");
    print_rows(&rows, peak);
    Ok(())
}

/// One size's rows: the forward and the training step (fastest of
/// `REPEATS`, ours and PyTorch's alternating, so that both see the machine
/// in the same state), and a step on sampled pixels (one in 64; ours only).
fn measure(model: &Colorizer, side: usize, batch: usize, mut peer: Option<&mut PytorchPeer>) -> Result<Vec<Row>> {
    let device = model.device();
    // One run of `work`, finished on the device, in seconds.
    let timed = |work: &dyn Fn() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        work()?;
        device.synchronize()?;
        Ok(start.elapsed().as_secs_f64())
    };
    let (forward_work, step_work) = gflop_per_image(side);
    let y = model.gray_tensor(&vec![128u8; batch * side * side], batch, side, side)?;
    let objective = Objective::Uv(Loss::Bce);
    let targets = objective.targets(&vec![128u8; batch * 2 * side * side], (batch, side, side), device)?;
    model.predict(&y)?; // warm-up
    let (mut forward, mut step) = (Timing::default(), Timing::default());
    for _ in 0..REPEATS {
        forward.ours(timed(&|| Ok(model.predict(&y).map(drop)?))?);
        forward.peer(peer.as_deref_mut().map(|p| p.time("forward", side, batch)));
        step.ours(timed(&|| {
            let t = model.hypercolumn_parts(&y)?;
            let supervision = Supervision::Dense { hypercolumn: &t, targets: &targets, qssim: None };
            let step = head_gradients(model.head(), supervision, &objective)?;
            anyhow::ensure!(step.loss.is_finite(), "the training step's loss is not finite");
            Ok(())
        })?);
        step.peer(peer.as_deref_mut().map(|p| p.time("step", side, batch)));
    }
    let sampled = timed(&|| {
        let pixels = sample_pixels(batch, side, side * side / 64, 1, 0);
        let step = sampled_gradients(model, &y, &pixels, &vec![128; 2 * pixels.len()], &objective)?;
        anyhow::ensure!(step.loss.is_finite(), "the sampled step's loss is not finite");
        Ok(())
    })?;
    let unknown = Gflop { dense: f64::NAN, ours: f64::NAN };
    Ok(vec![
        row(format!("forward {side} {batch}"), forward, batch, forward_work, device),
        row(format!("step {side} {batch}"), step, batch, step_work, device),
        row(format!("sampled {side} {batch}"), Timing { ours: sampled, ..Timing::default() }, batch, unknown, device),
    ])
}

fn print_rows(rows: &[Row], peak: f64) {
    println!(
        "{:<38} {:>10} {:>8} {:>6} {:>8} | {:>11} {:>8} {:>6} {:>8} | {:>6}",
        "row", "ours img/s", "GFLOP/s", "% peak", "peak MiB", "torch img/s", "GFLOP/s", "% peak", "peak MiB", "ratio"
    );
    for r in rows {
        let label = match r.name.split(' ').collect::<Vec<_>>().as_slice() {
            ["forward", s, b] => format!("forward {s} batch {b}"),
            ["step", s, b] => format!("training step {s} batch {b}"),
            [_, s, b] => format!("  sampled 1/64 of pixels, {s} batch {b}"),
            _ => r.name.clone(),
        };
        let batch = r.batch as f64;
        let (images_per_s, peer_ips) = (batch / r.timing.ours, batch / r.timing.peer);
        let peer_ips = if peer_ips > 0.0 { peer_ips } else { f64::NAN };
        let ours = images_per_s * r.gflop_per_image.ours;
        let theirs = peer_ips * r.gflop_per_image.dense;
        println!(
            "{:<38} {:>10} {:>8} {:>6} {:>8} | {:>11} {:>8} {:>6} {:>8} | {:>6}",
            label,
            number(images_per_s, 2),
            number(ours, 1),
            number(100.0 * ours / peak, 0),
            number(r.peak_mib, 0),
            number(peer_ips, 2),
            number(theirs, 1),
            number(100.0 * theirs / peak, 0),
            number(r.timing.peer_peak_mib, 0),
            number(images_per_s / peer_ips, 2) + if peer_ips.is_nan() { "" } else { "x" },
        );
    }
    println!("GFLOP/s: the arithmetic each side does; ours runs the head's first convolution on the hypercolumn's");
    println!("parts (at 224: 13 GFLOP where the dense hypercolumn takes 52).");
    println!("forward and step rows: the fastest of {REPEATS} runs on each side, ours and PyTorch's alternating.");
    println!("ratio: our images/s over PyTorch's (above 1: this project is faster); -: no counterpart");
}

/// The network's convolutions one by one at 224, batch 1: (name, cin,
/// cout, k, side).
const LAYERS: [(&str, usize, usize, usize, usize); 10] = [
    ("conv1_1", 3, 64, 3, 224),
    ("conv1_2", 64, 64, 3, 224),
    ("conv2_1", 64, 128, 3, 112),
    ("conv2_2", 128, 128, 3, 112),
    ("conv3_1", 128, 256, 3, 56),
    ("conv3_2", 256, 256, 3, 56),
    ("conv3_3", 256, 256, 3, 56),
    ("head conv1 (451->128)", 451, 128, 3, 224),
    ("head conv2 (128->16)", 128, 16, 3, 224),
    ("head out (144->2, 1x1)", 144, 2, 1, 224),
];

/// `bench model --layers`: each convolution's forward on both sides, the
/// fastest of `REPEATS` alternating runs, with its GFLOP/s. Ours runs the
/// head's first convolution on the hypercolumn's parts (`first_conv`),
/// PyTorch on the dense hypercolumn: their GFLOP differ, their times compare.
fn layers(device: &Device, mut peer: Option<&mut PytorchPeer>) -> Result<()> {
    use candle_core::Module;
    let peak = gemm_peak(device)?;
    println!("bench model --layers: each convolution's forward at 224, batch 1, f32; peak {peak:.1} GFLOP/s");
    println!(
        "{:<24} {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7} | {:>6}",
        "layer", "ours ms", "GFLOP/s", "% peak", "torch ms", "GFLOP/s", "% peak", "ratio"
    );
    let random = |dims: &[usize]| Tensor::randn(0f32, 1.0, dims, device);
    let (mut ours_total, mut peer_total) = (0.0, 0.0);
    for (name, cin, cout, k, side) in LAYERS {
        let conv = colorize_model::conv::Conv2d::new(random(&[cout, cin, k, k])?, random(&[cout])?)?;
        let dense_gflop = 2.0 * (cin * cout * k * k * side * side) as f64 / 1e9;
        let first = cin == 451;
        let parts = colorize_model::hypercolumn::HypercolumnParts {
            full: random(&[1, 67, side, side])?,
            coarse: vec![random(&[1, 128, side / 2, side / 2])?, random(&[1, 256, side / 4, side / 4])?],
            scene: random(&[1, 256])?,
        };
        let x = if first { parts.full.clone() } else { random(&[1, cin, side, side])? };
        let run = || -> Result<()> {
            match first {
                true => drop(colorize_model::kernels::first_conv::first_conv(&conv, &parts)?),
                false => drop(conv.forward(&x)?),
            }
            device.synchronize()?;
            Ok(())
        };
        run()?; // warm-up
        let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..REPEATS {
            let start = Instant::now();
            run()?;
            ours = ours.min(start.elapsed().as_secs_f64());
            if let Some(peer) = peer.as_deref_mut() {
                theirs = theirs.min(peer.time_conv(cin, cout, k, side)?);
            }
        }
        let ours_gflop = if first {
            let conv = |cin: usize, s: usize| 2.0 * (cin * cout * k * k * s * s) as f64 / 1e9;
            conv(67, side) + conv(128, side / 2) + conv(256, side / 4)
        } else {
            dense_gflop
        };
        ours_total += ours;
        peer_total += theirs;
        println!(
            "{:<24} {:>9.2} {:>9.1} {:>7.0} | {:>9} {:>9} {:>7} | {:>6}",
            name,
            1e3 * ours,
            ours_gflop / ours,
            100.0 * ours_gflop / ours / peak,
            number(1e3 * theirs, 2),
            number(dense_gflop / theirs, 1),
            number(100.0 * dense_gflop / theirs / peak, 0),
            number(theirs / ours, 2) + if theirs.is_finite() { "x" } else { "" },
        );
    }
    println!("{:<24} {:>9.2} {:>27} | {:>9}", "all layers", 1e3 * ours_total, "", number(1e3 * peer_total, 2));
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

/// A row, with our peak memory so far: resident on the CPU, held on a GPU
/// (nvidia-smi, at the end of the row).
fn row(name: String, timing: Timing, batch: usize, gflop_per_image: Gflop, device: &Device) -> Row {
    let peak_mib = match device.is_cuda() {
        true => crate::gpu_memory_of_this_process().map_or(f64::NAN, |m| m as f64),
        false => crate::peak_memory_mib().unwrap_or(f64::NAN),
    };
    Row { name, batch, timing, peak_mib, gflop_per_image }
}

/// PyTorch in a child process, timing one run per request (see `PEER`).
struct PytorchPeer {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
    /// torch.__version__, as the peer reports it first.
    version: Option<String>,
}

/// The PyTorch the bench installs: pinned, so that a rerun compares with the
/// same peer.
const TORCH: &str = "torch==2.15.0";

impl PytorchPeer {
    /// None, with a message, when PyTorch cannot be installed or started
    /// (PyPI's Linux wheel brings gigabytes of CUDA libraries).
    fn start(threads: usize, device: &str) -> Option<PytorchPeer> {
        let started = python_with(&[TORCH, "numpy"]).and_then(|python| {
            let script = std::env::temp_dir().join(format!("colorize-bench-peer-{}.py", std::process::id()));
            std::fs::write(&script, PEER)?;
            let mut child = Command::new(python)
                .arg(&script)
                .arg(threads.to_string())
                .arg(device)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the PyTorch peer")?;
            let requests = child.stdin.take().context("the peer's stdin")?;
            let mut answers = BufReader::new(child.stdout.take().context("the peer's stdout")?);
            let mut version = String::new();
            answers.read_line(&mut version)?;
            let version = Some(version.trim().to_string()).filter(|v| !v.is_empty());
            Ok(PytorchPeer { child, requests, answers, version })
        });
        match started {
            Ok(peer) => Some(peer),
            Err(e) => {
                println!("PyTorch peer not run: {e:#}");
                None
            }
        }
    }

    /// Seconds of one convolution's forward (batch 1, 'same' padding).
    fn time_conv(&mut self, cin: usize, cout: usize, k: usize, side: usize) -> Result<f64> {
        writeln!(self.requests, "conv {cin} {cout} {k} {side} 1")?;
        self.requests.flush()?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            anyhow::bail!("the PyTorch peer stopped (its error is above)");
        }
        line.split_whitespace().next().and_then(|s| s.parse().ok()).context("the peer's answer")
    }

    /// (seconds, peak MiB) of one run of `kind` ("forward" or "step").
    fn time(&mut self, kind: &str, side: usize, batch: usize) -> Result<(f64, f64)> {
        writeln!(self.requests, "{kind} {side} {batch}")?;
        self.requests.flush()?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            anyhow::bail!("the PyTorch peer stopped (its error is above)");
        }
        let mut fields = line.split_whitespace().map(str::parse::<f64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(seconds)), Some(Ok(peak))) => Ok((seconds, peak)),
            _ => anyhow::bail!("the PyTorch peer answered {line:?}"),
        }
    }
}

impl Drop for PytorchPeer {
    fn drop(&mut self) {
        // The peer waits for requests until its stdin closes; stop it now.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
