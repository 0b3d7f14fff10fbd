//! `cargo xtask train`: the training loop with its console report.

use crate::flags::TrainArgs;
use crate::{absolute, flag_path, interrupt_flag, project_root};
use anyhow::Result;
use colorize_data::cache::Event as CacheEvent;
use colorize_data::write_cache;
use colorize_eval::Summary;
use colorize_model::parse_device;
use colorize_train::{run_config, train, Event, Experiment, TrainOptions};
use std::collections::BTreeMap;

pub fn run(args: TrainArgs) -> Result<()> {
    let mut experiment = match &args.resume {
        Some(run_dir) => run_config(&absolute(run_dir))?,
        None => Experiment::load(&flag_path(args.config.as_deref(), "configs/smoke.toml"), &project_root())?,
    };
    if let Some(steps) = args.max_steps {
        experiment.train.max_steps = Some(steps);
    }
    let device = parse_device(args.device.as_deref().unwrap_or(&experiment.train.device))?;
    if args.preprocess && !experiment.data.cache.join("manifest.json").exists() {
        println!("preprocessing {} into {}", experiment.data.source.display(), experiment.data.cache.display());
        let quiet = |_: CacheEvent<'_>| {};
        write_cache(&experiment.data, false, &interrupt_flag(), &quiet)?;
    }
    let options = TrainOptions {
        runs_root: project_root().join("runs"),
        run_dir: args.run_dir.as_ref().map(|p| absolute(p)),
        resume: args.resume.as_ref().map(|p| absolute(p)),
        device,
        stop: interrupt_flag(),
        project_root: project_root(),
    };
    let mut report = |event: Event<'_>| match event {
        Event::Started { run_dir, start_step, total_steps, images, validation } => {
            println!("train '{}': {images} cached images, steps {start_step}..{total_steps}", experiment.name);
            if validation > 0 {
                println!("validation: {validation} images");
            }
            println!("run folder: {}", run_dir.display());
        }
        Event::Step { step, epoch, loss, lr, images_per_s } => {
            println!("step {step:>7}  epoch {epoch:>4}  loss {loss:.5}  lr {lr:.3e}  {images_per_s:.1} images/s");
        }
        Event::Validation { step, scores, failed, gray, mean_chroma, loss } => {
            let mean = |m: &BTreeMap<String, Summary>, name: &str| m.get(name).map_or(f64::NAN, |s| s.mean);
            let line: Vec<String> = scores
                .iter()
                .map(|(name, s)| {
                    format!(
                        "{name} {:.4} (gray {:.4}, mean chroma {:.4})",
                        s.mean,
                        mean(gray, name),
                        mean(mean_chroma, name)
                    )
                })
                .collect();
            let loss = loss.map_or(String::new(), |l| format!("loss {l:.5}, "));
            println!("validation at step {step}: {loss}{}", line.join(", "));
            if !failed.is_empty() {
                println!("validation at step {step}: {} pictures could not be scored, left out:", failed.len());
                for f in failed {
                    println!("  {}: {}", f.name, f.reason);
                }
            }
        }
        Event::Checkpoint { path, .. } => println!("checkpoint: {}", path.display()),
    };
    let outcome = train(&experiment, &options, &mut report)?;
    if outcome.interrupted {
        println!(
            "interrupted at step {}: continue with `cargo xtask train --resume {}`",
            outcome.steps,
            outcome.run_dir.display()
        );
    } else {
        println!("done: {} steps, last loss {:.5}", outcome.steps, outcome.last_loss);
    }
    if let Some(best) = outcome.best_qssim {
        println!("best validation QSSIM {best:.4}");
    }
    if let Some(head) = &outcome.last_checkpoint {
        println!("head: {}", head.display());
    }
    println!("TensorBoard: tensorboard --logdir {}", outcome.run_dir.parent().unwrap_or(&outcome.run_dir).display());
    Ok(())
}
