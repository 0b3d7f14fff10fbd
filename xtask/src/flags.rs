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
