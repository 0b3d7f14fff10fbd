//! Experiment configs: one TOML file per experiment, every choice in it.
//!
//! ```toml
//! name = "paper"          # optional; the file's stem otherwise
//! [data]                  # the preprocessing cache (colorize_data::PreprocessConfig)
//! ```
//!
//! Unknown keys, wrong types and out-of-range values are refused with the
//! key's name, the file and the line (serde's `deny_unknown_fields` and the
//! `toml` crate's spans). Relative paths in a config are relative to the
//! project root, so a config means the same from any working directory.

use colorize_data::PreprocessConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    #[serde(default)]
    pub name: String,
    pub data: PreprocessConfig,
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
        experiment.data.validate().map_err(|e| e.to_string())?;
        experiment.resolve_paths(root);
        Ok(experiment)
    }

    fn resolve_paths(&mut self, root: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = root.join(&*p);
            }
        };
        resolve(&mut self.data.source);
        resolve(&mut self.data.cache);
    }

    /// The resolved config as TOML (what a run folder keeps).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("an experiment serialises to TOML")
    }
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
        let again = Experiment::parse(&e.to_toml(), "x", Path::new("/elsewhere")).unwrap();
        assert_eq!(again.data, e.data, "absolute paths survive a round trip");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name_and_line() {
        let text = format!("{MINIMAL}colour_space = \"lab\"\n");
        let err = Experiment::parse(&text, "x", Path::new("/")).unwrap_err();
        assert!(err.contains("colour_space") && err.contains("line 4"), "{err}");
    }

    #[test]
    fn wrong_types_and_out_of_range_values_are_refused() {
        let err = Experiment::parse(&format!("{MINIMAL}size = \"big\"\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("size") || err.contains("line 4"), "{err}");
        let err = Experiment::parse(&format!("{MINIMAL}size = 30\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("30") && err.contains("multiple of 4") && err.contains("line 4"), "{err}");
        let err = Experiment::parse(&format!("{MINIMAL}shard_size = 0\n"), "x", Path::new("/")).unwrap_err();
        assert!(err.contains("shard_size"), "{err}");
    }
}
