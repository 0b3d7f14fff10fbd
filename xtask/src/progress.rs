//! Progress bars: done/total, rate and ETA on a terminal; silent otherwise.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}");
    // tidy: the template is built from constants.
    bar.set_style(ProgressStyle::with_template(&template).expect("valid progress template"));
    bar
}

/// A message above the bar; on stderr when the bar is hidden (not a
/// terminal), where indicatif would drop it.
pub fn note(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
