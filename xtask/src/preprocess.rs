//! `cargo xtask preprocess`: the cache of Y and UV planes.

use crate::flags::PreprocessArgs;
use crate::{absolute, flag_path, interrupt_flag, progress, project_root};
use anyhow::{bail, Context, Result};
use colorize_core::Side;
use colorize_data::cache::Event;
use colorize_data::{write_cache, SourceLayout};
use colorize_train::Experiment;
use indicatif::ProgressBar;
use std::sync::OnceLock;
use std::time::Instant;

pub fn run(args: PreprocessArgs) -> Result<()> {
    let experiment = Experiment::load(&flag_path(args.config.as_deref(), "configs/smoke.toml"), &project_root())?;
    let mut cfg = experiment.data;
    if let Some(source) = &args.source {
        cfg.source = absolute(source);
    }
    if let Some(layout) = &args.layout {
        cfg.layout = serde_json::from_value(serde_json::Value::String(layout.clone()))
            .with_context(|| format!("--layout {layout}: expected ilsvrc, sun, tiny-imagenet or folder"))?;
    }
    if let Some(out) = &args.out {
        cfg.cache = absolute(out);
    }
    if let Some(limit) = args.limit {
        cfg.limit = Some(limit);
    }
    if let Some(size) = args.size {
        cfg.size = Side::new(size).context("--size")?;
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;

    println!(
        "preprocess: {} ({}) -> {} at {}x{}, {} threads",
        cfg.source.display(),
        layout_name(cfg.layout),
        cfg.cache.display(),
        cfg.size,
        cfg.size,
        threads
    );
    let bar: OnceLock<ProgressBar> = OnceLock::new();
    let observer = |event: Event<'_>| match event {
        Event::Started { listed, target } => {
            println!("listed {listed} images; caching {target}");
            let _ = bar.set(progress::bar(target as u64, "images"));
        }
        Event::Cached { n } => {
            if let Some(bar) = bar.get() {
                bar.inc(n as u64);
            }
        }
        Event::Skipped { path, reason } if reason != "grayscale" => {
            let line = format!("skipped {path}: {reason}");
            match bar.get() {
                Some(bar) => progress::note(bar, line),
                None => eprintln!("{line}"),
            }
        }
        Event::Skipped { .. } => {}
    };
    let started = Instant::now();
    let stop = interrupt_flag();
    let summary = pool.install(|| write_cache(&cfg, args.resume, &stop, &observer))?;
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    if summary.already_complete {
        println!(
            "the cache in {} is complete ({} images, made with this config): nothing to do",
            cfg.cache.display(),
            summary.cached
        );
        return Ok(());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "cached {} images in {:.1} s ({:.1} images/s); {} grayscale {}, {} unreadable skipped; {} shards written, {} reused",
        summary.cached,
        seconds,
        summary.cached as f64 / seconds.max(1e-9),
        summary.grayscale,
        if cfg.keep_grayscale { "kept" } else { "excluded" },
        summary.skipped,
        summary.shards_written,
        summary.shards_reused,
    );
    println!("manifest: {}; peak memory {}", summary.manifest.display(), crate::peak_memory());
    if summary.interrupted {
        println!("interrupted: run the same command with --resume to finish");
    }
    Ok(())
}

fn layout_name(layout: SourceLayout) -> &'static str {
    match layout {
        SourceLayout::Ilsvrc => "ILSVRC layout",
        SourceLayout::Sun => "SUN397 layout",
        SourceLayout::TinyImagenet => "Tiny ImageNet layout",
        SourceLayout::Folder => "folder",
    }
}
