//! `cargo xtask demo`: every stage of the pipeline on the embedded sample
//! photographs, offline, in a few minutes on two cores.

use crate::flags::DemoArgs;
use crate::{flag_path, interrupt_flag, model, project_root};
use anyhow::{Context, Result};
use colorize_core::Side;
use colorize_data::write_cache;
use colorize_eval::score::dataset_items;
use colorize_eval::{score, Metric, Predictor, Protocol, Scoring};

use colorize_model::comparison_strip;
use colorize_model::weights::embedded_head;
use colorize_train::{train, Event, Experiment, TrainOptions};

use std::path::Path;

/// The four stages, each its own function: preprocess, colorize, score,
/// train.
pub fn run(args: DemoArgs) -> Result<()> {
    let out = flag_path(args.out.as_deref(), "runs/demo");
    let photos = flag_path(args.photos.as_deref(), "datasets/samples");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let experiment = demo_experiment(&photos, &out, args.quick)?;

    println!("1/4 preprocess: {} -> {}", photos.display(), experiment.data.cache.display());
    let cache_exists = experiment.data.cache.join("manifest.json").exists();
    let summary = write_cache(&experiment.data, cache_exists, &interrupt_flag(), &|_| {})?;
    println!("    {} photos cached at {}x{}", summary.cached, experiment.data.size, experiment.data.size);

    match embedded_head() {
        None => println!("2/4 colorize: skipped: the project has no embedded colorizer yet\n3/4 score: skipped"),
        Some(head) => colorize_and_score(&args, &head, &photos, &out)?,
    }

    let steps = experiment.train.max_steps.unwrap_or_default();
    println!("4/4 train: a fresh head for {steps} steps on the cached photos ({} config)", experiment.name);
    train_fresh_head(&args, &experiment, &out)?;
    println!("\nLook at the training curves and the gray | prediction | truth strips with:");
    println!("    tensorboard --logdir {}", out.display());
    Ok(())
}

/// configs/smoke.toml on the demo's photos, cached under `out`; a few steps
/// only with `--quick`.
fn demo_experiment(photos: &Path, out: &Path, quick: bool) -> Result<Experiment> {
    let mut experiment = Experiment::load(&project_root().join("configs/smoke.toml"), &project_root())?;
    experiment.data.source = photos.to_path_buf();
    experiment.data.cache = out.join("cache");
    if let Some(v) = &mut experiment.validation {
        v.source = photos.to_path_buf();
    }
    if quick {
        experiment.train.max_steps = Some(6);
        experiment.train.log_every = 3;
        if let Some(v) = &mut experiment.validation {
            v.every = 6;
        }
    }
    Ok(experiment)
}

/// Stages 2 and 3: strips of every photo by the embedded colorizer, and
/// its scores beside gray's at full resolution.
fn colorize_and_score(args: &DemoArgs, head: &Path, photos: &Path, out: &Path) -> Result<()> {
    let (strips, reports) = (out.join("strips"), out.join("scores.json"));
    let colorizer = model::load_colorizer(&args.model, Some(head))?;
    let side = Side::new(model::default_side(Some(head)))?;
    println!(
        "2/4 colorize: the gray of each photo, with the embedded colorizer ({}, chroma smoothing σ {} px, guide radius {} px) -> {}",
        head.display(),
        colorizer.head().config().chroma_smoothing,
        colorizer.head().config().chroma_guide_radius,
        strips.display()
    );
    write_strips(&colorizer, photos, &strips, side)?;
    println!("3/4 score: QSSIM, PSNR, colourfulness at full resolution, with the gray baseline");
    let items = dataset_items(photos, colorize_data::SourceLayout::Folder, "")?;
    let scoring = Scoring {
        protocol: Protocol::FullRes,
        metrics: vec![Metric::Qssim, Metric::Psnr, Metric::Colorfulness, Metric::ColorfulnessGap],
        predictors: vec![("embedded".into(), Predictor::Model(&colorizer, side)), ("gray".into(), Predictor::Gray)],
        qssim_maps: None,
        pictures: None,
    };
    let report = score(&items, &scoring, serde_json::json!({"demo": true, "size": side}), Vec::new(), &|_| {});
    print!("{}", indent(&report.table("embedded")));
    std::fs::write(&reports, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", reports.display()))?;
    println!("    report: {}", reports.display());
    Ok(())
}

/// Stage 4: a fresh head trained on the cached photos, in `out/train`.
fn train_fresh_head(args: &DemoArgs, experiment: &Experiment, out: &Path) -> Result<()> {
    let run_dir = out.join("train");
    let _ = std::fs::remove_dir_all(&run_dir);
    let options = TrainOptions {
        runs_root: out.to_path_buf(),
        run_dir: Some(run_dir),
        resume: None,
        device: colorize_model::parse_device(&args.model.device)?,
        stop: interrupt_flag(),
        project_root: project_root(),
    };
    let outcome = train(experiment, &options, &mut |event| match event {
        Event::Step { step, loss, images_per_s, .. } => {
            println!("    step {step:>4}  loss {loss:.5}  {images_per_s:.1} images/s")
        }
        Event::Validation { scores, gray, .. } => {
            if let (Some(q), Some(g)) = (scores.get("qssim"), gray.get("qssim")) {
                println!("    validation QSSIM {:.4} (gray {:.4})", q.mean, g.mean);
            }
        }
        _ => {}
    })?;
    println!("    run folder: {} (checkpoints, metrics.jsonl, TensorBoard events)", outcome.run_dir.display());
    Ok(())
}

/// gray | colorized | original, at each photo's own size.
fn write_strips(colorizer: &colorize_model::Colorizer, photos: &Path, strips: &Path, side: Side) -> Result<()> {
    std::fs::create_dir_all(strips)?;
    for rel in colorize_data::source::list_images(photos, colorize_data::SourceLayout::Folder, "")? {
        let path = photos.join(&rel);
        let original = match colorize_data::decode::load_rgb(&path) {
            Ok(decoded) => decoded.rgb,
            Err(e) => {
                eprintln!("    skipped {}: {e}", path.display());
                continue;
            }
        };
        let strip = comparison_strip(colorizer, &original, side)?;
        let target = strips.join(&rel).with_extension("png");
        strip.save(&target).with_context(|| format!("writing {}", target.display()))?;
        println!("    {}", target.display());
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
