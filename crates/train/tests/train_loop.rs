//! The training loop end to end on a tiny cache: the loss falls, a resumed
//! run equals an uninterrupted one bit for bit, bad checkpoints are refused.

use candle_core::Device;
use colorize_data::write_cache;
use colorize_train::{run_config, train, Event, Experiment, TrainOptions, TrainOutcome};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colorize-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Four colourful 40x40 pictures: strong, varied chroma for the head to learn.
fn make_photos(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let palettes = [[220u8, 40, 30], [30, 200, 60], [40, 60, 220], [230, 210, 40]];
    for (i, colour) in palettes.iter().enumerate() {
        RgbImage::from_fn(40, 40, |x, y| {
            let shade = (x + y) as f32 / 80.0;
            Rgb(colour.map(|c| (f32::from(c) * (0.5 + 0.5 * shade)) as u8))
        })
        .save(dir.join(format!("p{i}.png")))
        .unwrap();
    }
}

fn experiment(dir: &Path, extra: &str) -> Experiment {
    experiment_with(dir, "", extra)
}

/// The test config with `train_extra` in its `[train]` table and `extra` at the end.
fn experiment_with(dir: &Path, train_extra: &str, extra: &str) -> Experiment {
    let text = format!(
        r#"
name = "test"
[data]
source = "photos"
cache = "cache"
size = 32
shard_size = 4
[model.head]
conv1_channels = 16
conv2_channels = 4
[train]
batch_size = 4
max_steps = 40
log_every = 1
checkpoint_every = 10
keep_last = 2
{train_extra}
[train.optimizer]
lr = 0.1
momentum = 0.9
{extra}
"#
    );
    Experiment::parse(&text, "test", dir).unwrap()
}

fn options(dir: &Path, run: &str, stop: Arc<AtomicBool>) -> TrainOptions {
    TrainOptions {
        runs_root: dir.join("runs"),
        run_dir: Some(dir.join("runs").join(run)),
        resume: None,
        device: Device::Cpu,
        stop,
        project_root: dir.to_path_buf(),
    }
}

fn prepare(name: &str) -> PathBuf {
    let dir = tempdir(name);
    make_photos(&dir.join("photos"));
    let e = experiment(&dir, "");
    write_cache(&e.data, false, &AtomicBool::new(false), &|_| {}).unwrap();
    dir
}

fn losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((v["step"].as_u64()?, v.get("loss")?.as_f64()?))
        })
        .collect()
}

#[test]
fn the_loss_falls_on_four_images() {
    loss_falls("falls", None);
}

#[test]
fn the_loss_falls_when_training_on_sampled_pixels() {
    loss_falls("sampled", Some(48));
}

/// The bins loss: its floor is the soft targets' entropy (no rebalancing,
/// so every pixel weighs 1); what is above it halves in 40 steps.
#[test]
fn the_bins_loss_falls_on_four_images() {
    use colorize_train::bin_loss::{BinLossConfig, SoftEncoding};
    let dir = prepare("bins-falls");
    let e = experiment_with(&dir, "loss = \"bins\"", "");
    let outcome = train(&e, &options(&dir, "a", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    let l = losses(&outcome.run_dir);
    let encoding = SoftEncoding::new(&e.model.head.colour_bins(), &BinLossConfig::default());
    let cache = colorize_data::UvCache::open(&e.data.cache).unwrap();
    let area = 32 * 32;
    let mut floor = 0.0;
    for i in 0..cache.len() {
        let (u, v) = cache.get(i).unwrap().uv.split_at(area);
        for (&u, &v) in u.iter().zip(v) {
            floor -= encoding.encode(u, v).iter().map(|&(_, z)| f64::from(z) * f64::from(z).ln()).sum::<f64>();
        }
    }
    floor /= (cache.len() * area) as f64;
    let excess = |range: std::ops::Range<usize>| {
        l[range.clone()].iter().map(|(_, v)| v - floor).sum::<f64>() / range.len() as f64
    };
    let (first, last) = (excess(0..5), excess(35..40));
    assert!(last < 0.5 * first, "excess loss {first:.5} -> {last:.5} (floor {floor:.5})");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = prepare("diverge");
    let mut e = experiment(&dir, "");
    e.train.optimizer.lr = 1e4;
    let err = train(&e, &options(&dir, "a", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("diverged") && err.contains("train.optimizer.lr"), "{err}");
    // It diverged before its first checkpoint: the message names none.
    assert!(err.contains("no checkpoint was written yet") && !err.contains("step-0000"), "{err}");
    assert!(colorize_train::checkpoint::list_steps(&dir.join("runs/a/checkpoints")).is_empty());
}

/// Validation pictures that cannot be scored are counted and named in
/// metrics.jsonl; `best/` is a link replaced as the score improves.
#[test]
fn validation_failures_are_reported_and_best_is_a_link() {
    let dir = prepare("validation");
    let held_out = dir.join("held-out");
    make_photos(&held_out);
    std::fs::write(held_out.join("broken.png"), b"not a picture").unwrap();
    let validation = "[validation]\nsource = \"held-out\"\nevery = 10\nimages = 1\n";
    let mut e = experiment(&dir, validation);
    e.train.max_steps = Some(20);
    let outcome = train(&e, &options(&dir, "v", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(outcome.run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("validation").is_some())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["validation_failed"], 1, "{line}");
        assert!(line["validation_failures"][0]["name"].as_str().unwrap().contains("broken"), "{line}");
        assert_eq!(line["validation"]["qssim"]["n"], 4);
    }
    // The held-out loss is the training objective (BCE here) on the readable
    // pictures: recomputed in plain loops from the step-20 head's prediction.
    let head = outcome.run_dir.join("checkpoints/step-00000020/head.safetensors");
    let model =
        colorize_model::Colorizer::load(&colorize_model::weights::embedded_trunk(), &head, &Device::Cpu).unwrap();
    let side = colorize_core::Side::new(32).unwrap();
    let (mut sum, mut pixels) = (0.0f64, 0usize);
    for i in 0..4 {
        let rgb = colorize_data::decode::load_rgb(&held_out.join(format!("p{i}.png"))).unwrap().rgb;
        let planes = colorize_data::prepare::Planes::from_rgb(
            &colorize_data::prepare::square(&rgb, side, colorize_data::CropPolicy::Center).unwrap(),
        );
        let y = model.gray_tensor(&planes.y, 1, 32, 32).unwrap();
        let p: Vec<f32> = model.predict(&y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (&p, &t) in p.iter().zip(&planes.uv) {
            let (p, t) = (f64::from(p), f64::from(t) / 255.0);
            sum -= t * p.ln() + (1.0 - t) * (1.0 - p).ln();
        }
        pixels += 32 * 32;
    }
    let want = sum / pixels as f64;
    let logged = lines[1]["validation_loss"].as_f64().unwrap();
    assert!((logged - want).abs() < 1e-4 * want, "logged {logged}, recomputed {want}");
    let best = outcome.run_dir.join("checkpoints/best");
    let target = std::fs::read_link(&best).expect("best is a link");
    assert!(target.to_string_lossy().starts_with("best-step-"), "{target:?}");
    assert!(best.join("head.safetensors").is_file());
    let folders: Vec<String> = std::fs::read_dir(outcome.run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("best-"))
        .collect();
    assert_eq!(folders.len(), 1, "the replaced best's folder is gone: {folders:?}");
}

fn loss_falls(name: &str, sampled_pixels: Option<usize>) {
    let dir = prepare(name);
    let mut e = experiment(&dir, "");
    e.train.sampled_pixels = sampled_pixels;
    let outcome: TrainOutcome = train(&e, &options(&dir, "a", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    assert_eq!(outcome.steps, 40);
    let l = losses(&outcome.run_dir);
    assert_eq!(l.len(), 40);
    // BCE's floor is the targets' entropy, not 0: compare what is above it.
    let cache = colorize_data::UvCache::open(&e.data.cache).unwrap();
    let mut floor = 0.0;
    for i in 0..cache.len() {
        for &t in cache.get(i).unwrap().uv {
            let t = f64::from(t) / 255.0;
            let h = |p: f64| if p > 0.0 { -p * p.ln() } else { 0.0 };
            floor += h(t) + h(1.0 - t);
        }
    }
    floor /= (cache.len() * 32 * 32) as f64;
    let excess = |range: std::ops::Range<usize>| {
        l[range.clone()].iter().map(|(_, v)| v - floor).sum::<f64>() / range.len() as f64
    };
    let (first, last) = (excess(0..5), excess(35..40));
    assert!(last < 0.5 * first, "excess loss {first:.5} -> {last:.5} (floor {floor:.5})");
    // Checkpoints: the last two kept.
    let kept: Vec<u64> =
        colorize_train::checkpoint::list_steps(&outcome.run_dir.join("checkpoints")).iter().map(|(s, _)| *s).collect();
    assert_eq!(kept, [30, 40]);
    assert!(outcome.last_checkpoint.as_ref().is_some_and(|p| p.is_file()));
    assert!(outcome.run_dir.join("config.toml").is_file() && outcome.run_dir.join("run.json").is_file());
}

#[test]
fn an_interrupted_run_resumes_bit_for_bit() {
    resumes_bit_for_bit("resume", "", |_| {});
}

/// Adam's moments and its step count come back from the checkpoint.
#[test]
fn an_interrupted_adam_run_resumes_bit_for_bit() {
    resumes_bit_for_bit("resume-adam", "", |e| {
        e.train.optimizer.kind = colorize_train::config::OptimizerKind::Adam;
        e.train.optimizer.momentum = 0.0;
        e.train.optimizer.lr = 0.003;
    });
}

/// The bins loss's prior and rebalancing weights come back from the head.
#[test]
fn an_interrupted_bins_run_resumes_bit_for_bit() {
    resumes_bit_for_bit("resume-bins", BINS, |_| {});
}

/// A head with scene context: its scene weight (and its optimizer state)
/// comes back from the checkpoint, on sampled pixels.
#[test]
fn an_interrupted_scene_context_run_resumes_bit_for_bit() {
    resumes_bit_for_bit("resume-scene", "sampled_pixels = 32", |e| e.model.head.scene_context = true);
}

/// Random crops (here with mirroring) are drawn per step, so a resumed run
/// sees the same windows.
#[test]
fn an_interrupted_cropped_run_resumes_bit_for_bit() {
    resumes_bit_for_bit("resume-crop", "random_crop = 16\nflip = true", |_| {});
}

/// `train.init_head`: a run that starts from another run's head starts
/// where that run ended (not at a fresh head's loss), with its own config's
/// prediction settings; a head of another shape is refused.
#[test]
fn a_run_can_start_from_a_saved_head() {
    let dir = prepare("init-head");
    let mut first = experiment(&dir, "");
    first.model.head.chroma_smoothing = 2.0;
    let a = train(&first, &options(&dir, "a", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    let head = a.last_checkpoint.clone().unwrap();
    let mut second = experiment(&dir, "");
    second.train.init_head = Some(head.clone());
    second.train.max_steps = Some(1);
    let b = train(&second, &options(&dir, "b", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    let (la, lb) = (losses(&a.run_dir), losses(&b.run_dir));
    let (a_first, a_last, b_first) = (la[0].1, la[39].1, lb[0].1);
    assert!(
        (b_first - a_last).abs() < (a_first - a_last).abs() / 4.0,
        "first loss {b_first} is near where the saved head's run ended ({a_first} -> {a_last})"
    );
    let smoothing = |p: &Path| colorize_model::HypercolumnHead::config_of_file(p).unwrap().chroma_smoothing;
    assert_eq!((smoothing(&head), smoothing(b.last_checkpoint.as_ref().unwrap())), (2.0, 0.0));

    let mut other_shape = second.clone();
    other_shape.model.head.conv1_channels = 8;
    let err = train(&other_shape, &options(&dir, "c", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("train.init_head") && err.contains(&head.display().to_string()), "{err}");
}

const BINS: &str = "loss = \"bins\"\n[train.bins]\nrebalance = 0.5\n";

fn resumes_bit_for_bit(name: &str, train_extra: &str, tweak: fn(&mut Experiment)) {
    let dir = prepare(name);
    let mut e = experiment_with(&dir, train_extra, "");
    tweak(&mut e);
    let mut short = e.clone();
    short.train.max_steps = Some(16);
    let whole = train(&short, &options(&dir, "whole", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();

    // Interrupted after step 7 (a Ctrl-C), not on a checkpoint boundary.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let cut = train(&short, &options(&dir, "cut", stop), &mut |event| {
        if let Event::Step { step: 7, .. } = event {
            flag.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert!(cut.interrupted);
    assert_eq!(cut.steps, 7);

    let resumed_config = run_config(&cut.run_dir).unwrap();
    let mut resume = options(&dir, "cut", Arc::new(AtomicBool::new(false)));
    resume.resume = Some(cut.run_dir.clone());
    let resumed = train(&resumed_config, &resume, &mut |_| {}).unwrap();
    assert_eq!(resumed.steps, 16);

    let (a, b) = (losses(&whole.run_dir), losses(&resumed.run_dir));
    assert_eq!(a.len(), 16);
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert_eq!(la.to_bits(), lb.to_bits(), "loss at step {sa}: {la} vs {lb}");
    }
    let head = |run: &PathBuf| std::fs::read(run.join("checkpoints/step-00000016/head.safetensors")).unwrap();
    assert!(head(&whole.run_dir) == head(&resumed.run_dir), "final weights differ");
}

#[test]
fn a_mismatched_or_corrupt_checkpoint_is_refused() {
    let dir = prepare("refuse");
    let mut e = experiment(&dir, "");
    e.train.max_steps = Some(10);
    let outcome = train(&e, &options(&dir, "r", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    let run = outcome.run_dir;
    let mut resume = options(&dir, "r", Arc::new(AtomicBool::new(false)));
    resume.resume = Some(run.clone());

    // Another config (a different learning rate) against the checkpoint's.
    let mut other = run_config(&run).unwrap();
    other.train.optimizer.lr = 0.5;
    let err = train(&other, &resume, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another config"), "{err}");

    // Another head shape.
    let mut other = run_config(&run).unwrap();
    other.model.head.conv1_channels = 8;
    let err = train(&other, &resume, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another config") || err.contains("head"), "{err}");

    // A corrupt state file.
    let state = run.join("checkpoints/step-00000010/state.json");
    std::fs::write(&state, "{ not json").unwrap();
    let err = train(&run_config(&run).unwrap(), &resume, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("state.json"), "{err}");
}

/// A cache whose every file was unusable holds no images: training says so
/// (it used to panic in the batch loader when nothing needed measuring).
#[test]
fn an_empty_cache_is_an_error_not_a_panic() {
    let dir = tempdir("empty");
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    std::fs::write(dir.join("photos/broken.jpg"), b"not a picture").unwrap();
    let e = experiment(&dir, "");
    write_cache(&e.data, false, &AtomicBool::new(false), &|_| {}).unwrap();
    for standardise in [false, true] {
        let mut e = e.clone();
        e.model.head.standardise = standardise;
        let err = train(&e, &options(&dir, "a", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("no images"), "{err}");
    }
    let cache = Arc::new(colorize_data::UvCache::open(&e.data.cache).unwrap());
    let err = colorize_data::BatchLoader::start(cache, 1, 4, 0, 0).err().unwrap();
    assert!(err.to_string().contains("no images"), "{err}");
}

/// A finished run extended with a larger `max_steps` (and other logging)
/// continues where it stopped and ends where a run of that length would;
/// a change to the computation is still refused.
#[test]
fn a_finished_run_can_be_extended() {
    let dir = prepare("extend");
    let mut long = experiment(&dir, "");
    long.train.max_steps = Some(16);
    let whole = train(&long, &options(&dir, "whole", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();

    let mut short = long.clone();
    short.train.max_steps = Some(10);
    let first = train(&short, &options(&dir, "extended", Arc::new(AtomicBool::new(false))), &mut |_| {}).unwrap();
    assert_eq!(first.steps, 10);
    let mut extended = run_config(&first.run_dir).unwrap();
    extended.train.max_steps = Some(16);
    extended.train.log_every = 2;
    let mut resume = options(&dir, "extended", Arc::new(AtomicBool::new(false)));
    resume.resume = Some(first.run_dir.clone());
    let done = train(&extended, &resume, &mut |_| {}).unwrap();
    assert_eq!(done.steps, 16);
    let head = |run: &PathBuf| std::fs::read(run.join("checkpoints/step-00000016/head.safetensors")).unwrap();
    assert!(head(&whole.run_dir) == head(&done.run_dir), "the extended run ends where the long one does");
    assert_eq!(run_config(&done.run_dir).unwrap().train.max_steps, Some(16), "the run folder records its new length");
    assert!(std::fs::read_to_string(done.run_dir.join("resumes.jsonl")).unwrap().contains("\"max_steps\":16"));

    let mut other = run_config(&done.run_dir).unwrap();
    other.train.max_steps = Some(20);
    other.train.batch_size = 2;
    let err = train(&other, &resume, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another config"), "{err}");
}

/// A checkpoint is always a state training can continue from: a head with
/// a non-finite value is refused, and nothing is left behind.
#[test]
fn a_non_finite_head_is_never_checkpointed() {
    use colorize_model::{Colorizer, HeadConfig};
    use colorize_train::checkpoint::{is_finite, write, TrainState};
    let dir = tempdir("finite");
    let head = HeadConfig { conv1_channels: 4, conv2_channels: 2, ..HeadConfig::default() };
    let model = Colorizer::new(&colorize_model::weights::embedded_trunk(), head, 1, &Device::Cpu).unwrap();
    let optimizer = colorize_train::optimizer::Optimizer::new(&Default::default());
    let state = TrainState {
        format_version: colorize_train::checkpoint::FORMAT_VERSION,
        step: 3,
        epoch: 0,
        batch: 3,
        seed: 1,
        lr: 0.1,
        loss: 1.0,
        config_hash: String::new(),
        manifest_hash: String::new(),
        head,
        val_qssim: None,
        best_qssim: None,
    };
    assert!(write(&dir, "step-00000003", &model, &optimizer, &state).is_ok());
    let vars = model.varmap().data().lock().unwrap().clone();
    let bias = &vars["out.bias"];
    bias.set(&candle_core::Tensor::new(&[0.5f32, f32::NAN], &Device::Cpu).unwrap()).unwrap();
    assert!(!is_finite(bias.as_tensor()).unwrap());
    let err = write(&dir, "step-00000004", &model, &optimizer, &state).unwrap_err().to_string();
    assert!(err.contains("out.bias") && err.contains("non-finite"), "{err}");
    assert!(!dir.join("step-00000004").exists() && !dir.join(".step-00000004.tmp").exists());
}

/// The config fingerprint ignores the run's length and cadence; a change
/// to the computation changes it.
#[test]
fn the_config_fingerprint_ignores_run_length_and_cadence() {
    let dir = tempdir("fingerprint");
    let base = experiment(&dir, "");
    let hash = |e: &Experiment| colorize_train::config_hash(e).unwrap();
    let mut longer = base.clone();
    longer.train.max_steps = Some(400);
    longer.train.log_every = 7;
    assert_eq!(hash(&base), hash(&longer));
    let mut other = base.clone();
    other.train.optimizer.lr = 0.05;
    assert_ne!(hash(&base), hash(&other));
}
