//! `TbLogger`: TensorBoard event files, through tensorboard-rs's file
//! writer, made safe.
//!
//! tensorboard-rs panics on any I/O error (its writer thread `expect`s); this
//! wrapper turns a panic into a warning and a disabled logger, so a full disk
//! never kills a training run. It builds the messages tensorboard-rs gets
//! wrong or lacks itself: its image summary swaps width and height in the
//! header (and reads its `dim` as [3, W, H] although it documents [3, H, W]),
//! and it has no SessionLog, which a resumed run needs.

use image::RgbImage;
use protobuf::RepeatedField;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_proto::summary::{Summary, Summary_Image, Summary_Value};
use tensorboard_rs::summary_writer::FileWriter;

pub struct TbLogger {
    writer: Option<FileWriter>,
}

impl TbLogger {
    /// Event files go straight into `dir` (a run folder), so that
    /// `tensorboard --logdir runs` shows one run per folder.
    ///
    /// `resumed_after`: the step of the checkpoint a resumed run continues
    /// from. The steps after it were logged by the interrupted process too;
    /// a SessionLog START at the first redone step makes TensorBoard drop
    /// those older events, so that each step shows once.
    pub fn new(dir: &Path, resumed_after: Option<u64>) -> TbLogger {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("warning: TensorBoard logging off: cannot create {}: {e}", dir.display());
            return TbLogger { writer: None };
        }
        let writer = catch_unwind(|| FileWriter::new(dir)).ok();
        if writer.is_none() {
            eprintln!("warning: TensorBoard logging off: cannot write event files in {}", dir.display());
        }
        let mut logger = TbLogger { writer };
        if let Some(step) = resumed_after {
            let mut start = SessionLog::new();
            start.set_status(SessionLog_SessionStatus::START);
            let mut event = Event::new();
            event.set_session_log(start);
            logger.with(|w| w.add_event(&event, step as usize + 1));
        }
        logger
    }

    fn with(&mut self, f: impl FnOnce(&mut FileWriter)) {
        let Some(writer) = self.writer.as_mut() else { return };
        if catch_unwind(AssertUnwindSafe(|| f(writer))).is_err() {
            eprintln!("warning: TensorBoard logging failed; turning it off for this run");
            // Its writer thread may be dead: dropping it could panic again.
            std::mem::forget(self.writer.take());
        }
    }

    fn summary(&mut self, value: Summary_Value, step: u64) {
        let mut summary = Summary::new();
        summary.set_value(RepeatedField::from(vec![value]));
        self.with(|w| w.add_summary(summary, step as usize));
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_simple_value(value as f32);
        self.summary(v, step);
    }

    /// An RGB picture of any size, as a PNG with its true width and height.
    pub fn image(&mut self, tag: &str, image: &RgbImage, step: u64) {
        let mut png = Vec::new();
        if let Err(e) = image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png) {
            eprintln!("warning: TensorBoard image {tag} not written: {e}");
            return;
        }
        let mut picture = Summary_Image::new();
        picture.set_width(image.width() as i32);
        picture.set_height(image.height() as i32);
        picture.set_colorspace(3);
        picture.set_encoded_image_string(png);
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_image(picture);
        self.summary(v, step);
    }

    pub fn flush(&mut self) {
        self.with(|w| w.flush());
    }
}
