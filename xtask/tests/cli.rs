//! The command line, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("running xtask")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_quick_demo_runs_every_stage() {
    let out = tempdir("demo");
    let run = xtask(&["demo", "--quick", "--out", out.to_str().unwrap()]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "demo failed:\n{stdout}\n{}", text(&run.stderr));
    for stage in ["1/4 preprocess", "2/4 colorize", "3/4 score", "4/4 train", "tensorboard --logdir"] {
        assert!(stdout.contains(stage), "missing '{stage}' in:\n{stdout}");
    }
    assert!(out.join("cache/manifest.json").is_file());
    let run_dir = out.join("train");
    assert!(run_dir.join("checkpoints/step-00000006/head.safetensors").is_file());
    assert!(run_dir.join("metrics.jsonl").is_file());
    let has_events = std::fs::read_dir(&run_dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents"));
    assert!(has_events, "TensorBoard events written");

    if colorize_model_has_embedded_head() {
        for name in ["astronaut", "chelsea", "china", "coffee", "flower", "rocket"] {
            assert!(out.join(format!("strips/{name}.png")).is_file(), "strip for {name}");
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
        let model = report["metrics"]["psnr"]["mean"].as_f64().unwrap();
        let gray = report["baselines"]["gray"]["psnr"]["mean"].as_f64().unwrap();
        assert!(model > gray, "embedded colorizer PSNR {model} vs gray {gray}");
    }
}

/// The demo's training stage (`configs/smoke.toml`, all 60 steps) on the
/// embedded trunk neither diverges nor ends below gray on its own photos:
/// its learning rate was tuned to the trunk's activations once (0.5
/// diverged when the trunk changed).
#[test]
fn the_demo_config_trains_stably_on_the_embedded_trunk() {
    let run_dir = train_smoke(&tempdir("smoke-full"), None);
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value =
        metrics.lines().rfind(|l| l.contains("\"validation\"")).map(|l| serde_json::from_str(l).unwrap()).unwrap();
    assert_eq!(last["step"], 60, "{last}");
    let (model, gray) = (&last["validation"]["qssim"]["mean"], &last["gray_baseline"]["qssim"]["mean"]);
    assert!(model.as_f64().unwrap() > gray.as_f64().unwrap(), "validation QSSIM {model} vs gray {gray}");
}

fn colorize_model_has_embedded_head() -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/model/assets/colorizer-head.safetensors").is_file()
}

#[test]
fn a_bad_config_key_is_refused_with_its_name_and_line() {
    let dir = tempdir("config");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[data]\nsource = \"x\"\ncache = \"y\"\nsizee = 64\n").unwrap();
    let run = xtask(&["preprocess", "--config", config.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(stderr.contains("sizee") && stderr.contains("line 4") && stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn colorize_reports_unreadable_files_and_keeps_going() {
    let dir = tempdir("colorize");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(inputs.join("ok.png"))
        .unwrap();
    std::fs::write(inputs.join("broken.jpg"), b"not a picture").unwrap();
    // A head to use: a fresh one from a 2-step training run.
    let head = train_tiny_head(&dir);
    let out = dir.join("out");
    let run = xtask(&[
        "colorize",
        inputs.to_str().unwrap(),
        "--checkpoint",
        head.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "32",
    ]);
    let stderr = text(&run.stderr);
    assert!(!run.status.success(), "a failed file makes the exit status non-zero");
    assert!(text(&run.stdout).contains("broken.jpg") || stderr.contains("broken.jpg"), "{stderr}");
    let written = image::open(out.join("in/ok.png")).unwrap().to_rgb8();
    assert_eq!(written.dimensions(), (40, 30));
}

fn train_tiny_head(dir: &Path) -> PathBuf {
    train_smoke(dir, Some(2)).join("checkpoints/step-00000002/head.safetensors")
}

/// Trains `configs/smoke.toml` with its cache under `dir`, for its own length
/// or for `max_steps` (`train --max-steps`); returns the run folder.
fn train_smoke(dir: &Path, max_steps: Option<usize>) -> PathBuf {
    let run_dir = dir.join("run");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = dir.join("smoke.toml");
    let smoke = std::fs::read_to_string(root.join("configs/smoke.toml")).unwrap();
    let smoke = smoke
        .replace("source = \"datasets/samples\"", &format!("source = {:?}", root.join("datasets/samples")))
        .replace("cache = \"runs/cache/smoke-32\"", &format!("cache = {:?}", dir.join("cache")));
    std::fs::write(&config, smoke).unwrap();
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--run-dir".into(),
        run_dir.to_str().unwrap().into(),
        "--preprocess".into(),
    ];
    if let Some(steps) = max_steps {
        args.extend(["--max-steps".into(), steps.to_string()]);
    }
    let run = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    run_dir
}

/// `runs` lists run folders with their steps and states, and the config
/// keys that differ between them.
#[test]
fn runs_lists_runs_side_by_side() {
    let dir = tempdir("runs");
    let head = train_tiny_head(&dir);
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::rename(head.ancestors().nth(3).unwrap(), runs.join("a")).unwrap();
    // A copy with another learning rate, killed while running.
    let b = runs.join("b");
    std::fs::create_dir_all(&b).unwrap();
    for file in ["config.toml", "run.json", "metrics.jsonl"] {
        std::fs::copy(runs.join("a").join(file), b.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("lr = "), "{config}");
    let config: String = config
        .lines()
        .map(|l| if l.starts_with("lr = ") { "lr = 0.123".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(b.join("config.toml"), config).unwrap();
    std::fs::write(b.join("status.json"), r#"{"state": "running", "pid": 4000000000, "step": 1, "planned_steps": 2}"#)
        .unwrap();

    let run = xtask(&["runs", runs.to_str().unwrap(), "--json"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let rows: serde_json::Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["name"].as_str(), rows[0]["state"].as_str()), (Some("a"), Some("finished")));
    assert_eq!((rows[0]["steps_done"].as_u64(), rows[0]["steps_planned"].as_u64()), (Some(2), Some(2)));
    assert_eq!(rows[1]["state"], "killed", "running, but its process is gone");
    assert_eq!(rows[1]["differs"]["train.optimizer.lr"], "0.123");
    assert_eq!(rows[0]["differs"].as_object().unwrap().keys().collect::<Vec<_>>(), ["train.optimizer.lr"]);
    let table = text(&xtask(&["runs", runs.to_str().unwrap()]).stdout);
    assert!(table.contains("train.optimizer.lr") && table.contains("2/2") && table.contains("killed"), "{table}");
}

/// `retune` writes a copy of a head with other prediction settings and the
/// same weights.
#[test]
fn retune_changes_only_the_prediction_settings() {
    let dir = tempdir("retune");
    let head = train_tiny_head(&dir);
    let out = dir.join("retuned.safetensors");
    let run = xtask(&[
        "retune",
        "--checkpoint",
        head.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--chroma-smoothing",
        "3",
        "--chroma-guide-radius",
        "4",
        "--size",
        "48",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let config = colorize_model::HypercolumnHead::config_of_file(&out).unwrap();
    assert_eq!((config.chroma_smoothing, config.chroma_guide_radius), (3.0, 4.0));
    let side = |p: &Path| colorize_model::provenance::HeadProvenance::of_file(p).unwrap().input_side;
    assert_eq!(side(&out), Some(48), "the prediction side is recorded");
    assert_ne!(side(&head), Some(48), "the original keeps its own");
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let (before, after) = (load(&head), load(&out));
    for (name, tensor) in &before {
        let same = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == after[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(same, name != "smoothing.sigma" && name != "guide.radius", "{name}");
    }
    let bad = xtask(&[
        "retune",
        "--checkpoint",
        head.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--temperature",
        "0.5",
    ]);
    assert!(!bad.status.success(), "a (U, V) head has no temperature");
    let odd =
        xtask(&["retune", "--checkpoint", head.to_str().unwrap(), "--out", out.to_str().unwrap(), "--size", "30"]);
    assert!(!odd.status.success() && text(&odd.stderr).contains("multiple of 4"), "{}", text(&odd.stderr));
    // A checkpoint folder stands for its head file.
    let from_folder = dir.join("from-folder.safetensors");
    let folder = head.parent().unwrap().to_str().unwrap();
    let args = ["--chroma-smoothing", "3", "--chroma-guide-radius", "4", "--size", "48"];
    let run = xtask(&[&["retune", "--checkpoint", folder, "--out", from_folder.to_str().unwrap()][..], &args].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(std::fs::read(&from_folder).unwrap() == std::fs::read(&out).unwrap(), "the folder's head, retuned alike");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = xtask(&["retune", "--checkpoint", empty.to_str().unwrap(), "--out", from_folder.to_str().unwrap()]);
    let stderr = text(&run.stderr);
    assert!(!run.status.success() && stderr.contains("empty") && stderr.contains("head.safetensors"), "{stderr}");
    // One head file cannot hold an ensemble.
    let ensemble = ["retune", "--checkpoint", folder, "--ensemble", folder, "--out", from_folder.to_str().unwrap()];
    let run = xtask(&ensemble);
    let stderr = text(&run.stderr);
    assert!(!run.status.success() && stderr.contains("--ensemble") && stderr.contains("one head file"), "{stderr}");
}

/// `eval` records the settings its model predicted with (the head's, or the
/// flags'), and refuses them when it scores prediction files.
#[test]
fn eval_records_its_prediction_settings_and_refuses_them_for_files() {
    let dir = tempdir("eval-settings");
    let head = train_tiny_head(&dir);
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    for (i, name) in ["a.png", "b.png"].iter().enumerate() {
        let picture =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, (i * 90) as u8]));
        picture.save(pictures.join(name)).unwrap();
    }
    let (root, report) = (pictures.to_str().unwrap(), dir.join("report.json"));
    let run = xtask(&[
        "eval",
        "--metric",
        "qssim",
        "--dataset",
        "folder",
        "--root",
        root,
        "--checkpoint",
        head.to_str().unwrap(),
        "--size",
        "32",
        "--chroma-guide-radius",
        "2.5",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let settings = &report["protocol"]["prediction_settings"];
    assert_eq!(
        (settings["side"].as_u64(), settings["chroma_guide_radius"].as_f64()),
        (Some(32), Some(2.5)),
        "{settings}"
    );
    let files = xtask(&["eval", "--metric", "qssim", "--pred", root, "--truth", root, "--chroma-guide-radius", "2.5"]);
    let stderr = text(&files.stderr);
    assert!(
        !files.status.success() && stderr.contains("--chroma-guide-radius") && stderr.contains("--pred"),
        "{stderr}"
    );
    // An ensemble combines colour-bin distributions: this (U, V) head has none.
    let head = head.to_str().unwrap();
    let args =
        ["eval", "--dataset", "folder", "--root", root, "--checkpoint", head, "--ensemble", head, "--size", "32"];
    let ensemble = xtask(&args);
    let stderr = text(&ensemble.stderr);
    assert!(!ensemble.status.success() && stderr.contains("--ensemble") && stderr.contains("colour bins"), "{stderr}");
}

/// `oracle` writes a copy of each prediction with the truth's hue put in,
/// at the truth's relative path; a pair of different sizes is skipped by
/// name, and the command fails after writing the others.
#[test]
fn oracle_puts_the_truths_hue_in_and_names_a_pair_it_cannot_use() {
    let dir = tempdir("oracle");
    let (pred, truth, out) = (dir.join("pred"), dir.join("truth"), dir.join("out"));
    for folder in [&pred, &truth] {
        std::fs::create_dir_all(folder.join("sub")).unwrap();
    }
    let colourful = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, 200 - (y * 4) as u8, 90]));
    colourful.save(truth.join("sub/a.png")).unwrap();
    // The prediction: the truth's gray with one orange tint everywhere.
    let tinted = image::RgbImage::from_fn(40, 30, |x, y| {
        let [r, g, b] = colourful.get_pixel(x, y).0.map(f32::from);
        let gray = 0.299 * r + 0.587 * g + 0.114 * b;
        image::Rgb([(gray + 20.0).min(255.0) as u8, gray as u8, (gray - 20.0).max(0.0) as u8])
    });
    tinted.save(pred.join("sub/a.png")).unwrap();
    colourful.save(truth.join("b.png")).unwrap();
    image::RgbImage::new(20, 20).save(pred.join("b.png")).unwrap();
    let run = xtask(&[
        "oracle",
        "--pred",
        pred.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--take",
        "hue",
    ]);
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(!run.status.success(), "a bad pair fails the command:\n{stdout}\n{stderr}");
    assert!(stdout.contains("b.png") && stdout.contains("sizes differ"), "{stdout}");
    let copy = image::open(out.join("sub/a.png")).unwrap().to_rgb8();
    assert_eq!(copy.dimensions(), (40, 30));
    // Its hues are the truth's (the tint's were not), pixel by pixel.
    let hue_misses = |a: &image::RgbImage| -> usize {
        let angle = |rgb: [u8; 3]| {
            let [u, v] = colorize_core::yuv::chroma_f64(rgb);
            (v.atan2(u), u.hypot(v))
        };
        a.pixels()
            .zip(colourful.pixels())
            .filter(|(p, q)| {
                let ((a, ra), (b, rb)) = (angle(p.0), angle(q.0));
                let turn = (a - b).sin().atan2((a - b).cos()).abs().to_degrees();
                ra > 5.0 && rb > 5.0 && turn > 10.0
            })
            .count()
    };
    assert!(hue_misses(&tinted) > 600, "the tint's hue is wrong: {}", hue_misses(&tinted));
    assert_eq!(hue_misses(&copy), 0);
    assert!(!out.join("b.png").exists());
}

/// The GPU machine's check, run here on the CPU: the reference path against
/// the fast one, a short training run, its throughput and memory.
#[test]
fn the_gpu_check_runs_on_the_cpu_and_a_cuda_device_without_cuda_is_a_clear_error() {
    let out = tempdir("gpu-check");
    let args = ["gpu-check", "--device", "cpu", "--steps", "2", "--size", "32", "--batch-size", "2", "--no-peer"];
    let run = xtask(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "gpu-check failed:\n{stdout}\n{}", text(&run.stderr));
    for line in ["1/3 the device path", "conv3_3", "dense gradient of conv1.weight", "2/3 training", "peak memory"] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
    assert!(!stdout.contains("OUT OF TOLERANCE"), "{stdout}");

    if cfg!(not(feature = "cuda")) {
        let run = xtask(&["gpu-check", "--device", "cuda:0"]);
        let stderr = text(&run.stderr);
        assert!(!run.status.success());
        assert!(stderr.contains("cuda") && stderr.contains("--features"), "unclear: {stderr}");
    }
}
