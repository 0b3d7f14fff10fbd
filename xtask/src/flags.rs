//! The whole command line, one doc line per command and flag.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Automatic image colorization: preprocess, train, evaluate, colorize.")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Turn a folder of photographs into the grayscale + UV training cache.
    Preprocess(PreprocessArgs),
    /// Colorize photographs (files or folders; colour or gray) with a trained head.
    Colorize(ColorizeArgs),
}

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Experiment config (its [data] table says what to cache).
    #[arg(long, default_value = "configs/smoke.toml")]
    pub config: PathBuf,
    /// Dataset root, instead of the config's `data.source`.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Layout of the dataset root: ilsvrc, sun or folder.
    #[arg(long)]
    pub layout: Option<String>,
    /// Cache folder to write, instead of the config's `data.cache`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of images to cache (drawn at random with the config's seed).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Side of the cached squares, in pixels (a multiple of 4).
    #[arg(long)]
    pub size: Option<u32>,
    /// Worker threads (all cores by default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Continue an interrupted run, redoing only the missing shards.
    #[arg(long)]
    pub resume: bool,
}

/// Where the model's weights come from and where it runs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// VGG-16 trunk weights (safetensors, timm layout); `hub` for
    /// timm/vgg16.tv_in1k from the Hugging Face cache. Default: the embedded trunk.
    #[arg(long)]
    pub vgg_weights: Option<PathBuf>,
    /// cpu or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct ColorizeArgs {
    /// Pictures or folders of pictures (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder; outputs keep the inputs' names (and folders), as PNG.
    #[arg(long, default_value = "runs/colorized")]
    pub out: PathBuf,
    /// Trained head (safetensors). Default: the project's embedded colorizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Side of the square the model sees (a multiple of 4).
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Also write a JPEG beside each PNG.
    #[arg(long)]
    pub jpeg: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}
