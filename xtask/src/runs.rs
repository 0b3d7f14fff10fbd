//! `cargo xtask runs [DIR]`: the run folders under `runs/` side by side.
//!
//! One row per run folder (one holding `config.toml`): its name, when it
//! started, steps done of planned, images/s, the best validation QSSIM and
//! PSNR with the gray baseline's beside them, its state, and the config
//! keys whose values differ between the listed runs. `--json` prints the
//! same as one JSON array.

use crate::flag_path;
use crate::flags::RunsArgs;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Serialize)]
struct RunRow {
    name: String,
    started_utc: Option<String>,
    steps_done: u64,
    steps_planned: Option<u64>,
    images_per_s: Option<f64>,
    best_qssim: Option<f64>,
    gray_qssim: Option<f64>,
    best_psnr: Option<f64>,
    gray_psnr: Option<f64>,
    state: String,
    /// The config keys that differ between the listed runs, with this run's values.
    differs: BTreeMap<String, String>,
    #[serde(skip)]
    config: BTreeMap<String, String>,
}

pub fn run(args: RunsArgs) -> Result<()> {
    let root = flag_path(args.dir.as_deref(), "runs");
    let mut rows = Vec::new();
    let entries = std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?;
    let mut folders: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    folders.sort();
    for folder in folders {
        if folder.join("config.toml").is_file() {
            rows.push(read_run(&folder).with_context(|| format!("reading the run {}", folder.display()))?);
        }
    }
    mark_differences(&mut rows);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no runs under {}", root.display());
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

fn read_run(dir: &Path) -> Result<RunRow> {
    let read_json =
        |name: &str| -> Option<Value> { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok() };
    let config_text = std::fs::read_to_string(dir.join("config.toml"))?;
    let config: toml::Value = toml::from_str(&config_text).context("config.toml")?;
    let info = read_json("run.json");
    let status = read_json("status.json");

    let mut steps_done = 0;
    let mut speeds = Vec::new();
    let mut best: Option<(f64, &'static str, Value)> = None;
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    for line in metrics.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        steps_done = steps_done.max(v["step"].as_u64().unwrap_or(0));
        if let Some(speed) = v["images_per_s"].as_f64() {
            speeds.push(speed);
        }
        if let Some(q) = v["validation"]["qssim"]["mean"].as_f64().filter(|q| q.is_finite()) {
            if best.as_ref().is_none_or(|(b, _, _)| q > *b) {
                best = Some((q, "", v));
            }
        }
    }
    if let Some(status) = &status {
        steps_done = steps_done.max(status["step"].as_u64().unwrap_or(0));
    }
    let train = &config["train"];
    let steps_planned = status.as_ref().and_then(|s| s["planned_steps"].as_u64()).or_else(|| {
        let batch = train.get("batch_size")?.as_integer()? as u64;
        let images = info.as_ref()?["images"].as_u64()?;
        train.get("max_steps").and_then(|m| m.as_integer()).map(|m| m as u64).or_else(|| {
            let epochs = train.get("epochs")?.as_integer()? as u64;
            Some(epochs * images.div_ceil(batch.max(1)))
        })
    });
    let state = match status.as_ref().and_then(|s| s["state"].as_str()) {
        Some("running") => {
            let pid = status.as_ref().and_then(|s| s["pid"].as_u64()).unwrap_or(0);
            if Path::new(&format!("/proc/{pid}")).exists() { "running" } else { "killed" }.to_string()
        }
        Some(state) => state.to_string(),
        None if steps_planned == Some(steps_done) => "finished".into(),
        None => "stopped".into(),
    };
    let at = |key: &str, metric: &str| best.as_ref().and_then(|(_, _, v)| v[key][metric]["mean"].as_f64());
    Ok(RunRow {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        started_utc: info.as_ref().and_then(|i| i["started_utc"].as_str().map(str::to_string)),
        steps_done,
        steps_planned,
        images_per_s: (!speeds.is_empty()).then(|| speeds.iter().sum::<f64>() / speeds.len() as f64),
        best_qssim: at("validation", "qssim"),
        gray_qssim: at("gray_baseline", "qssim"),
        best_psnr: at("validation", "psnr"),
        gray_psnr: at("gray_baseline", "psnr"),
        state,
        differs: BTreeMap::new(),
        config: flatten(&config),
    })
}

/// The config's values by dotted key, as text.
fn flatten(config: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            toml::Value::String(s) => drop(out.insert(prefix.to_string(), s.clone())),
            other => drop(out.insert(prefix.to_string(), other.to_string())),
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

/// Fills each row's `differs` with the config keys (but `name`) whose
/// values are not the same in every listed run ("—" where a run lacks it).
fn mark_differences(rows: &mut [RunRow]) {
    let keys: BTreeSet<String> = rows.iter().flat_map(|r| r.config.keys().cloned()).collect();
    for key in keys.iter().filter(|k| *k != "name") {
        let values: BTreeSet<Option<&String>> = rows.iter().map(|r| r.config.get(key)).collect();
        if values.len() > 1 {
            for row in rows.iter_mut() {
                let value = row.config.get(key).cloned().unwrap_or_else(|| "—".into());
                row.differs.insert(key.clone(), value);
            }
        }
    }
}

fn table(rows: &[RunRow]) -> String {
    let number = |v: Option<f64>, digits: usize| v.map_or("—".to_string(), |v| format!("{v:.digits$}"));
    let mut header: Vec<String> =
        ["run", "started", "steps", "images/s", "QSSIM (gray)", "PSNR (gray)", "state"].map(String::from).to_vec();
    let differing: Vec<&String> = rows.first().map(|r| r.differs.keys().collect()).unwrap_or_default();
    header.extend(differing.iter().map(|k| k.to_string()));
    let mut lines = vec![header];
    for r in rows {
        let mut line = vec![
            r.name.clone(),
            r.started_utc.clone().unwrap_or_else(|| "—".into()),
            format!("{}/{}", r.steps_done, r.steps_planned.map_or("?".to_string(), |p| p.to_string())),
            number(r.images_per_s, 1),
            format!("{} ({})", number(r.best_qssim, 4), number(r.gray_qssim, 4)),
            format!("{} ({})", number(r.best_psnr, 2), number(r.gray_psnr, 2)),
            r.state.clone(),
        ];
        line.extend(differing.iter().map(|k| r.differs.get(*k).cloned().unwrap_or_default()));
        lines.push(line);
    }
    let widths: Vec<usize> =
        (0..lines[0].len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
