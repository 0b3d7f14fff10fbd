//! `cargo xtask bench`: measurements side by side with a peer, in one run,
//! reported as ratios (these machines are noisy; absolute numbers are not).
//!
//! Peers run in a bench-only Python virtual environment that the bench
//! makes (`target/bench-venv`), never in the tests.

mod model;
mod preprocess;
mod qssim;

use crate::flags::{BenchArgs, BenchTarget};
use crate::project_root;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        BenchTarget::Preprocess => preprocess::run(&args),
        BenchTarget::Qssim => qssim::run(&args),
        BenchTarget::Model => model::run(&args),
    }
}

/// A Python with `packages` installed, in `target/bench-venv`; or, where
/// `COLORIZE_BENCH_PYTHON` names one (a machine without a package index,
/// with its own PyTorch), that Python as it is.
pub fn python_with(packages: &[&str]) -> Result<PathBuf> {
    if let Some(python) = std::env::var_os("COLORIZE_BENCH_PYTHON") {
        println!("peer Python: {} (COLORIZE_BENCH_PYTHON; nothing installed)", python.to_string_lossy());
        return Ok(PathBuf::from(python));
    }
    let venv = project_root().join("target/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        println!("making the bench venv {}", venv.display());
        let status =
            Command::new("python3").args(["-m", "venv"]).arg(&venv).status().context("running python3 -m venv")?;
        if !status.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {} failed", packages.join(" "));
    }
    Ok(python)
}

/// Runs a Python script (given as text) with arguments; returns its stdout.
pub fn run_python(python: &PathBuf, script: &str, args: &[String]) -> Result<String> {
    let path = std::env::temp_dir().join(format!("colorize-bench-{}.py", std::process::id()));
    std::fs::write(&path, script)?;
    let out = Command::new(python).arg(&path).args(args).output().context("running the Python peer")?;
    if !out.status.success() {
        bail!("the Python peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
