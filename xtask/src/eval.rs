//! `cargo xtask eval`: the measures on a folder of predictions, or on a
//! model and baselines over a dataset, with the protocol printed.

use crate::flags::EvalArgs;
use crate::{absolute, model, progress};
use anyhow::{bail, Context, Result};
use colorize_core::Side;
use colorize_data::{CropPolicy, Manifest, SourceLayout};
use colorize_eval::score::{dataset_items, pair_folders, seeded_subset};
use colorize_eval::{score, Item, Metric, Predictor, Protocol, Scoring};
use colorize_model::Colorizer;
use serde_json::json;

fn parse_enum<T: serde::de::DeserializeOwned>(flag: &str, value: &str, expected: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.into()))
        .with_context(|| format!("{flag} {value}: expected {expected}"))
}

/// Reads the flags, lists the pictures, scores them with the model and the
/// baselines, and writes the reports.
pub fn run(args: EvalArgs) -> Result<()> {
    let metrics = Metric::parse_list(&args.metric).map_err(anyhow::Error::msg).context("--metric")?;
    let side = Side::new(args.size.unwrap_or_else(|| crate::model::default_side(args.checkpoint.as_deref())))
        .context("--size")?;
    let baselines = baselines(&args)?;
    refuse_model_settings_for_files(&args)?;
    let (items, unmatched, source) = pictures(&args)?;
    let colorizer = if uses_model(&args, &baselines) {
        Some(model::load_colorizer(&args.model, args.checkpoint.as_deref())?)
    } else {
        None
    };
    let mean_uv = match &args.cache {
        Some(dir) => Manifest::read(&absolute(dir))?.mean_uv,
        None => [128.0, 128.0],
    };
    let predictors = predictors(&args, colorizer.as_ref(), side, &baselines, mean_uv);
    let protocol = protocol(&args, side)?;
    let main_name = predictors.first().map(|(n, _)| n.clone()).unwrap_or_default();
    let protocol_info = json!({
        "description": describe(protocol, side),
        "protocol": protocol,
        "source": source,
        "prediction": main_name,
        "checkpoint": args.checkpoint.is_some().then(|| model::head_path(args.checkpoint.as_deref())).transpose()?,
        "ensemble": args.model.ensemble.iter().map(|m| model::head_path(Some(m))).collect::<Result<Vec<_>>>()?,
        "prediction_settings": colorizer.as_ref().map(|c| prediction_settings(c, side)),
        "baselines": baselines,
        "mean_uv": mean_uv,
        "metrics": metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "hue": {
            "truth_min_chroma": colorize_eval::measures::HUE_MIN_CHROMA,
            "tolerance_degrees": colorize_eval::measures::HUE_TOLERANCE_DEGREES,
            "prediction_min_chroma": colorize_eval::measures::HUE_MIN_PREDICTED_CHROMA,
        },
        "images": items.len(),
    });
    println!("eval: {} images; {}", items.len(), describe(protocol, side));
    let others: Vec<&str> = predictors.iter().skip(1).map(|(n, _)| n.as_str()).collect();
    println!(
        "prediction: {main_name}{}",
        if others.is_empty() { String::new() } else { format!("; baselines: {}", others.join(", ")) }
    );

    let scoring = Scoring {
        protocol,
        metrics,
        predictors,
        qssim_maps: args.qssim_maps.as_ref().map(|p| absolute(p)),
        pictures: args.html.as_ref().map(|p| absolute(p)),
    };
    let bar = progress::bar(items.len() as u64, "images");
    let report = score(&items, &scoring, protocol_info, unmatched, &|n| bar.inc(n as u64));
    bar.finish_and_clear();
    write_reports(&args, &report, &main_name)?;
    if !report.failed.is_empty() {
        bail!("{} of {} images could not be scored (listed above)", report.failed.len(), items.len());
    }
    Ok(())
}

/// `--baseline gray,mean-chroma`, checked.
fn baselines(args: &EvalArgs) -> Result<Vec<String>> {
    let list = args.baseline.as_deref().unwrap_or_default();
    let baselines: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if let Some(b) = baselines.iter().find(|b| *b != "gray" && *b != "mean-chroma") {
        bail!("--baseline {b}: expected gray or mean-chroma");
    }
    Ok(baselines)
}

/// The pictures to score: pairs of prediction and truth files, or a
/// dataset's pictures; the unmatched files; where they came from.
fn pictures(args: &EvalArgs) -> Result<(Vec<Item>, Vec<String>, serde_json::Value)> {
    let (items, unmatched, source) = if let (Some(pred), Some(truth)) = (&args.pred, &args.truth) {
        let (items, unmatched) = pair_folders(&absolute(pred), &absolute(truth))?;
        (items, unmatched, json!({"mode": "pred-truth", "pred": absolute(pred), "truth": absolute(truth)}))
    } else if let (Some(dataset), Some(root)) = (&args.dataset, &args.root) {
        let layout: SourceLayout = parse_enum("--dataset", dataset, "sun, ilsvrc, tiny-imagenet or folder")?;
        let mut items = dataset_items(&absolute(root), layout, &args.split)?;
        if let Some(limit) = args.limit {
            items = seeded_subset(items, limit, args.seed);
        }
        let info = json!({"mode": "dataset", "dataset": dataset, "root": absolute(root), "split": args.split,
                          "limit": args.limit, "seed": args.seed});
        (items, Vec::new(), info)
    } else {
        bail!("say what to score: --pred DIR --truth DIR, or --dataset sun|ilsvrc|folder --root DIR");
    };
    if items.is_empty() {
        bail!("no pairs of images to score");
    }
    Ok((items, unmatched, source))
}

/// `--pred` scores files as they are: a flag that shapes a model's
/// predictions would change nothing there, so it is refused, not ignored.
fn refuse_model_settings_for_files(args: &EvalArgs) -> Result<()> {
    if args.pred.is_none() {
        return Ok(());
    }
    let m = &args.model;
    let given = [
        ("--checkpoint", args.checkpoint.is_some()),
        ("--chroma-smoothing", m.chroma_smoothing.is_some()),
        ("--chroma-guide-radius", m.chroma_guide_radius.is_some()),
        ("--temperature", m.temperature.is_some()),
        ("--undo-rebalance", m.undo_rebalance.is_some()),
        ("--ensemble", !m.ensemble.is_empty()),
    ];
    let named: Vec<&str> = given.iter().filter(|(_, set)| *set).map(|(flag, _)| *flag).collect();
    if !named.is_empty() {
        bail!("{}: a model's prediction settings, but --pred scores prediction files as they are", named.join(", "));
    }
    Ok(())
}

/// The settings the model predicted with (its head's, or the flags'), for the report.
fn prediction_settings(colorizer: &Colorizer, side: Side) -> serde_json::Value {
    let c = colorizer.head().config();
    // A head stores its settings as f32: reported as such (0.6, not 0.6000000238).
    let f32_of = |x: f64| x as f32;
    json!({"side": side.get(), "chroma_smoothing": f32_of(c.chroma_smoothing),
           "chroma_guide_radius": f32_of(c.chroma_guide_radius), "output": c.output,
           "temperature": f32_of(c.temperature), "undo_rebalance": f32_of(c.undo_rebalance)})
}

/// Whether the main prediction is the model's: not when prediction files
/// are scored, nor when only baselines are asked for and no head exists.
fn uses_model(args: &EvalArgs, baselines: &[String]) -> bool {
    let have_head = args.checkpoint.is_some() || colorize_model::weights::embedded_head().is_some();
    args.pred.is_none() && (have_head || baselines.is_empty())
}

/// The main prediction first (the files, else the model), then the baselines.
fn predictors<'a>(
    args: &EvalArgs,
    colorizer: Option<&'a Colorizer>,
    side: Side,
    baselines: &[String],
    mean_uv: [f64; 2],
) -> Vec<(String, Predictor<'a>)> {
    let mut predictors = Vec::new();
    if args.pred.is_some() {
        predictors.push(("prediction".into(), Predictor::Files));
    } else if let Some(model) = colorizer {
        predictors.push(("model".into(), Predictor::Model(model, side)));
    }
    for b in baselines {
        let p = if b == "gray" { Predictor::Gray } else { Predictor::MeanChroma(mean_uv) };
        predictors.push((b.clone(), p));
    }
    predictors
}

fn protocol(args: &EvalArgs, side: Side) -> Result<Protocol> {
    Ok(if args.pred.is_some() {
        Protocol::AsIs
    } else if args.full_res {
        Protocol::FullRes
    } else {
        Protocol::ModelSize { side, crop: parse_enum::<CropPolicy>("--crop", &args.crop, "center or squash")? }
    })
}

fn describe(protocol: Protocol, side: Side) -> String {
    match protocol {
        Protocol::AsIs => "prediction files against truth files, as they are".to_string(),
        Protocol::ModelSize { side, crop } => format!(
            "truth resized and {crop:?}-cropped to {side}x{side} (as preprocessing); prediction from its gray at that size"
        )
        .to_lowercase(),
        Protocol::FullRes => format!(
            "original size: the model sees the gray squashed to {side}x{side}; its chroma is upsampled and joined to \
             the original Y"
        ),
    }
}

/// The table on stdout, the unmatched and failed pictures on stderr, and
/// the JSON, CSV and HTML reports asked for.
fn write_reports(args: &EvalArgs, report: &colorize_eval::Report, main_name: &str) -> Result<()> {
    for u in &report.unmatched {
        eprintln!("unmatched: {u}");
    }
    for f in &report.failed {
        eprintln!("failed: {}: {}", f.name, f.reason);
    }
    print!("{}", report.table(main_name));
    if let Some(path) = &args.json {
        let path = absolute(path);
        std::fs::write(&path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if let Some(path) = &args.csv {
        let path = absolute(path);
        std::fs::write(&path, report.csv()).with_context(|| format!("writing {}", path.display()))?;
        println!("per-image rows: {}", path.display());
    }
    if let Some(dir) = &args.html {
        let dir = absolute(dir);
        let page = colorize_eval::html::write_report(&dir, report, main_name)
            .with_context(|| format!("writing the HTML report in {}", dir.display()))?;
        println!("HTML report: {}", page.display());
    }
    Ok(())
}
