//! Experiment configs: one TOML file per experiment, every choice in it.
//!
//! ```toml
//! name = "paper"          # optional; the file's stem otherwise
//! [data]                  # the preprocessing cache (colorize_data::PreprocessConfig)
//! [model]                 # trunk weights and head shape (colorize_model::ModelConfig)
//! [train]                 # loss, optimiser, schedule, batches, checkpoints, logs
//! [validation]            # optional: a held-out folder scored every N steps
//! ```
//!
//! Unknown keys and wrong types are refused by serde (`deny_unknown_fields`)
//! with the `toml` crate's line and column; out-of-range values are refused
//! by `validate` with the key's name and its line.

use crate::bin_loss::BinLossConfig;
use colorize_core::Side;
use colorize_data::{PreprocessConfig, SourceLayout};
use colorize_eval::Metric;
use colorize_model::{HeadOutput, ModelConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    #[serde(default)]
    pub name: String,
    pub data: PreprocessConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub validation: Option<ValidationConfig>,
}

/// The training loss on the head's logits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Per-channel binary cross-entropy of (U, V) / 255 (method.md), from logits.
    #[default]
    Bce,
    /// Euclidean: squared error of sigmoid(logits).
    L2,
    /// Cross-entropy over colour bins with soft targets (`bin_loss`); the
    /// head then predicts bins (`model.head.output`).
    Bins,
}

impl Loss {
    /// The head output the loss trains.
    pub fn head_output(self) -> HeadOutput {
        match self {
            Loss::Bce | Loss::L2 => HeadOutput::Uv,
            Loss::Bins => HeadOutput::Bins,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// `cpu` or `cuda:N`.
    #[serde(default = "d_device")]
    pub device: String,
    #[serde(default)]
    pub loss: Loss,
    /// `[train.bins]`: the soft encoding and rebalancing of `loss = "bins"`.
    #[serde(default)]
    pub bins: BinLossConfig,
    /// Weight λ of a QSSIM term added to the loss: L + λ (1 − QSSIM), QSSIM
    /// of the prediction as `colorize` shows it (chroma smoothed, joined to
    /// Y) against the truth, per batch (`qssim_loss`). 0: the loss alone
    /// (the method). Needs every pixel (no `sampled_pixels`).
    #[serde(default)]
    pub qssim_weight: f64,
    #[serde(default = "d_batch_size")]
    pub batch_size: usize,
    /// Length of the run in epochs over the cache (`max_steps` wins when set).
    #[serde(default = "d_epochs")]
    pub epochs: u64,
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Pixels per image the loss is taken at, drawn at random each step
    /// (Larsson et al. 2016). The head then runs on hypercolumn windows
    /// around those pixels only (the receptive field: 5x5 for two 3x3
    /// layers), not on the whole image. Absent: every pixel (the method).
    #[serde(default)]
    pub sampled_pixels: Option<usize>,
    /// Train on a random square of this side from each cached picture,
    /// drawn afresh each step (not in the method): the head learns at the
    /// cache's scale, the size it predicts at, for the trunk's cost at the
    /// crop's. Absent: the whole picture.
    #[serde(default)]
    pub random_crop: Option<Side>,
    /// Mirror a random half of each batch left-right (the source is silent;
    /// off is the method).
    #[serde(default)]
    pub flip: bool,
    /// Start from this saved head instead of a fresh one (fine-tuning): its
    /// weights, standardisation and colour-bin prior and weights; the
    /// config's prediction settings replace its own. Its shape must be the
    /// config's and its trunk the run's.
    #[serde(default)]
    pub init_head: Option<PathBuf>,
    /// Seed of the head's initialisation and of the batch order.
    #[serde(default = "d_seed")]
    pub seed: u64,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Steps between log lines (loss, learning rate, images/s).
    #[serde(default = "d_log_every")]
    pub log_every: u64,
    /// Steps between checkpoints (one is also written at the end and on Ctrl-C).
    #[serde(default = "d_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Checkpoints kept besides the best.
    #[serde(default = "d_keep_last")]
    pub keep_last: usize,
}

/// `[train.optimizer]`: SGD (the method's) or Adam, and their terms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    #[serde(default)]
    pub kind: OptimizerKind,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    /// SGD's momentum.
    #[serde(default)]
    pub momentum: f64,
    /// Adam's decay rates of the gradient's first and second moments.
    #[serde(default = "d_betas")]
    pub betas: [f64; 2],
    /// Adam's ε, added to the second moment's square root.
    #[serde(default = "d_eps")]
    pub eps: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with momentum (the method's).
    #[default]
    Sgd,
    /// Adam (Kingma and Ba 2015): a step per weight scaled by the gradient's
    /// own running size, so that layers of very different fan-in (the
    /// head's first layer reads 451 x 9 inputs, its last 144) learn at one
    /// learning rate.
    Adam,
}

/// Learning rate x `factor` every `every_epochs` epochs, or every
/// `every_steps` steps when that is set (for short runs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default = "d_factor")]
    pub factor: f64,
    #[serde(default = "d_every_epochs")]
    pub every_epochs: u64,
    #[serde(default)]
    pub every_steps: Option<u64>,
}

/// A held-out folder (or dataset) scored every `every` steps with the eval
/// crate's measures, at the cache's size, with the gray baseline beside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    pub source: PathBuf,
    #[serde(default)]
    pub layout: SourceLayout,
    #[serde(default = "d_split")]
    pub split: String,
    /// At most this many images (the first of a seeded draw).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "d_validate_every")]
    pub every: u64,
    #[serde(default = "d_metrics")]
    pub metrics: Vec<Metric>,
    /// Pictures shown in TensorBoard (gray | prediction | truth).
    #[serde(default = "d_images")]
    pub images: usize,
}

fn d_device() -> String {
    "cpu".into()
}
fn d_batch_size() -> usize {
    8
}
fn d_epochs() -> u64 {
    1
}
fn d_seed() -> u64 {
    1
}
fn d_log_every() -> u64 {
    10
}
fn d_checkpoint_every() -> u64 {
    500
}
fn d_keep_last() -> usize {
    3
}
fn d_lr() -> f64 {
    0.08
}
fn d_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn d_eps() -> f64 {
    1e-8
}
fn d_weight_decay() -> f64 {
    8e-7
}
fn d_factor() -> f64 {
    0.5
}
fn d_every_epochs() -> u64 {
    300
}
fn d_split() -> String {
    "Testing_01".into()
}
fn d_validate_every() -> u64 {
    500
}
fn d_metrics() -> Vec<Metric> {
    vec![Metric::Qssim, Metric::Psnr]
}
fn d_images() -> usize {
    4
}

impl Default for TrainConfig {
    fn default() -> Self {
        // tidy: checked by every test that parses a config.
        toml::from_str("").expect("every train key has a default")
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: d_lr(),
            weight_decay: d_weight_decay(),
            momentum: 0.0,
            betas: d_betas(),
            eps: d_eps(),
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig { factor: d_factor(), every_epochs: d_every_epochs(), every_steps: None }
    }
}

type InvalidKey = Option<(&'static str, String)>;

fn out_of_range(key: &'static str, message: String) -> InvalidKey {
    Some((key, message))
}

impl TrainConfig {
    /// The first `train.*` key out of range (the QSSIM term's checks need
    /// the pictures' side).
    fn invalid_key(&self, side: Side) -> InvalidKey {
        self.invalid_count_or_rate()
            .or_else(|| self.invalid_optimizer())
            .or_else(|| self.invalid_crop(side))
            .or_else(|| self.invalid_sampling(self.trained_side(side)))
            .or_else(|| self.bins.validate().err())
            .or_else(|| self.invalid_qssim_term(self.trained_side(side)))
    }

    /// The side of the pictures a step trains on: the crop's, or the
    /// cached pictures' (`cached`).
    pub fn trained_side(&self, cached: Side) -> Side {
        self.random_crop.unwrap_or(cached)
    }

    fn invalid_crop(&self, cached: Side) -> InvalidKey {
        let crop = self.random_crop?;
        (crop.get() > cached.get())
            .then(|| ("train.random_crop", format!("{crop} is larger than the cached pictures (data.size = {cached})")))
    }

    fn invalid_count_or_rate(&self) -> InvalidKey {
        let positive = [
            ("train.batch_size", self.batch_size as f64),
            ("train.epochs", self.epochs as f64),
            ("train.log_every", self.log_every as f64),
            ("train.checkpoint_every", self.checkpoint_every as f64),
            ("train.optimizer.lr", self.optimizer.lr),
            ("train.schedule.every_epochs", self.schedule.every_epochs as f64),
        ];
        for (key, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return out_of_range(key, format!("{value} is out of range: must be positive"));
            }
        }
        if self.max_steps == Some(0) {
            return out_of_range("train.max_steps", "0 is out of range: must be positive".into());
        }
        if self.schedule.every_steps == Some(0) {
            return out_of_range("train.schedule.every_steps", "0 is out of range: must be positive".into());
        }
        if self.keep_last == 0 {
            return out_of_range("train.keep_last", "0 is out of range: keep at least the last checkpoint".into());
        }
        None
    }

    fn invalid_optimizer(&self) -> InvalidKey {
        let (momentum, decay, factor) = (self.optimizer.momentum, self.optimizer.weight_decay, self.schedule.factor);
        if !(0.0..1.0).contains(&momentum) {
            return out_of_range("train.optimizer.momentum", format!("{momentum} is out of range: 0 <= momentum < 1"));
        }
        if !(decay >= 0.0 && decay.is_finite()) {
            return out_of_range("train.optimizer.weight_decay", format!("{decay} is out of range: must be >= 0"));
        }
        if self.optimizer.kind == OptimizerKind::Adam && momentum != 0.0 {
            return out_of_range("train.optimizer.momentum", "is SGD's: Adam's are train.optimizer.betas".into());
        }
        if let Some(beta) = self.optimizer.betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
            return out_of_range("train.optimizer.betas", format!("{beta} is out of range: 0 <= beta < 1"));
        }
        let eps = self.optimizer.eps;
        if !(eps > 0.0 && eps.is_finite()) {
            return out_of_range("train.optimizer.eps", format!("{eps} is out of range: must be positive"));
        }
        if !(factor > 0.0 && factor <= 1.0) {
            return out_of_range("train.schedule.factor", format!("{factor} is out of range: 0 < factor <= 1"));
        }
        None
    }

    fn invalid_sampling(&self, side: Side) -> InvalidKey {
        let p = self.sampled_pixels?;
        let area = side.area();
        (p == 0 || p > area)
            .then(|| ("train.sampled_pixels", format!("{p} is out of range: 1 to the image's {area} pixels")))
    }

    fn invalid_qssim_term(&self, side: Side) -> InvalidKey {
        let (key, weight) = ("train.qssim_weight", self.qssim_weight);
        if !(weight >= 0.0 && weight.is_finite()) {
            return out_of_range(key, format!("{weight} is out of range: must be >= 0"));
        }
        if weight == 0.0 {
            return None;
        }
        if self.loss == Loss::Bins {
            return out_of_range(key, "the QSSIM term needs (U, V) outputs, not train.loss = \"bins\"".into());
        }
        if self.sampled_pixels.is_some() {
            return out_of_range(key, "QSSIM needs whole pictures: remove train.sampled_pixels to use it".into());
        }
        if side.get() >= 384 {
            let why = "QSSIM's downsampling is not in the loss";
            return out_of_range(key, format!("needs data.size below 384 ({why}), not {side}"));
        }
        None
    }
}

impl ValidationConfig {
    fn invalid_key(&self) -> InvalidKey {
        if self.every == 0 {
            return out_of_range("validation.every", "0 is out of range: must be positive".into());
        }
        if self.metrics.is_empty() {
            return out_of_range("validation.metrics", "name at least one measure".into());
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {error}", .path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config {}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Experiment {
    /// Reads, checks and resolves a config file. `root` is the folder that
    /// relative paths in it are relative to.
    pub fn load(path: &Path, root: &Path) -> Result<Experiment, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.into(), error })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Experiment::parse(&text, &stem, root).map_err(|message| ConfigError::Invalid { path: path.into(), message })
    }

    /// Parses config text; `default_name` names the experiment when the text does not.
    pub fn parse(text: &str, default_name: &str, root: &Path) -> Result<Experiment, String> {
        let mut experiment: Experiment = toml::from_str(text).map_err(|e| e.to_string())?;
        if experiment.name.is_empty() {
            experiment.name = default_name.to_string();
        }
        // The head's output follows the loss; a file that names another is refused.
        let head = &mut experiment.model.head;
        if head.output != HeadOutput::default() && head.output != experiment.train.loss.head_output() {
            let key = "model.head.output";
            let message = format!(
                "{:?} does not fit train.loss = {:?}; it follows train.loss",
                head.output, experiment.train.loss
            );
            return Err(match line_of(text, key) {
                Some(line) => format!("{key} (line {line}): {message}"),
                None => format!("{key}: {message}"),
            });
        }
        head.output = experiment.train.loss.head_output();
        experiment.validate().map_err(|(key, message)| match line_of(text, &key) {
            Some(line) => format!("{key} (line {line}): {message}"),
            None => format!("{key}: {message}"),
        })?;
        experiment.resolve_paths(root);
        Ok(experiment)
    }

    /// Range checks; the error names the key (`table.key`).
    /// The first key whose value is out of range, with why.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        if let Some((key, message)) = self.data.invalid_key() {
            return bad(key, message);
        }
        if let Err(message) = self.model.head.validate() {
            // The head's messages read "model.head.<key> = <value>: <why>".
            return match message.split_once(" = ") {
                Some((key, rest)) => bad(key, rest.to_string()),
                None => bad("model.head", message),
            };
        }
        if let Some((key, message)) = self.train.invalid_key(self.data.size) {
            return bad(key, message);
        }
        if let Some((key, message)) = self.validation.as_ref().and_then(ValidationConfig::invalid_key) {
            return bad(key, message);
        }
        Ok(())
    }

    fn resolve_paths(&mut self, root: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && p.as_os_str() != "hub" {
                *p = root.join(&*p);
            }
        };
        resolve(&mut self.data.source);
        resolve(&mut self.data.cache);
        if let Some(trunk) = &mut self.model.trunk_weights {
            resolve(trunk);
        }
        if let Some(v) = &mut self.validation {
            resolve(&mut v.source);
        }
        if let Some(head) = &mut self.train.init_head {
            resolve(head);
        }
    }

    /// The resolved config as TOML (what a run folder keeps).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// The line (1-based) where the dotted key `table.key` is set in the text,
/// if it is: found in toml's own parse, so keys set as dotted keys or in
/// inline tables are found too.
fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut keys = dotted.split('.').peekable();
    while let Some(key) = keys.next() {
        let (name, value) = table.iter().find(|(name, _)| name.get_ref().as_ref() == key)?;
        if keys.peek().is_none() {
            return Some(text[..name.span().start].matches('\n').count() + 1);
        }
        table = value.get_ref().as_table()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[data]\nsource = \"photos\"\ncache = \"runs/cache\"\n";

    #[test]
    fn defaults_fill_in_and_paths_resolve_against_the_root() {
        let e = Experiment::parse(MINIMAL, "smoke", Path::new("/project")).unwrap();
        assert_eq!(e.name, "smoke");
        assert_eq!(e.data.source, Path::new("/project/photos"));
        assert_eq!(e.data.size.get(), 224);
        assert_eq!(e.train.optimizer, OptimizerConfig { lr: 0.08, weight_decay: 8e-7, ..Default::default() });
        assert_eq!(e.train.schedule.factor, 0.5);
        assert_eq!(e.train.schedule.every_epochs, 300);
        assert_eq!(e.train.loss, Loss::Bce);
        let again = Experiment::parse(&e.to_toml().unwrap(), "x", Path::new("/elsewhere")).unwrap();
        assert_eq!(again.data, e.data, "absolute paths survive a round trip");
        assert_eq!(again.train, e.train);
    }

    #[test]
    fn adam_is_chosen_by_kind_and_refuses_sgd_terms_and_bad_betas() {
        let adam = format!("{MINIMAL}[train.optimizer]\nkind = \"adam\"\nlr = 0.0003\n");
        let e = Experiment::parse(&adam, "x", Path::new("/")).unwrap();
        assert_eq!(e.train.optimizer.kind, OptimizerKind::Adam);
        assert_eq!(e.train.optimizer.betas, [0.9, 0.999]);
        let with_momentum = format!("{adam}momentum = 0.9\n");
        let err = Experiment::parse(&with_momentum, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.optimizer.momentum") && err.contains("betas"), "{err}");
        let bad_beta = format!("{adam}betas = [0.9, 1.0]\n");
        let err = Experiment::parse(&bad_beta, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.optimizer.betas") && err.contains("line 7"), "{err}");
        let bad_kind = format!("{MINIMAL}[train.optimizer]\nkind = \"lbfgs\"\n");
        let err = Experiment::parse(&bad_kind, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("lbfgs"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name_and_line() {
        let text = format!("{MINIMAL}colour_space = \"lab\"\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("colour_space") && err.contains("line 4"), "{err}");
        let text = format!("{MINIMAL}[train.optimizer]\nlr = 0.1\nnesterov = true\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("nesterov") && err.contains("line 6"), "{err}");
    }

    #[test]
    fn wrong_types_and_out_of_range_values_are_refused_with_key_and_line() {
        let err = Experiment::parse(&format!("{MINIMAL}size = \"big\"\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        let err = Experiment::parse(&format!("{MINIMAL}size = 30\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("30") && err.contains("multiple of 4") && err.contains("line 4"), "{err}");
        let err = Experiment::parse(&format!("{MINIMAL}shard_size = 0\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("data.shard_size") && err.contains("line 4"), "{err}");
        let err =
            Experiment::parse(&format!("{MINIMAL}repeat = {{ \"scenes\" = 0 }}\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("data.repeat") && err.contains("line 4") && err.contains("1 to 1000"), "{err}");
        let text = format!("{MINIMAL}[train]\nbatch_size = 2\n[train.optimizer]\nmomentum = 1.5\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.optimizer.momentum") && err.contains("line 7") && err.contains("1.5"), "{err}");
        let text = format!("{MINIMAL}[train]\nloss = \"hinge\"\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("hinge") && err.contains("line 5"), "{err}");
        let text = format!("{MINIMAL}[model.head]\nchroma_smoothing = -2.0\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("model.head.chroma_smoothing (line 5): -2: must be 0"), "{err}");
        let text = format!("{MINIMAL}[model.head]\nchroma_guide_radius = 500\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("model.head.chroma_guide_radius (line 5): 500: must be 0"), "{err}");
        // Dotted keys and inline tables are found too.
        let text = format!("{MINIMAL}[model]\nhead.chroma_smoothing = -2.0\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("model.head.chroma_smoothing (line 5)"), "{err}");
        let text = format!("{MINIMAL}[train]\nbatch_size = 2\noptimizer = {{ lr = 0.1,\n  momentum = 1.5 }}\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("train.optimizer.momentum (line 7)"), "{err}");
    }

    #[test]
    fn the_qssim_term_needs_whole_pictures_below_384_px() {
        let ok = format!(
            "{MINIMAL}size = 64
[train]
qssim_weight = 2.5
"
        );
        assert_eq!(Experiment::parse(&ok, "x", Path::new("/")).unwrap().train.qssim_weight, 2.5);
        let sampled = format!(
            "{MINIMAL}size = 64
[train]
qssim_weight = 2.5
sampled_pixels = 16
"
        );
        let err = Experiment::parse(&sampled, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.qssim_weight") && err.contains("sampled_pixels"), "{err}");
        let large = format!(
            "{MINIMAL}size = 384
[train]
qssim_weight = 1
"
        );
        let err = Experiment::parse(&large, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.qssim_weight") && err.contains("384"), "{err}");
        let negative = format!(
            "{MINIMAL}[train]
qssim_weight = -1
"
        );
        let err = Experiment::parse(&negative, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.qssim_weight") && err.contains("line 5"), "{err}");
    }

    /// A crop is a model side no larger than the cache's, and the
    /// per-picture checks (sampled pixels) are against the crop.
    #[test]
    fn a_crop_fits_the_cached_pictures_and_sampling_is_checked_against_it() {
        let parse =
            |train: &str| Experiment::parse(&format!("{MINIMAL}size = 64\n[train]\n{train}"), "x", Path::new("/"));
        let e = parse("random_crop = 32\nsampled_pixels = 1024\n").unwrap();
        assert_eq!(e.train.trained_side(e.data.size).get(), 32);
        assert_eq!(Experiment::parse(MINIMAL, "x", Path::new("/")).unwrap().train.random_crop, None);
        let err = parse("random_crop = 96\n").unwrap_err();
        assert!(err.starts_with("train.random_crop (line 6)") && err.contains("data.size = 64"), "{err}");
        let err = parse("random_crop = 30\n").unwrap_err();
        assert!(err.contains("line 6") && err.contains("multiple of 4"), "{err}");
        let err = parse("random_crop = 32\nsampled_pixels = 1025\n").unwrap_err();
        assert!(err.starts_with("train.sampled_pixels (line 7)") && err.contains("1024"), "{err}");
    }

    #[test]
    fn the_bins_loss_sets_the_head_output_and_checks_its_keys() {
        let text = format!("{MINIMAL}[train]\nloss = \"bins\"\n[train.bins]\nrebalance = 0.5\n");
        let e = Experiment::parse(&text, "x", Path::new("/")).unwrap();
        assert_eq!(e.model.head.output, HeadOutput::Bins);
        assert_eq!(e.train.bins.rebalance, 0.5);
        let again = Experiment::parse(&e.to_toml().unwrap(), "x", Path::new("/")).unwrap();
        assert_eq!(again.model.head, e.model.head, "the resolved config round-trips");
        assert_eq!(Experiment::parse(MINIMAL, "x", Path::new("/")).unwrap().model.head.output, HeadOutput::Uv);
        let text = format!("{MINIMAL}[model.head]\noutput = \"bins\"\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("model.head.output (line 5)"), "{err}");
        let text = format!("{MINIMAL}[train]\nloss = \"bins\"\n[train.bins]\nrebalance = 1.5\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("train.bins.rebalance (line 7)"), "{err}");
        let text = format!("{MINIMAL}size = 64\n[train]\nloss = \"bins\"\nqssim_weight = 1\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("train.qssim_weight"), "{err}");
        let text = format!("{MINIMAL}[model.head]\ntemperature = 0\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.starts_with("model.head.temperature (line 5)"), "{err}");
    }
}
