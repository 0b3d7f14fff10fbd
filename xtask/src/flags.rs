//! The whole command line, one doc line per command and flag.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Automatic image colorization: preprocess, train, evaluate, colorize.")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
    /// Run every op through its device-generic implementation even on the
    /// CPU (the path a GPU takes; slower): for checking that path here.
    #[arg(long, global = true)]
    pub reference_kernels: bool,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would only add noise
pub enum Command {
    /// Turn a folder of photographs into the grayscale + UV training cache.
    Preprocess(PreprocessArgs),
    /// Colorize photographs (files or folders; colour or gray) with a trained head.
    Colorize(ColorizeArgs),
    /// Score colorizations: a folder of predictions against the originals,
    /// or a model (and baselines) on a dataset.
    Eval(EvalArgs),
    /// Train the head on a preprocessed cache (TensorBoard logs and checkpoints under runs/).
    Train(TrainArgs),
    /// The whole pipeline on the embedded sample photos, offline, in minutes:
    /// preprocess, colorize with the embedded colorizer, score, train briefly.
    ///
    /// For your own data: `preprocess --config configs/paper.toml --source ILSVRC2012`
    /// (or `--layout sun|folder --source DIR`), `train --config …`,
    /// `eval --dataset sun --root SUN397 --checkpoint …`, `colorize PICTURES… --checkpoint …`.
    Demo(DemoArgs),
    /// Benchmarks, side by side with a Python peer in a bench-only venv.
    Bench(BenchArgs),
    /// The run folders side by side: steps, speed, best validation scores,
    /// state, and the config keys that differ between them.
    Runs(RunsArgs),
    /// The checks for a GPU machine, from binaries built elsewhere: the
    /// device path against the CPU, a 200-step training run at 224 with its
    /// throughput and peak memory, and `bench model` against PyTorch there.
    GpuCheck(GpuCheckArgs),
    /// Write a copy of a trained head with other prediction settings
    /// (--size, --chroma-smoothing, --chroma-guide-radius, --temperature,
    /// --undo-rebalance), chosen on held-out pictures with `eval`: the
    /// weights are unchanged.
    Retune(RetuneArgs),
    /// Copies of a colorizer's outputs with the truth's hue (or chroma
    /// magnitude) put in, to score with `eval --pred`: which of the two
    /// limits it. The gray is the truth's.
    Oracle(OracleArgs),
}

#[derive(Args, Debug)]
pub struct OracleArgs {
    /// Folder of predictions (any colorizer's outputs), paired with --truth by relative path.
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of the original colour pictures.
    #[arg(long)]
    pub truth: PathBuf,
    /// Where the copies go (PNG, the truth's relative paths).
    #[arg(long)]
    pub out: PathBuf,
    /// What to take from the truth: hue (its hue angle, the prediction's
    /// chroma magnitude) or magnitude (its magnitude, the prediction's hue).
    #[arg(long, value_enum)]
    pub take: OracleTake,
    /// Blur of the truth's chroma first (Gaussian sigma, pixels of the
    /// pictures), so that a region's colour is taken, not its pixel noise.
    #[arg(long, default_value_t = 0.0)]
    pub blur: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OracleTake {
    Hue,
    Magnitude,
}

#[derive(Args, Debug)]
pub struct RetuneArgs {
    /// The head to copy: a head file, a checkpoint folder, or a run folder
    /// (its best checkpoint). Default: the project's embedded colorizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Where the retuned head goes.
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the square the model sees when it predicts (a multiple of 4),
    /// recorded in the head for `eval`, `colorize` and `demo`, instead of the
    /// side it was trained at.
    #[arg(long)]
    pub size: Option<u32>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    /// Folder of run folders [default: runs/]
    pub dir: Option<PathBuf>,
    /// Print JSON (one object per run) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Experiment config (its [data] table says what to cache) [default: configs/smoke.toml]
    #[arg(long)]
    pub config: Option<PathBuf>,
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
    /// The frozen trunk's precision: f32, bf16 or f16 (on a GPU; on the CPU
    /// lower precisions are emulated and only slower).
    #[arg(long, value_name = "DTYPE", default_value = "f32")]
    pub trunk_dtype: String,
    /// Blur of the predicted U and V (Gaussian sigma, in pixels of the
    /// model's input), instead of the head's own `chroma_smoothing`; 0: none.
    #[arg(long, value_name = "SIGMA")]
    pub chroma_smoothing: Option<f64>,
    /// Radius (in pixels of the model's input) of the guided filter that
    /// aligns the predicted chroma with the picture's gray edges, instead of
    /// the head's own `chroma_guide_radius`; 0: none.
    #[arg(long, value_name = "R")]
    pub chroma_guide_radius: Option<f64>,
    /// For a head that predicts colour bins: the annealed mean's temperature,
    /// from the mode (near 0) to the mean (1), instead of the head's own.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// For a bins head trained with rebalancing: how much of it decoding
    /// takes back, 0 (the rebalanced, more colourful) to 1 (the head's
    /// estimate of the true colours), instead of the head's own.
    #[arg(long, value_name = "A")]
    pub undo_rebalance: Option<f64>,
    /// Run a head on another trunk than the one its file records (by
    /// default a head runs on its own trunk, and --vgg-weights naming
    /// another is refused).
    #[arg(long)]
    pub other_trunk: bool,
    /// Further trained heads (files, checkpoint or run folders) that predict
    /// with the first one as an ensemble: their distributions over the
    /// colour bins are averaged (log-probabilities) and decoded with the
    /// first head's settings. Bins heads only, on the same bin grid.
    #[arg(long, value_name = "HEAD")]
    pub ensemble: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ColorizeArgs {
    /// Pictures or folders of pictures (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder; outputs keep the inputs' names (and folders), as PNG [default: runs/colorized]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trained head: a head file, a checkpoint folder, or a run folder (its
    /// best checkpoint). Default: the project's embedded colorizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Side of the square the model sees (a multiple of 4). Default: the
    /// size the head file records (its training size, unless retuned with
    /// --size), else its run's config, else 224.
    #[arg(long)]
    pub size: Option<u32>,
    /// Also write a JPEG beside each PNG.
    #[arg(long)]
    pub jpeg: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Measures: a comma list of qssim, psnr, ssim, colorfulness, auc, or all.
    #[arg(long, default_value = "qssim")]
    pub metric: String,
    /// Folder of predictions (any colorizer's outputs), paired with --truth by relative path.
    #[arg(long, requires = "truth", conflicts_with_all = ["dataset", "checkpoint"])]
    pub pred: Option<PathBuf>,
    /// Folder of the original colour pictures, for --pred.
    #[arg(long, requires = "pred")]
    pub truth: Option<PathBuf>,
    /// Dataset to colorize and score: sun, ilsvrc or folder (needs --root).
    #[arg(long, requires = "root")]
    pub dataset: Option<String>,
    /// Root of the dataset.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// SUN397 partition list (Testing_01 … Testing_10, Training_NN), or `all`.
    #[arg(long, default_value = "Testing_01")]
    pub split: String,
    /// Score at most N images (a seeded random draw of the dataset).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of that draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trained head to evaluate: a head file, a checkpoint folder, or a run
    /// folder (its best checkpoint). Default: the embedded colorizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Side of the square the model sees, and of the default comparison.
    /// Default: the size the head file records (its training size, unless
    /// retuned with --size), else its run's config, else 224.
    #[arg(long)]
    pub size: Option<u32>,
    /// How truths are squared at the model's size: center or squash.
    #[arg(long, default_value = "center")]
    pub crop: String,
    /// Compare at the original size (prediction's chroma upsampled, original Y).
    #[arg(long)]
    pub full_res: bool,
    /// Baselines scored on the same images: gray, mean-chroma (comma list).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Training cache whose mean chroma the mean-chroma baseline uses (128 otherwise).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the per-image rows as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write each image's QSSIM map as a gray PNG into this folder.
    #[arg(long)]
    pub qssim_maps: Option<PathBuf>,
    /// Write an HTML report into this folder (index.html, pictures in
    /// images/): the summary, a histogram, every picture worst first.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config [default: configs/smoke.toml]
    #[arg(long, conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (its config.toml is used).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Run folder to create, instead of runs/<name>-<UTC time>.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// cpu or cuda:N, instead of the config's `train.device`.
    #[arg(long)]
    pub device: Option<String>,
    /// Stop after this many steps, instead of the config's length.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Preprocess the config's cache first when it is missing.
    #[arg(long)]
    pub preprocess: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes (cache, strips, reports, the training run) [default: runs/demo]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A folder of pictures to use instead of the embedded samples [default: datasets/samples]
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// A reduced run for tests: fewer training steps.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub target: BenchTarget,
    /// Images to preprocess (default: ../shared/datasets/ilsvrc-mini).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Side of the squares (default 224).
    #[arg(long)]
    pub size: Option<u32>,
    /// Measure this project only (`model`: PyTorch is a multi-gigabyte install).
    #[arg(long)]
    pub no_peer: bool,
    /// `model`: a table per convolution layer (time and GFLOP/s, both
    /// sides) at 224, batch 1, instead of the whole network's rows.
    #[arg(long)]
    pub layers: bool,
    /// `model`: the device, cpu or cuda:N (PyTorch runs on the same one).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BenchTarget {
    /// Preprocessing images/s: ours, decode-only, Pillow + NumPy.
    Preprocess,
    /// QSSIM: ours against NumPy, 100 pairs at 224 and 10 at 2000x1500.
    Qssim,
    /// The network: forward and training step images/s, GFLOP/s and peak memory, ours and PyTorch's.
    Model,
}

#[derive(Args, Debug)]
pub struct GpuCheckArgs {
    /// The device to check against the CPU: cuda:N (or cpu, to run the
    /// whole check here).
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// Training steps of the throughput run.
    #[arg(long, default_value_t = 200)]
    pub steps: u64,
    /// Side of the throughput run's pictures.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Batch size of the throughput run.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Where the throughput run's cache and run folder go (default: runs/gpu-check).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the PyTorch comparison (`bench model`).
    #[arg(long)]
    pub no_peer: bool,
}
