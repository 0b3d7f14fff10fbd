//! Aggregating per-image scores: mean, deviation, confidence interval; the
//! JSON and CSV reports and the terminal table.

use crate::Metric;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Mean, sample standard deviation (n − 1), the half-width of the 95%
/// confidence interval of the mean (normal approximation, 1.96 σ / √n), n.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub ci95: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        if n == 0 {
            return Summary { mean: f64::NAN, std: f64::NAN, ci95: f64::NAN, n };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std =
            if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Summary { mean, std, ci95: 1.96 * std / (n as f64).sqrt(), n }
    }
}

/// One image's scores: its name, then `metric` for the main prediction and
/// `baseline.metric` for each baseline.
#[derive(Clone, Debug, Serialize)]
pub struct ImageScores {
    pub name: String,
    #[serde(flatten)]
    pub scores: BTreeMap<String, f64>,
}

/// The main prediction minus a baseline, picture by picture: the summary of
/// the differences (its interval says whether the gap is more than noise)
/// and on how many pictures the main prediction scored higher.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Paired {
    #[serde(flatten)]
    pub difference: Summary,
    pub higher: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How predictions and truths were made (printed and stored).
    pub protocol: serde_json::Value,
    /// The main prediction's measures.
    pub metrics: BTreeMap<String, Summary>,
    /// The same measures for each baseline, on the same images.
    pub baselines: BTreeMap<String, BTreeMap<String, Summary>>,
    /// The main prediction minus each baseline, paired per picture.
    pub paired: BTreeMap<String, BTreeMap<String, Paired>>,
    pub images: Vec<ImageScores>,
    /// Images that could not be scored, with the reason.
    pub failed: Vec<Failure>,
    /// Files present on one side only (pred/truth mode).
    pub unmatched: Vec<String>,
}

impl Report {
    /// Builds the summaries from per-image rows. `predictors` names the
    /// main prediction first, then the baselines.
    pub fn new(
        protocol: serde_json::Value,
        predictors: &[String],
        metrics: &[Metric],
        images: Vec<ImageScores>,
        failed: Vec<Failure>,
        unmatched: Vec<String>,
    ) -> Report {
        let summarise = |prefix: &str| -> BTreeMap<String, Summary> {
            metrics
                .iter()
                .map(|m| {
                    let key = format!("{prefix}{}", m.name());
                    let values: Vec<f64> = images.iter().filter_map(|row| row.scores.get(&key).copied()).collect();
                    (m.name().to_string(), Summary::of(&values))
                })
                .collect()
        };
        let pair = |baseline: &str| -> BTreeMap<String, Paired> {
            metrics
                .iter()
                .map(|m| {
                    let (main, other) = (m.name().to_string(), format!("{baseline}.{}", m.name()));
                    let differences: Vec<f64> = images
                        .iter()
                        .filter_map(|row| Some(row.scores.get(&main)? - row.scores.get(&other)?))
                        .collect();
                    let higher = differences.iter().filter(|d| **d > 0.0).count();
                    (main, Paired { difference: Summary::of(&differences), higher })
                })
                .collect()
        };
        let metrics_main = summarise("");
        let baselines = predictors.iter().skip(1).map(|name| (name.clone(), summarise(&format!("{name}.")))).collect();
        let paired = predictors.iter().skip(1).map(|name| (name.clone(), pair(name))).collect();
        Report { protocol, metrics: metrics_main, baselines, paired, images, failed, unmatched }
    }

    /// The terminal table: one row per prediction and measure.
    pub fn table(&self, main_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<14} {:<17} {:>10} {:>10} {:>10} {:>7}",
            "prediction", "metric", "mean", "std", "ci95", "n"
        );
        let mut rows = vec![(main_name, &self.metrics)];
        rows.extend(self.baselines.iter().map(|(name, m)| (name.as_str(), m)));
        for (name, metrics) in rows {
            for (metric, s) in metrics {
                let _ = writeln!(
                    out,
                    "{name:<14} {metric:<17} {:>10.4} {:>10.4} {:>10.4} {:>7}",
                    s.mean, s.std, s.ci95, s.n
                );
            }
        }
        for (baseline, metrics) in &self.paired {
            let _ = writeln!(out, "{main_name} minus {baseline}, paired per picture (mean ± ci95, higher on):");
            for (metric, p) in metrics {
                let _ = writeln!(
                    out,
                    "  {metric:<17} {:>+10.4} ± {:<8.4} {} of {}",
                    p.difference.mean, p.difference.ci95, p.higher, p.difference.n
                );
            }
        }
        out
    }

    /// Per-image rows as CSV: `name` and one column per score.
    pub fn csv(&self) -> String {
        let mut columns: Vec<&String> = self.images.iter().flat_map(|r| r.scores.keys()).collect();
        columns.sort();
        columns.dedup();
        let mut out = String::from("name");
        for c in &columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for row in &self.images {
            out.push_str(&csv_field(&row.name));
            for c in &columns {
                out.push(',');
                if let Some(v) = row.scores.get(*c) {
                    let _ = write!(out, "{v}");
                }
            }
            out.push('\n');
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_values() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((s.ci95 - 1.96 * s.std / 2.0).abs() < 1e-15);
        assert_eq!(s.n, 4);
    }

    #[test]
    fn csv_quotes_names_and_keeps_columns_aligned() {
        let row = |name: &str, v: f64| ImageScores { name: name.into(), scores: [("qssim".to_string(), v)].into() };
        let report = Report::new(
            serde_json::json!({}),
            &["model".into()],
            &[Metric::Qssim],
            vec![row("a,b.png", 0.5), row("c.png", 0.75)],
            vec![],
            vec![],
        );
        assert_eq!(report.csv(), "name,qssim\n\"a,b.png\",0.5\nc.png,0.75\n");
        assert_eq!(report.metrics["qssim"].mean, 0.625);
        assert!(report.paired.is_empty(), "no baseline, nothing paired");
    }

    #[test]
    fn paired_differences_are_per_picture_and_skip_pictures_missing_a_score() {
        let row = |name: &str, main: f64, gray: Option<f64>| {
            let mut scores = BTreeMap::from([("hue".to_string(), main)]);
            if let Some(g) = gray {
                scores.insert("gray.hue".to_string(), g);
            }
            ImageScores { name: name.into(), scores }
        };
        let rows =
            vec![row("a", 0.5, Some(0.25)), row("b", 0.25, Some(0.5)), row("c", 1.0, Some(0.0)), row("d", 0.9, None)];
        let report =
            Report::new(serde_json::json!({}), &["model".into(), "gray".into()], &[Metric::Hue], rows, vec![], vec![]);
        let p = report.paired["gray"]["hue"];
        // Differences 0.25, −0.25, 1.0 (d has no gray score).
        assert_eq!(p.difference.n, 3);
        assert!((p.difference.mean - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[0.25, -0.25, 1.0]), p.difference);
        assert_eq!(p.higher, 2);
        assert_eq!(report.metrics["hue"].n, 4);
        assert!(report.table("model").contains("model minus gray"));
    }
}
