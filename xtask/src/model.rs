//! Building a `Colorizer` from the command line's model flags.

use crate::absolute;
use crate::flags::ModelArgs;
use anyhow::{Context, Result};
use colorize_model::provenance::HeadProvenance;
use colorize_model::weights::{embedded_head, resolve_trunk, trunk_of_name};
use colorize_model::{parse_device, Colorizer, ModelError, TrunkDtype};
use std::path::{Path, PathBuf};

/// The trunk file `--vgg-weights` points at (the embedded trunk without it).
pub fn trunk_path(args: &ModelArgs) -> Result<PathBuf> {
    let flag = args.vgg_weights.as_deref().map(|p| if p.as_os_str() == "hub" { p.to_path_buf() } else { absolute(p) });
    Ok(resolve_trunk(flag.as_deref())?)
}

/// A colorizer with a trained head: `--checkpoint`, else the embedded one.
/// It runs on the trunk its file records unless `--vgg-weights` names one
/// (another than its own is refused without `--other-trunk`).
pub fn load_colorizer(args: &ModelArgs, checkpoint: Option<&Path>) -> Result<Colorizer> {
    let device = parse_device(&args.device)?;
    let head = head_path(checkpoint)?;
    let recorded = HeadProvenance::of_file(&head)?.trunk;
    let trunk = match (&args.vgg_weights, recorded) {
        (None, Some(name)) => {
            trunk_of_name(&name).with_context(|| format!("the trunk {} records ({name})", head.display()))?
        }
        _ => trunk_path(args)?,
    };
    let mut colorizer = Colorizer::load_checked(&trunk, &head, &device, !args.other_trunk)
        .with_context(|| format!("loading the colorizer {}", head.display()))?;
    let dtype: TrunkDtype = serde_json::from_value(serde_json::Value::String(args.trunk_dtype.clone()))
        .with_context(|| format!("--trunk-dtype {}: expected f32, bf16 or f16", args.trunk_dtype))?;
    colorizer.set_trunk_dtype(dtype)?;
    if let Some(sigma) = args.chroma_smoothing {
        colorizer.set_chroma_smoothing(sigma).context("--chroma-smoothing")?;
    }
    if let Some(radius) = args.chroma_guide_radius {
        colorizer.set_chroma_guide_radius(radius).context("--chroma-guide-radius")?;
    }
    for member in &args.ensemble {
        let member = head_path(Some(member))?;
        colorizer
            .add_ensemble_head(&member, !args.other_trunk)
            .with_context(|| format!("--ensemble {}", member.display()))?;
    }
    if args.temperature.is_some() || args.undo_rebalance.is_some() {
        colorizer.set_bin_decoding(args.temperature, args.undo_rebalance)?;
    }
    Ok(colorizer)
}

/// The head file `--checkpoint` names: a head file itself, a checkpoint
/// folder (`<run>/checkpoints/step-…`, its `head.safetensors`), or a run
/// folder (its best checkpoint's head); the embedded head without it.
pub fn head_path(checkpoint: Option<&Path>) -> Result<PathBuf> {
    let Some(path) = checkpoint.map(absolute) else {
        return Ok(embedded_head().ok_or(ModelError::NoEmbeddedHead)?);
    };
    if !path.is_dir() {
        return Ok(path);
    }
    let inside = ["head.safetensors", "checkpoints/best/head.safetensors"];
    inside.iter().map(|file| path.join(file)).find(|head| head.is_file()).with_context(|| {
        format!(
            "--checkpoint {}: a folder, but neither a checkpoint (no {}) nor a run with a best checkpoint (no {})",
            path.display(),
            inside[0],
            inside[1]
        )
    })
}

/// The side the model should see when none is given: the size its head file
/// records (its training size, unless `retune --size` set another). Heads
/// saved before files recorded it: for a checkpoint inside a run folder
/// (`<run>/checkpoints/<name>/head.safetensors`) the run's `data.size`; for
/// the embedded colorizer, `EMBEDDED_HEAD_SIDE`; else 224.
pub fn default_side(checkpoint: Option<&Path>) -> u32 {
    let head = head_path(checkpoint).ok();
    let recorded = head.as_deref().and_then(|head| HeadProvenance::of_file(head).ok()?.input_side);
    recorded.unwrap_or_else(|| match checkpoint {
        None => colorize_model::weights::EMBEDDED_HEAD_SIDE,
        Some(_) => head
            .as_deref()
            .and_then(|head| head.ancestors().nth(3))
            .and_then(|run| colorize_train::run_config(run).ok())
            .map_or(224, |experiment| experiment.data.size.get()),
    })
}
