//! `TbLogger`: TensorBoard event files through tensorboard-rs, made safe.
//!
//! tensorboard-rs panics on any I/O error (its writer thread `expect`s), and
//! its `add_image` copies bytes as interleaved HWC into an image of width
//! `dim[1]` and height `dim[2]` although it documents `[3, H, W]` (and
//! writes the two swapped into the summary's width and height fields, which
//! TensorBoard does not use to draw the PNG). This
//! wrapper is the one place that knows: it passes HWC bytes with
//! `[3, W, H]`, and turns a panic into a warning and a disabled logger, so a
//! full disk never kills a training run.

use image::RgbImage;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tensorboard_rs::summary_writer::SummaryWriter;

pub struct TbLogger {
    writer: Option<SummaryWriter>,
}

impl TbLogger {
    /// Event files go straight into `dir` (a run folder), so that
    /// `tensorboard --logdir runs` shows one run per folder.
    pub fn new(dir: &Path) -> TbLogger {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("warning: TensorBoard logging off: cannot create {}: {e}", dir.display());
            return TbLogger { writer: None };
        }
        let writer = catch_unwind(|| SummaryWriter::new(dir)).ok();
        if writer.is_none() {
            eprintln!("warning: TensorBoard logging off: cannot write event files in {}", dir.display());
        }
        TbLogger { writer }
    }

    fn with(&mut self, f: impl FnOnce(&mut SummaryWriter)) {
        let Some(writer) = self.writer.as_mut() else { return };
        if catch_unwind(AssertUnwindSafe(|| f(writer))).is_err() {
            eprintln!("warning: TensorBoard logging failed; turning it off for this run");
            // Its writer thread may be dead: dropping it could panic again.
            std::mem::forget(self.writer.take());
        }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        self.with(|w| w.add_scalar(tag, value as f32, step as usize));
    }

    /// An RGB picture of any size.
    pub fn image(&mut self, tag: &str, image: &RgbImage, step: u64) {
        let dims = [3, image.width() as usize, image.height() as usize];
        self.with(|w| w.add_image(tag, image.as_raw(), &dims, step as usize));
    }

    pub fn flush(&mut self) {
        self.with(|w| w.flush());
    }
}
