//! The experiment's fingerprint, which a resumed run must match.

use super::TrainError;
use crate::Experiment;
use std::path::Path;

/// The experiment's fingerprint as a run records it: everything that
/// changes the computation. The run's length (`train.epochs`,
/// `train.max_steps`) and its reporting cadence (`train.log_every`,
/// `train.checkpoint_every`, `train.keep_last`) are left out, so that a run
/// can be resumed longer or with other logging; so is every value equal to
/// its default, so that a key added to the config format later (at its
/// default) does not make older runs unresumable.
pub fn config_hash(experiment: &Experiment) -> Result<String, TrainError> {
    let mut computation = experiment.clone();
    let defaults = crate::config::TrainConfig::default();
    let t = &mut computation.train;
    (t.epochs, t.max_steps) = (defaults.epochs, defaults.max_steps);
    (t.log_every, t.checkpoint_every, t.keep_last) =
        (defaults.log_every, defaults.checkpoint_every, defaults.keep_last);
    let mut kept = toml::Value::try_from(&computation)?;
    let bare = Experiment::parse("[data]\nsource = \"\"\ncache = \"\"\n", "", Path::new("/"))
        .map_err(|reason| TrainError::Serialise(format!("the minimal config: {reason}")))?;
    strip_defaults(&mut kept, &toml::Value::try_from(&bare)?);
    let text = toml::to_string(&kept)?;
    Ok(colorize_core::fingerprint(text.as_bytes()))
}

/// Removes from `value` every key whose value equals the same key's in
/// `defaults`, table by table.
fn strip_defaults(value: &mut toml::Value, defaults: &toml::Value) {
    let (Some(table), Some(defaults)) = (value.as_table_mut(), defaults.as_table()) else { return };
    table.retain(|key, v| match defaults.get(key) {
        Some(d) if d == v => false,
        Some(d) => {
            strip_defaults(v, d);
            true
        }
        None => true,
    });
}

/// The fingerprint runs recorded before the length could change: the
/// whole resolved config. A checkpoint carrying it still resumes.
pub(super) fn whole_config_hash(experiment: &Experiment) -> Result<String, TrainError> {
    Ok(colorize_core::fingerprint(experiment.to_toml()?.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key at its default is left out of the fingerprint, so a key added
    /// to the format later (a resolved config then writes it at its
    /// default) leaves older runs resumable.
    #[test]
    fn defaults_are_stripped_table_by_table() {
        let parse = |text: &str| -> toml::Value { toml::from_str(text).unwrap() };
        let mut value = parse("a = 1\nb = 2\n[t]\nc = 3\nd = 4\n[u]\ne = 5\n");
        let defaults = parse("a = 1\nb = 0\n[t]\nc = 3\n[u]\ne = 5\n");
        strip_defaults(&mut value, &defaults);
        assert_eq!(value, parse("b = 2\n[t]\nd = 4\n"), "a table equal to its default goes whole");
        let base = Experiment::parse("[data]\nsource = \"p\"\ncache = \"c\"\n", "x", Path::new("/")).unwrap();
        let explicit = Experiment::parse(
            "[data]\nsource = \"p\"\ncache = \"c\"\n[model.head]\nundo_rebalance = 0.0\n",
            "x",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(config_hash(&base).unwrap(), config_hash(&explicit).unwrap());
    }
}
