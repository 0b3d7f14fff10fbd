//! Preprocessing throughput: this project, decode-only (the floor), and the
//! same steps in Python with Pillow + NumPy, on the same files and cores.
//! Ours and decode-only: the fastest of 3 runs each, alternating.

use super::{python_with, run_python};
use crate::flags::BenchArgs;
use anyhow::{bail, Result};
use colorize_core::Side;
use colorize_data::decode::load_rgb;
use colorize_data::source::list_images;
use colorize_data::{write_cache, PreprocessConfig, SourceLayout};
use rayon::prelude::*;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const PEER: &str = r#"
import sys, time
from multiprocessing import Pool
import numpy as np
from PIL import Image, ImageOps

S = int(sys.argv[2])

def planes(im):
    im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)).resize((S, S), Image.BILINEAR)
    x = np.asarray(im, dtype=np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = r * .299 + g * .587 + b * .114
    u = r * -.168736 + g * -.331264 + b * .5 + 128
    v = r * .5 + g * -.418688 + b * -.081312 + 128
    return np.clip(np.floor(np.stack([y, u, v]) + 0.5), 0, 255).astype(np.uint8).sum()

def full(path):
    try:
        return planes(Image.open(path))
    except Exception:
        return None

def drafted(path):
    try:
        im = Image.open(path)
        im.draft("RGB", (S, S))  # JPEG DCT scaling (1/2, 1/4, 1/8), both sides kept >= S
        return planes(im)
    except Exception:
        return None

files = [l.strip() for l in open(sys.argv[1]) if l.strip()]
result = []
for job in (full, drafted):
    start = time.time()
    with Pool(int(sys.argv[3])) as pool:
        done = sum(1 for r in pool.imap(job, files, chunksize=8) if r is not None)
    result += [done, time.time() - start]
print(*result)
"#;

pub fn run(args: &BenchArgs) -> Result<()> {
    let source = args.source.clone().unwrap_or_else(|| crate::project_root().join("../shared/datasets/ilsvrc-mini"));
    if !source.is_dir() {
        bail!("{} is not there: pass --source DIR (an ILSVRC-style folder)", source.display());
    }
    let side = Side::new(args.size.unwrap_or(224))?;
    let threads = rayon::current_num_threads();
    let files = list_images(&source, SourceLayout::Folder, "")?;
    println!("bench preprocess: {} files under {} at {side}x{side}, {threads} threads", files.len(), source.display());

    // Warm the page cache so that every contender reads from memory.
    files.par_iter().for_each(|f| drop(std::fs::read(source.join(f))));

    // Best of 3 on each side, alternating, so that the machine's drift
    // between minutes falls on both.
    let out = std::env::temp_dir().join(format!("colorize-bench-cache-{}", std::process::id()));
    let mut cfg = PreprocessConfig::new(&source, &out);
    cfg.size = side;
    cfg.keep_grayscale = true;
    let (mut decode_s, mut ours_s) = (f64::INFINITY, f64::INFINITY);
    let (mut decoded, mut summary) = (0, None);
    for _ in 0..3 {
        let start = Instant::now();
        decoded = files.par_iter().filter(|f| load_rgb(&source.join(f)).is_ok()).count();
        decode_s = decode_s.min(start.elapsed().as_secs_f64());

        let _ = std::fs::remove_dir_all(&out);
        let start = Instant::now();
        summary = Some(write_cache(&cfg, false, &AtomicBool::new(false), &|_| {})?);
        ours_s = ours_s.min(start.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&out);
    }
    let Some(summary) = summary else { bail!("no run was made") };

    let rate = |n: usize, s: f64| n as f64 / s;
    let ours = rate(summary.cached, ours_s);
    println!("{:<40} {:>8} {:>10} {:>12}", "", "images", "seconds", "images/s");
    println!("{:<40} {:>8} {:>10.2} {:>12.1}", "decode only (floor)", decoded, decode_s, rate(decoded, decode_s));
    println!("{:<40} {:>8} {:>10.2} {:>12.1}", "this project (cache written)", summary.cached, ours_s, ours);
    println!(
        "ratio vs decode only: {:.2}x the decode time",
        ours_s / decode_s * decoded as f64 / summary.cached as f64
    );
    println!("peak memory of this process: {}", crate::peak_memory());
    if args.no_peer {
        return Ok(());
    }

    let list = std::env::temp_dir().join(format!("colorize-bench-files-{}.txt", std::process::id()));
    let text: String = files.iter().map(|f| format!("{}\n", source.join(f).display())).collect();
    std::fs::write(&list, text)?;
    let python = python_with(&["pillow", "numpy"])?;
    let peer = run_python(&python, PEER, &[list.display().to_string(), side.to_string(), threads.to_string()])?;
    let fields: Vec<f64> = peer.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN)).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(f64::NAN);
    for (name, n, s) in [
        ("Pillow + NumPy (not written)", field(0), field(1)),
        ("Pillow + NumPy, JPEG draft (not written)", field(2), field(3)),
    ] {
        println!("{name:<40} {n:>8} {s:>10.2} {:>12.1}", n / s);
        println!("ratio vs {name}: {:.2}x faster", ours / (n / s));
    }
    Ok(())
}
