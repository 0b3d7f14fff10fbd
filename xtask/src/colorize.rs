//! `cargo xtask colorize`: predicted colour for people's own pictures.

use crate::flags::ColorizeArgs;
use crate::{absolute, flag_path, interrupt_flag, model, progress};
use anyhow::{bail, Context, Result};
use colorize_core::Side;
use colorize_data::decode::load_rgb;
use colorize_data::source::{list_images, SourceLayout};
use colorize_model::colorize_image;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// (input file, output path relative to --out, without extension).
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut jobs = Vec::new();
    for input in inputs {
        let input = absolute(input);
        if input.is_dir() {
            let base = PathBuf::from(input.file_name().unwrap_or_default());
            for rel in list_images(&input, SourceLayout::Folder, "")? {
                jobs.push((input.join(&rel), base.join(rel).with_extension("")));
            }
        } else if input.is_file() {
            jobs.push((input.clone(), PathBuf::from(input.file_stem().unwrap_or_default())));
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(jobs)
}

pub fn run(args: ColorizeArgs) -> Result<()> {
    let side =
        Side::new(args.size.unwrap_or_else(|| model::default_side(args.checkpoint.as_deref()))).context("--size")?;
    let colorizer = model::load_colorizer(&args.model, args.checkpoint.as_deref())?;
    let jobs = expand_inputs(&args.inputs)?;
    let out = flag_path(args.out.as_deref(), "runs/colorized");
    println!("colorize: {} pictures at {side}x{side} -> {}", jobs.len(), out.display());
    let bar = progress::bar(jobs.len() as u64, "pictures");
    let stop = interrupt_flag();
    let mut failed = Vec::new();
    for (input, name) in &jobs {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Err(err) = colorize_one(&colorizer, input, &out.join(name), side, args.jpeg) {
            progress::note(&bar, format!("skipped {}: {err:#}", input.display()));
            failed.push(input);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("wrote {} pictures to {}", jobs.len() - failed.len(), out.display());
    if !failed.is_empty() {
        bail!("{} of {} pictures could not be colorized (listed above)", failed.len(), jobs.len());
    }
    Ok(())
}

fn colorize_one(
    colorizer: &colorize_model::Colorizer,
    input: &Path,
    stem: &Path,
    side: Side,
    jpeg: bool,
) -> Result<()> {
    let decoded = load_rgb(input)?;
    let output = colorize_image(colorizer, &decoded.rgb, side)?;
    if let Some(parent) = stem.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let png = stem.with_extension("png");
    output.save(&png).with_context(|| format!("writing {}", png.display()))?;
    if jpeg {
        let path = stem.with_extension("jpg");
        output.save(&path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
