//! Run folders: `runs/<config name>-<UTC time>/`.
//!
//! ```text
//! config.toml     the resolved config (what `--resume` reads)
//! run.json        cache manifest hash, git revision, start time, trunk
//! metrics.jsonl   one JSON object per logged step and per validation
//! events.out.tfevents.*   TensorBoard
//! checkpoints/    see `checkpoint`
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `YYYYmmdd-HHMMSS` in UTC.
pub fn utc_stamp(time: SystemTime) -> String {
    let t = time::OffsetDateTime::from(time);
    let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", t.hour(), t.minute(), t.second())
}

/// A fresh run folder name under `runs_root`.
pub fn new_run_path(runs_root: &Path, name: &str) -> PathBuf {
    let base = format!("{name}-{}", utc_stamp(SystemTime::now()));
    let mut path = runs_root.join(&base);
    let mut n = 2;
    while path.exists() {
        path = runs_root.join(format!("{base}-{n}"));
        n += 1;
    }
    path
}

/// The git revision of `root`, when it is a repository.
pub fn git_revision(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git").arg("-C").arg(root).args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The append-only `metrics.jsonl`.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    /// Opens for appending; with `after_step`, first drops the lines of
    /// steps beyond it (a resumed run redoes them).
    pub fn open(path: &Path, after_step: Option<u64>) -> std::io::Result<MetricsLog> {
        if let (Some(limit), true) = (after_step, path.exists()) {
            let kept: Vec<String> = BufReader::new(File::open(path)?)
                .lines()
                .map_while(Result::ok)
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= limit)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            std::fs::write(path, text)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog { file })
    }

    pub fn write(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2026-11-29 05:34:58 UTC
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_930_498)), "20261129-053458");
        // 2024-02-29 23:59:59 UTC (a leap day)
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_709_251_199)), "20240229-235959");
    }

    #[test]
    fn reopening_after_a_step_drops_the_later_lines() {
        let path = std::env::temp_dir().join(format!("colorize-metrics-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = MetricsLog::open(&path, None).unwrap();
        for step in 1..=5 {
            log.write(&serde_json::json!({ "step": step })).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.write(&serde_json::json!({ "step": 4, "again": true })).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"again\":true,\"step\":4}\n");
        let _ = std::fs::remove_file(&path);
    }
}
