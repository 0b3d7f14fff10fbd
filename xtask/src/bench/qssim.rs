//! QSSIM speed: this project against a straightforward NumPy implementation
//! of the same definition, on the same generated pairs and the same cores.

use super::{python_with, run_python};
use crate::flags::BenchArgs;
use anyhow::Result;
use colorize_core::Rng;
use colorize_eval::measures::qssim;
use image::{Rgb, RgbImage};
use rayon::prelude::*;
use std::time::Instant;

const PEER: &str = r#"
import sys, time, glob
import numpy as np
from PIL import Image

def gaussian():
    x = np.arange(11) - 5.0
    g = np.exp(-x * x / (2 * 1.5 ** 2))
    return g / g.sum()

G = gaussian()

def filt(p):  # 11x11 Gaussian, 'valid', separable
    h, w = p.shape
    rows = sum(G[k] * p[:, k:w - 10 + k] for k in range(11))
    return sum(G[k] * rows[k:h - 10 + k, :] for k in range(11))

def down(p, f):
    if f == 1:
        return p
    c = (f - 1) // 2
    q = np.pad(p, ((c, f - 1 - c), (c, f - 1 - c)), mode="symmetric")
    h, w = p.shape
    acc = sum(q[dy:dy + h, dx:dx + w] for dy in range(f) for dx in range(f)) / (f * f)
    return acc[::f, ::f]

def qssim(a, b):
    f = max(1, int(np.floor(min(a.shape[:2]) / 256 + 0.5)))
    v1 = [down(a[..., c] / 256 / np.sqrt(3), f) for c in range(3)]
    v2 = [down(b[..., c] / 256 / np.sqrt(3), f) for c in range(3)]
    m1 = [filt(p) for p in v1]
    m2 = [filt(p) for p in v2]
    e11 = filt(sum(p * p for p in v1))
    e22 = filt(sum(p * p for p in v2))
    e12 = filt(sum(p * q for p, q in zip(v1, v2)))
    cr = [filt(v1[1] * v2[2] - v1[2] * v2[1]), filt(v1[2] * v2[0] - v1[0] * v2[2]), filt(v1[0] * v2[1] - v1[1] * v2[0])]
    mc = [m1[1] * m2[2] - m1[2] * m2[1], m1[2] * m2[0] - m1[0] * m2[2], m1[0] * m2[1] - m1[1] * m2[0]]
    d12 = sum(p * q for p, q in zip(m1, m2))
    n1, n2 = sum(p * p for p in m1), sum(p * p for p in m2)
    C1, C2 = 1e-4, 9e-4
    A = np.sqrt((2 * d12 + C1) ** 2 + 4 * sum(c * c for c in mc))
    s = e12 - d12
    w = [c - m for c, m in zip(cr, mc)]
    B = np.sqrt((2 * s + C2) ** 2 + 4 * sum(x * x for x in w))
    D = (n1 + n2 + C1) * ((e11 - n1) + (e22 - n2) + C2)
    return float(np.mean(A * B / D))

def load(p):
    return (np.asarray(Image.open(p), dtype=np.float64),
            np.asarray(Image.open(p.replace("-a.png", "-b.png")), dtype=np.float64))

IMGS = []

def load_all(pairs):
    IMGS.extend(load(p) for p in pairs)

def score_index(i):
    return qssim(*IMGS[i])

if __name__ == "__main__":
    from multiprocessing import Pool
    pairs = sorted(glob.glob(sys.argv[1] + "/*-a.png"))
    processes = int(sys.argv[2])
    load_all(pairs)
    one = many = float("inf")
    for _ in range(3):  # best of 3, as ours
        start = time.time()
        scores = [qssim(a, b) for a, b in IMGS]
        one = min(one, time.time() - start)
    # N processes, each with every pair already in its memory (loaded by
    # the pool's initializer, before the clock), as the one-process loop has.
    with Pool(processes, initializer=load_all, initargs=(pairs,)) as pool:
        pool.map(abs, range(processes))
        for _ in range(3):
            start = time.time()
            scores_n = pool.map(score_index, range(len(pairs)), chunksize=1)
            many = min(many, time.time() - start)
    print(one, sum(scores), many, sum(scores_n))
"#;

fn pair(w: u32, h: u32, seed: u64) -> (RgbImage, RgbImage) {
    let mut rng = Rng::new(seed);
    let a = RgbImage::from_fn(w, h, |x, y| {
        let t = (x as f64 * 0.05 + y as f64 * 0.03).sin();
        Rgb([0.0, 2.0, 4.0].map(|p: f64| (128.0 + 100.0 * (t + p).sin() + rng.unit_f64() * 20.0) as u8))
    });
    let b = RgbImage::from_fn(w, h, |x, y| Rgb(a.get_pixel(x, y).0.map(|v| v.saturating_add((rng.below(30)) as u8))));
    (a, b)
}

/// Ours on one thread against NumPy in one process, then ours on N threads
/// against NumPy in N processes: equal threads on both sides, best of 3 each.
pub fn run(args: &BenchArgs) -> Result<()> {
    let threads = rayon::current_num_threads();
    let python = if args.no_peer { None } else { Some(python_with(&["pillow", "numpy"])?) };
    println!("{:<12} {:>6} {:>8} {:>12} {:>12} {:>8}", "case", "pairs", "threads", "ours (s)", "NumPy (s)", "ratio");
    for (w, h, n) in [(224u32, 224u32, 100usize), (2000, 1500, 10)] {
        let dir = std::env::temp_dir().join(format!("colorize-bench-qssim-{w}x{h}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let pairs: Vec<(RgbImage, RgbImage)> = (0..n).map(|i| pair(w, h, i as u64)).collect();
        for (i, (a, b)) in pairs.iter().enumerate() {
            a.save(dir.join(format!("{i:03}-a.png")))?;
            b.save(dir.join(format!("{i:03}-b.png")))?;
        }
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        // Best of 3 (a warm-up included): these machines are noisy.
        let time = |pool: Option<&rayon::ThreadPool>| {
            let mut best = (f64::INFINITY, f64::NAN);
            for _ in 0..3 {
                let start = Instant::now();
                let score = || pairs.par_iter().map(|(a, b)| qssim(a, b).unwrap_or(f64::NAN)).sum::<f64>();
                let sum = match pool {
                    Some(pool) => pool.install(score),
                    None => score(),
                };
                let seconds = start.elapsed().as_secs_f64();
                if seconds < best.0 {
                    best = (seconds, sum);
                }
            }
            best
        };
        let (ours_1, sum_1) = time(Some(&one_thread));
        let (ours_n, sum_n) = time(None);
        let peer = match &python {
            Some(python) => run_python(python, PEER, &[dir.display().to_string(), threads.to_string()])?,
            None => String::new(),
        };
        let fields: Vec<f64> = peer.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN)).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(f64::NAN);
        for (ours_sum, peer_sum) in [(sum_1, field(1)), (sum_n, field(3))] {
            if python.is_some() && (peer_sum - ours_sum).abs() > 1e-6 * n as f64 {
                println!("warning: the two implementations disagree: sums {ours_sum} vs {peer_sum}");
            }
        }
        for (t, ours_s, peer_s) in [(1, ours_1, field(0)), (threads, ours_n, field(2))] {
            // Without the peer (`--no-peer`), its columns read "-".
            let (peer_s, ratio) = if peer_s.is_finite() {
                (format!("{peer_s:.3}"), format!("{:.1}x", peer_s / ours_s))
            } else {
                ("-".to_string(), "-".to_string())
            };
            println!("{:<12} {:>6} {:>8} {:>12.3} {:>12} {:>8}", format!("{w}x{h}"), n, t, ours_s, peer_s, ratio);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
