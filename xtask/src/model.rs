//! Building a `Colorizer` from the command line's model flags.

use crate::flags::ModelArgs;
use crate::{absolute, project_root};
use anyhow::{Context, Result};
use colorize_model::weights::{embedded_head, resolve_trunk};
use colorize_model::{parse_device, Colorizer, ModelError};
use std::path::{Path, PathBuf};

/// The trunk file the flags (or the config's value) point at.
pub fn trunk_path(args: &ModelArgs, config_value: Option<&Path>) -> Result<PathBuf> {
    let flag = args.vgg_weights.as_deref().map(|p| if p.as_os_str() == "hub" { p.to_path_buf() } else { absolute(p) });
    let config =
        config_value.map(|p| if p.is_relative() && p.as_os_str() != "hub" { project_root().join(p) } else { p.into() });
    Ok(resolve_trunk(flag.or(config).as_deref())?)
}

/// A colorizer with a trained head: `--checkpoint`, else the embedded one.
pub fn load_colorizer(args: &ModelArgs, checkpoint: Option<&Path>) -> Result<Colorizer> {
    let device = parse_device(&args.device)?;
    let head = match checkpoint {
        Some(path) => absolute(path),
        None => embedded_head().ok_or(ModelError::NoEmbeddedHead)?,
    };
    let trunk = trunk_path(args, None)?;
    let mut colorizer =
        Colorizer::load(&trunk, &head, &device).with_context(|| format!("loading the colorizer {}", head.display()))?;
    if let Some(sigma) = args.chroma_smoothing {
        colorizer.set_chroma_smoothing(sigma).context("--chroma-smoothing")?;
    }
    if let Some(temperature) = args.temperature {
        colorizer.set_temperature(temperature).context("--temperature")?;
    }
    Ok(colorizer)
}

/// The side the model should see when none is given: the size its head was
/// trained at. For a checkpoint inside a run folder
/// (`<run>/checkpoints/<name>/head.safetensors`) that is the run's
/// `data.size`; for the embedded colorizer, its training size; else 224.
pub fn default_side(checkpoint: Option<&Path>) -> u32 {
    match checkpoint {
        None => colorize_model::weights::EMBEDDED_HEAD_SIDE,
        Some(head) => head
            .ancestors()
            .nth(3)
            .and_then(|run| colorize_train::run_config(run).ok())
            .map_or(224, |experiment| experiment.data.size.get()),
    }
}
