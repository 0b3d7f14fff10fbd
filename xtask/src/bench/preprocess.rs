//! Preprocessing throughput: this project, decode-only (the floor), and the
//! same steps in Python with Pillow + NumPy, on the same files and cores.

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
import sys, time, os
from multiprocessing import Pool
import numpy as np
from PIL import Image, ImageOps

S = int(sys.argv[2])

def one(path):
    try:
        im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    except Exception:
        return None
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)).resize((S, S), Image.BILINEAR)
    x = np.asarray(im, dtype=np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = r * .299 + g * .587 + b * .114
    u = r * -.168736 + g * -.331264 + b * .5 + 128
    v = r * .5 + g * -.418688 + b * -.081312 + 128
    planes = np.clip(np.floor(np.stack([y, u, v]) + 0.5), 0, 255).astype(np.uint8)
    return planes.sum()

files = [l.strip() for l in open(sys.argv[1]) if l.strip()]
start = time.time()
with Pool(int(sys.argv[3])) as pool:
    done = sum(1 for r in pool.imap(one, files, chunksize=8) if r is not None)
print(done, time.time() - start)
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

    let start = Instant::now();
    let decoded = files.par_iter().filter(|f| load_rgb(&source.join(f)).is_ok()).count();
    let decode_s = start.elapsed().as_secs_f64();

    let out = std::env::temp_dir().join(format!("colorize-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cfg = PreprocessConfig::new(&source, &out);
    cfg.size = side;
    cfg.keep_grayscale = true;
    let start = Instant::now();
    let summary = write_cache(&cfg, false, &AtomicBool::new(false), &|_| {})?;
    let ours_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);

    let list = std::env::temp_dir().join(format!("colorize-bench-files-{}.txt", std::process::id()));
    let text: String = files.iter().map(|f| format!("{}\n", source.join(f).display())).collect();
    std::fs::write(&list, text)?;
    let python = python_with(&["pillow", "numpy"])?;
    let peer = run_python(&python, PEER, &[list.display().to_string(), side.to_string(), threads.to_string()])?;
    let mut fields = peer.split_whitespace();
    let (peer_n, peer_s): (usize, f64) =
        (fields.next().unwrap_or("0").parse().unwrap_or(0), fields.next().unwrap_or("nan").parse().unwrap_or(f64::NAN));

    let rate = |n: usize, s: f64| n as f64 / s;
    let ours = rate(summary.cached, ours_s);
    println!("{:<34} {:>8} {:>10} {:>12}", "", "images", "seconds", "images/s");
    println!("{:<34} {:>8} {:>10.2} {:>12.1}", "decode only (floor)", decoded, decode_s, rate(decoded, decode_s));
    println!("{:<34} {:>8} {:>10.2} {:>12.1}", "this project (cache written)", summary.cached, ours_s, ours);
    println!("{:<34} {:>8} {:>10.2} {:>12.1}", "Pillow + NumPy (not written)", peer_n, peer_s, rate(peer_n, peer_s));
    println!("ratio vs Pillow + NumPy: {:.2}x faster", ours / rate(peer_n, peer_s));
    println!(
        "ratio vs decode only: {:.2}x the decode time",
        ours_s / decode_s * decoded as f64 / summary.cached as f64
    );
    Ok(())
}
