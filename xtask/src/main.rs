//! `cargo xtask`: the project's one command line.
//!
//! Why an xtask and not a set of binaries: every step of the pipeline
//! (preprocess, train, eval, colorize, bench, demo) is run the same way from
//! a fresh clone, with nothing to install but Rust. Each command lives in its
//! own module with a `run` function; `flags.rs` declares the whole CLI.
//! The libraries do the work; this crate only parses, reports and glues.

mod bench;
mod colorize;
mod demo;
mod eval;
mod flags;
mod gpu_check;
mod model;
mod oracle;
mod preprocess;
mod progress;
mod runs;
mod train;

use anyhow::Result;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

fn main() {
    keep_freed_memory();
    let flags = flags::Xtask::parse();
    if let Err(err) = run(flags) {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn run(flags: flags::Xtask) -> Result<()> {
    colorize_model::kernels::force_reference(flags.reference_kernels);
    match flags.command {
        flags::Command::Preprocess(args) => preprocess::run(args),
        flags::Command::Colorize(args) => colorize::run(args),
        flags::Command::Eval(args) => eval::run(args),
        flags::Command::Train(args) => train::run(args),
        flags::Command::Demo(args) => demo::run(args),
        flags::Command::Bench(args) => bench::run(args),
        flags::Command::Runs(args) => runs::run(args),
        flags::Command::GpuCheck(args) => gpu_check::run(args),
        flags::Command::Oracle(args) => oracle::run(args),
        flags::Command::Retune(args) => {
            if !args.model.ensemble.is_empty() {
                // A head file holds one head: the others would be dropped silently.
                anyhow::bail!("--ensemble: retune writes one head file; retune each head of an ensemble on its own");
            }
            let mut colorizer = model::load_colorizer(&args.model, args.checkpoint.as_deref())?;
            let size = args.size.unwrap_or_else(|| model::default_side(args.checkpoint.as_deref()));
            colorizer.set_input_side(size)?;
            let out = absolute(&args.out);
            colorizer.save_head(&out)?;
            let c = colorizer.head().config();
            println!(
                "{}: size {size}, chroma smoothing σ {}, guide radius {}, temperature {}, undo rebalance {}",
                out.display(),
                c.chroma_smoothing,
                c.chroma_guide_radius,
                c.temperature,
                c.undo_rebalance
            );
            Ok(())
        }
    }
}

/// The workspace root: configs' relative paths are relative to it.
/// The workspace root: where this binary was built, or where `COLORIZE_ROOT`
/// says (binaries carried to another machine, `scripts/build-gpu.sh`).
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("COLORIZE_ROOT") {
        return PathBuf::from(root);
    }
    // tidy: a compile-time path with a parent.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

/// A path flag: given, it is relative to where the user is; absent, the
/// default is relative to the project root (so commands work from anywhere).
pub fn flag_path(given: Option<&Path>, default: &str) -> PathBuf {
    given.map_or_else(|| project_root().join(default), absolute)
}

/// Makes a path given on the command line absolute, relative to the
/// directory the user ran the command in.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A flag raised by the first Ctrl-C; long jobs check it between units of
/// work and stop cleanly. A second Ctrl-C exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        let mut first: Option<std::time::Instant> = None;
        let installed = ctrlc::set_handler(move || {
            // One stop request often arrives twice at once (`timeout` signals
            // the process and its group): only a second Ctrl-C a moment
            // later means "exit now, without the checkpoint".
            match first {
                Some(at) if at.elapsed() > std::time::Duration::from_millis(500) => {
                    eprintln!("\ninterrupted twice: exiting now");
                    std::process::exit(130);
                }
                Some(_) => {}
                None => {
                    first = Some(std::time::Instant::now());
                    handler_flag.store(true, Ordering::SeqCst);
                    eprintln!("\ninterrupted: finishing the current step (Ctrl-C again to exit at once)");
                }
            }
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will not stop cleanly: {e}");
        }
        flag
    })
    .clone()
}

/// Large buffers (a step's intermediates are tens of MB) come from the heap
/// and go back to it, instead of glibc's default of a fresh `mmap` for
/// anything over 32 MB and `munmap` on free: every such buffer's pages were
/// then faulted in and zeroed by the kernel again on every use (12% of a
/// forward pass at 224 was the kernel clearing pages). Memory freed stays
/// with the process for the next step.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// This process's peak resident memory so far (Linux's VmHWM), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok()? / 1024.0)
}

/// `peak_memory_mib` for the summaries of long commands; "unknown" where
/// the system does not say.
pub fn peak_memory() -> String {
    peak_memory_mib().map_or_else(|| "unknown".into(), |mib| format!("{mib:.0} MB"))
}

/// The GPU memory this process holds now, in MiB, from nvidia-smi.
pub fn gpu_memory_of_this_process() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let pid = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
        let mut fields = line.split(',').map(str::trim);
        (fields.next() == Some(pid.as_str())).then(|| fields.next()?.parse().ok())?
    })
}
