//! The HTML report of an evaluation: one `index.html` with its pictures in
//! `images/` beside it, opened from disk (no server, no script).
//!
//! - the protocol and the summary table (each measure for the prediction
//!   and every baseline, and the paired differences);
//! - a histogram (inline SVG) of the per-picture QSSIM differences against
//!   gray;
//! - one row per picture, worst paired QSSIM difference first: gray |
//!   prediction | truth thumbnails linking to the full-size pictures, the
//!   QSSIM map, and its scores.
//!
//! `write_pictures` is called while scoring (the pictures exist only then);
//! `write_report` afterwards, from the `Report` alone, so the page's
//! numbers are the JSON report's.

use crate::measures::qssim_map;
use crate::report::{ImageScores, Report};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, Luma, RgbImage};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Longest side of a thumbnail, in pixels.
const THUMBNAIL: u32 = 160;
/// The folder, beside `index.html`, that holds the pictures.
const IMAGES: &str = "images";

/// The pictures of one scored image, relative to the report's folder.
pub struct PictureFiles {
    pub gray: String,
    pub prediction: String,
    pub truth: String,
    pub gray_full: String,
    pub prediction_full: String,
    pub truth_full: String,
    pub qssim_map: String,
}

impl PictureFiles {
    /// The files for the image named `name` (a relative path: its folders
    /// become part of one file name).
    pub fn of(name: &str) -> PictureFiles {
        let stem: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        let file = |kind: &str, ext: &str| format!("{IMAGES}/{stem}.{kind}.{ext}");
        PictureFiles {
            gray: file("gray", "jpg"),
            prediction: file("prediction", "jpg"),
            truth: file("truth", "jpg"),
            gray_full: file("gray-full", "jpg"),
            prediction_full: file("prediction-full", "jpg"),
            truth_full: file("truth-full", "jpg"),
            qssim_map: file("qssim", "png"),
        }
    }
}

/// Writes one image's gray, prediction and truth (thumbnails and full
/// size) and its QSSIM map (a thumbnail; white is 1) under `dir`.
pub fn write_pictures(dir: &Path, name: &str, prediction: &RgbImage, truth: &RgbImage) -> Result<(), String> {
    let files = PictureFiles::of(name);
    let images = dir.join(IMAGES);
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let gray = DynamicImage::ImageLuma8(colorize_model::colorize::luma(truth)).to_rgb8();
    let save = |image: &DynamicImage, file: &str| -> Result<(), String> {
        let path = dir.join(file);
        image.save(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (picture, thumb, full) in [
        (&gray, &files.gray, &files.gray_full),
        (prediction, &files.prediction, &files.prediction_full),
        (truth, &files.truth, &files.truth_full),
    ] {
        let picture = DynamicImage::ImageRgb8(picture.clone());
        save(&picture.resize(THUMBNAIL, THUMBNAIL, FilterType::Triangle), thumb)?;
        save(&picture, full)?;
    }
    let map = qssim_map(prediction, truth).map_err(|e| format!("{name}: {e}"))?;
    let map = GrayImage::from_fn(map.w as u32, map.h as u32, |x, y| {
        Luma([(map.at(x as usize, y as usize).clamp(0.0, 1.0) * 255.0).round() as u8])
    });
    save(&DynamicImage::ImageLuma8(map).resize(THUMBNAIL, THUMBNAIL, FilterType::Triangle), &files.qssim_map)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A number as the page shows it (and as tests read it back).
pub fn shown(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "—".into()
    }
}

/// The main prediction's QSSIM minus gray's, per picture, when both exist.
fn qssim_against_gray(row: &ImageScores) -> Option<f64> {
    Some(row.scores.get("qssim")? - row.scores.get("gray.qssim")?)
}

/// Writes `dir/index.html` for `report` (whose pictures `write_pictures`
/// wrote into `dir`); returns its path.
pub fn write_report(dir: &Path, report: &Report, main_name: &str) -> std::io::Result<PathBuf> {
    let mut page = String::new();
    let title = format!("Evaluation of {}", escape(main_name));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 1.5em; }}\n\
         table {{ border-collapse: collapse; }}\n\
         td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}\n\
         td.name, th.name {{ text-align: left; }}\n\
         img {{ display: block; }}\n\
         </style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let protocol = serde_json::to_string_pretty(&report.protocol).unwrap_or_default();
    let _ = write!(page, "<h2>Protocol</h2>\n<pre>{}</pre>\n", escape(&protocol));

    // The summary: one row per prediction, one column per measure.
    let metrics: Vec<&String> = report.metrics.keys().collect();
    let _ = write!(page, "<h2>Summary</h2>\n<table id=\"summary\">\n<tr><th class=\"name\">prediction</th>");
    for m in &metrics {
        let _ = write!(page, "<th>{}</th>", escape(m));
    }
    page.push_str("</tr>\n");
    let mut rows = vec![(main_name, &report.metrics)];
    rows.extend(report.baselines.iter().map(|(name, m)| (name.as_str(), m)));
    for (name, summaries) in rows {
        let _ = write!(page, "<tr><td class=\"name\">{}</td>", escape(name));
        for m in &metrics {
            match summaries.get(*m) {
                Some(s) => {
                    let _ = write!(page, "<td>{} ± {} (n {})</td>", shown(s.mean), shown(s.ci95), s.n);
                }
                None => page.push_str("<td></td>"),
            }
        }
        page.push_str("</tr>\n");
    }
    for (baseline, paired) in &report.paired {
        let _ = write!(page, "<tr><td class=\"name\">{} minus {}, paired</td>", escape(main_name), escape(baseline));
        for m in &metrics {
            match paired.get(*m) {
                Some(p) => {
                    let _ = write!(
                        page,
                        "<td>{} ± {} (higher on {} of {})</td>",
                        shown(p.difference.mean),
                        shown(p.difference.ci95),
                        p.higher,
                        p.difference.n
                    );
                }
                None => page.push_str("<td></td>"),
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n<p>± is the 95% interval of the mean.</p>\n");

    // The histogram of the paired QSSIM differences against gray.
    let differences: Vec<f64> = report.images.iter().filter_map(qssim_against_gray).collect();
    if !differences.is_empty() {
        page.push_str("<h2>QSSIM minus gray's, per picture</h2>\n");
        page.push_str(&histogram_svg(&differences, 24));
    }

    // One row per picture, worst first.
    let mut images: Vec<&ImageScores> = report.images.iter().collect();
    let key = |row: &ImageScores| qssim_against_gray(row).or_else(|| row.scores.get("qssim").copied());
    images.sort_by(|a, b| key(a).unwrap_or(f64::INFINITY).total_cmp(&key(b).unwrap_or(f64::INFINITY)));
    let columns: Vec<&String> = {
        let mut c: Vec<&String> = report.images.iter().flat_map(|r| r.scores.keys()).collect();
        c.sort();
        c.dedup();
        c
    };
    let _ = write!(
        page,
        "<h2>Pictures, worst QSSIM against gray first</h2>\n<table id=\"pictures\">\n<tr><th class=\"name\">picture</th>\
         <th>gray</th><th>prediction</th><th>truth</th><th>QSSIM map</th>"
    );
    for c in &columns {
        let _ = write!(page, "<th>{}</th>", escape(c));
    }
    page.push_str("</tr>\n");
    for row in images {
        let files = PictureFiles::of(&row.name);
        let _ = write!(page, "<tr><td class=\"name\">{}</td>", escape(&row.name));
        for (thumb, full) in [
            (&files.gray, &files.gray_full),
            (&files.prediction, &files.prediction_full),
            (&files.truth, &files.truth_full),
        ] {
            let _ = write!(page, "<td><a href=\"{}\"><img src=\"{}\" alt=\"\"></a></td>", escape(full), escape(thumb));
        }
        let _ = write!(page, "<td><img src=\"{}\" alt=\"\"></td>", escape(&files.qssim_map));
        for c in &columns {
            let _ = write!(page, "<td>{}</td>", row.scores.get(*c).map_or(String::new(), |v| shown(*v)));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
    if !report.failed.is_empty() {
        page.push_str("<h2>Not scored</h2>\n<ul>\n");
        for f in &report.failed {
            let _ = writeln!(page, "<li>{}: {}</li>", escape(&f.name), escape(&f.reason));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body>\n</html>\n");
    let path = dir.join("index.html");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, page)?;
    Ok(path)
}

/// A histogram of `values` in `bins` equal bins, as an inline SVG whose bars
/// carry their counts (`data-count`) and ranges in their titles.
fn histogram_svg(values: &[f64], bins: usize) -> String {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for v in values {
        let bin = (((v - lo) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1);
    let (w, h, bar) = (bins * 20 + 40, 160, 20);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\">\n", h + 40);
    for (i, count) in counts.iter().enumerate() {
        let bar_h = count * h / tallest;
        let from = lo + i as f64 * width;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bar_h}\" fill=\"{}\" data-count=\"{count}\"><title>{} to {}: {count}</title></rect>",
            20 + i * bar,
            h - bar_h,
            bar - 2,
            if from + width <= 0.0 { "#c55" } else { "#5a5" },
            shown(from),
            shown(from + width),
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"20\" y=\"{}\" font-size=\"12\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
        h + 20,
        shown(lo),
        w - 20,
        h + 20,
        shown(hi)
    );
    svg.push_str("</svg>\n");
    svg
}
