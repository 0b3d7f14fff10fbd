use serde_json::json;
use std::path::Path;

/// `status.json` in a run folder: what the run is doing (`running`, with
/// its process id, then `finished`, `interrupted` or `diverged`), for
/// `cargo xtask runs`. A run whose status says running but whose process
/// is gone was killed. Best effort: a status that cannot be written only
/// loses the listing's state column.
pub(super) struct RunStatus<'a> {
    pub run_dir: &'a Path,
    pub planned: u64,
}

impl RunStatus<'_> {
    pub fn write(&self, state: &str, step: u64) {
        let status = json!({
            "state": state,
            "pid": std::process::id(),
            "step": step,
            "planned_steps": self.planned,
            "updated_utc": crate::run::utc_stamp(std::time::SystemTime::now()),
        });
        let path = self.run_dir.join("status.json");
        let tmp = self.run_dir.join("status.json.tmp");
        let written = std::fs::write(&tmp, status.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
}
