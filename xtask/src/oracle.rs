//! `cargo xtask oracle`: copies of a colorizer's outputs with the truth's
//! hue or chroma magnitude put in (`colorize_eval::oracle`), scored with
//! `eval --pred` to measure which of the two limits it.

use crate::flags::{OracleArgs, OracleTake};
use crate::{absolute, progress};
use anyhow::{bail, Context, Result};
use colorize_data::decode::load_rgb;
use colorize_eval::oracle::{take_from_truth, Take};
use colorize_eval::score::pair_folders;
use rayon::prelude::*;
use std::path::Path;

pub fn run(args: OracleArgs) -> Result<()> {
    if !(args.blur.is_finite() && args.blur >= 0.0) {
        bail!("--blur {}: expected a Gaussian sigma of 0 or more pixels", args.blur);
    }
    let (pred, truth, out) = (absolute(&args.pred), absolute(&args.truth), absolute(&args.out));
    let (items, unmatched) = pair_folders(&pred, &truth).context("pairing --pred with --truth")?;
    if items.is_empty() {
        bail!("no prediction in {} has a truth of the same name in {}", pred.display(), truth.display());
    }
    let (take, taken) = match args.take {
        OracleTake::Hue => (Take::Hue, "hue"),
        OracleTake::Magnitude => (Take::Magnitude, "chroma magnitude"),
    };
    println!(
        "oracle: {} predictions with the truth's {taken} (its chroma blurred by σ {} px) -> {}",
        items.len(),
        args.blur,
        out.display()
    );
    let bar = progress::bar(items.len() as u64, "pictures");
    let failed: Vec<String> = items
        .par_iter()
        .filter_map(|item| {
            let pred = item.pred.as_deref()?;
            let written = write_one(pred, &item.truth, &out.join(&item.name).with_extension("png"), take, args.blur);
            bar.inc(1);
            written.err().map(|err| format!("{}: {err:#}", item.name))
        })
        .collect();
    bar.finish_and_clear();
    for line in unmatched.iter().chain(&failed) {
        println!("  skipped {line}");
    }
    println!("wrote {} pictures to {}", items.len() - failed.len(), out.display());
    if !failed.is_empty() {
        bail!("{} of {} pictures could not be made (listed above)", failed.len(), items.len());
    }
    Ok(())
}

fn write_one(pred: &Path, truth: &Path, out: &Path, take: Take, blur: f64) -> Result<()> {
    let load = |path: &Path| load_rgb(path).with_context(|| path.display().to_string()).map(|d| d.rgb);
    let copy = take_from_truth(&load(pred)?, &load(truth)?, take, blur as f32)
        .with_context(|| format!("{} against {}", pred.display(), truth.display()))?;
    if let Some(folder) = out.parent() {
        std::fs::create_dir_all(folder).with_context(|| folder.display().to_string())?;
    }
    copy.save(out).with_context(|| format!("writing {}", out.display()))
}
