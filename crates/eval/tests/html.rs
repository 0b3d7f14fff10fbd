//! The HTML report: well-formed, every picture it names exists, its numbers
//! are the report's, worst picture first; and a real browser draws it.

use colorize_data::SourceLayout;
use colorize_eval::html::{shown, write_report, PictureFiles};
use colorize_eval::score::dataset_items;
use colorize_eval::{score, Metric, Predictor, Protocol, Scoring};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-html-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pictures whose colours differ, so the mean chroma suits some better.
fn make_photos(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for (i, colour) in [[200u8, 60, 40], [40, 90, 200], [120, 130, 110], [230, 200, 60]].iter().enumerate() {
        let picture = RgbImage::from_fn(48, 40, |x, y| {
            let shade = 0.6 + 0.4 * ((x + 2 * y) % 17) as f32 / 17.0;
            Rgb(colour.map(|c| (f32::from(c) * shade) as u8))
        });
        let folder = if i % 2 == 0 { dir.to_path_buf() } else { dir.join("sub") };
        picture.save(folder.join(format!("p{i} <&>.png"))).unwrap();
    }
}

/// The non-void elements of `page` open and close in order.
fn assert_well_formed(page: &str) {
    let void = ["meta", "img", "br", "rect-void"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("an unclosed tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if tag.starts_with('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "closing </{name}> out of order");
        } else if !void.contains(&name.as_str()) && !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn the_report_is_well_formed_complete_and_agrees_with_the_json() {
    let dir = tempdir("report");
    make_photos(&dir.join("photos"));
    let out = dir.join("report");
    let items = dataset_items(&dir.join("photos"), SourceLayout::Folder, "").unwrap();
    let scoring = Scoring {
        protocol: Protocol::AsIs,
        metrics: vec![Metric::Qssim, Metric::Psnr, Metric::Hue],
        predictors: vec![("mean".into(), Predictor::MeanChroma([110.0, 150.0])), ("gray".into(), Predictor::Gray)],
        qssim_maps: None,
        pictures: Some(out.clone()),
    };
    let report = score(&items, &scoring, serde_json::json!({"test": true}), Vec::new(), &|_| {});
    assert_eq!(report.images.len(), 4);
    let page_path = write_report(&out, &report, "mean").unwrap();
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_well_formed(&page);

    // Every picture the page names exists, and names are escaped.
    let mut referenced = 0;
    for attribute in ["src=\"", "href=\""] {
        for piece in page.split(attribute).skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            assert!(out.join(target.replace("&amp;", "&")).is_file(), "{target} is missing");
            referenced += 1;
        }
    }
    assert_eq!(referenced, 4 * 7, "gray, prediction, truth (thumbnail and full) and the map, per picture");
    assert!(page.contains("p0 &lt;&amp;&gt;.png") && !page.contains("p0 <&>"));

    // The numbers are the JSON report's.
    let json = serde_json::to_value(&report).unwrap();
    for metric in ["qssim", "psnr", "hue"] {
        for (row, summary) in [("mean", &json["metrics"][metric]), ("gray", &json["baselines"]["gray"][metric])] {
            let cell = format!(
                "<td>{} ± {} (n {})</td>",
                shown(summary["mean"].as_f64().unwrap()),
                shown(summary["ci95"].as_f64().unwrap()),
                summary["n"]
            );
            assert!(page.contains(&cell), "{row} {metric}: {cell} not in the page");
        }
        let paired = &json["paired"]["gray"][metric];
        let cell =
            format!("<td>{} ± {}", shown(paired["mean"].as_f64().unwrap()), shown(paired["ci95"].as_f64().unwrap()));
        assert!(page.contains(&cell), "paired {metric}: {cell}");
    }

    // Worst paired QSSIM difference first.
    let mut by_difference: Vec<(f64, String)> =
        report.images.iter().map(|row| (row.scores["qssim"] - row.scores["gray.qssim"], row.name.clone())).collect();
    by_difference.sort_by(|a, b| a.0.total_cmp(&b.0));
    let table = &page[page.find("id=\"pictures\"").unwrap()..];
    let positions: Vec<usize> =
        by_difference.iter().map(|(_, name)| table.find(&PictureFiles::of(name).gray).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "rows sorted worst first: {by_difference:?}");
    // The histogram counts every picture.
    let counted: usize = page
        .split("data-count=\"")
        .skip(1)
        .map(|piece| piece[..piece.find('"').unwrap()].parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, 4);

    screenshot_is_not_blank(&page_path, &dir);
}

/// Headless Chromium (Debian's `chromium`) draws the page: a screenshot with
/// more than one colour in it. Skipped, saying so, where none is installed.
fn screenshot_is_not_blank(page: &Path, dir: &Path) {
    let Some(browser) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped the browser check: no chromium installed (apt-get install chromium)");
        return;
    };
    let shot = dir.join("screenshot.png");
    let output = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&output.stderr));
    let image = image::open(&shot).unwrap().to_rgb8();
    let first = *image.get_pixel(0, 0);
    let differing = image.pixels().filter(|p| **p != first).count();
    assert!(differing > image.pixels().len() / 100, "the screenshot is blank ({differing} pixels differ)");
    // Colour appears: the thumbnails were drawn, not only text.
    let coloured = image.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 40).count();
    assert!(coloured > 500, "no coloured pixels: the pictures did not load ({coloured})");
}
