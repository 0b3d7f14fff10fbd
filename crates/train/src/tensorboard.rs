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
use protobuf::well_known_types::Value as ProtoValue;
use protobuf::{Message, RepeatedField};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tensorboard_proto::api::{Experiment, HParamInfo, MetricInfo, MetricName};
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionStartInfo};
use tensorboard_proto::summary::{Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image, Summary_Value};
use tensorboard_rs::summary_writer::FileWriter;

/// A hyperparameter's value as TensorBoard shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum HParam {
    Number(f64),
    Text(String),
    Flag(bool),
}

/// A resolved config's scalar values, by dotted key (`train.optimizer.lr`):
/// what the HParams dashboard compares between runs. Lists are joined.
pub fn hparams_of(config: &toml::Value) -> BTreeMap<String, HParam> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, HParam>) {
        let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
        match value {
            toml::Value::Table(table) => table.iter().for_each(|(k, v)| walk(&key(k), v, out)),
            toml::Value::Integer(i) => drop(out.insert(prefix.to_string(), HParam::Number(*i as f64))),
            toml::Value::Float(x) => drop(out.insert(prefix.to_string(), HParam::Number(*x))),
            toml::Value::Boolean(b) => drop(out.insert(prefix.to_string(), HParam::Flag(*b))),
            toml::Value::String(s) => drop(out.insert(prefix.to_string(), HParam::Text(s.clone()))),
            toml::Value::Array(items) => {
                let joined: Vec<String> = items.iter().map(|i| i.to_string().trim_matches('"').to_string()).collect();
                out.insert(prefix.to_string(), HParam::Text(joined.join(",")));
            }
            toml::Value::Datetime(d) => drop(out.insert(prefix.to_string(), HParam::Text(d.to_string()))),
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

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

    /// The run's hyperparameters and the scalar tags that measure it, for
    /// TensorBoard's HParams dashboard: an experiment summary (the names)
    /// and this run's session start (the values), as the hparams plugin
    /// reads them. Written once, when a run starts.
    pub fn hparams(&mut self, values: &BTreeMap<String, HParam>, metric_tags: &[&str]) {
        let mut experiment = Experiment::new();
        experiment.set_hparam_infos(RepeatedField::from(
            values
                .keys()
                .map(|name| {
                    let mut info = HParamInfo::new();
                    info.set_name(name.clone());
                    info
                })
                .collect::<Vec<_>>(),
        ));
        experiment.set_metric_infos(RepeatedField::from(
            metric_tags
                .iter()
                .map(|tag| {
                    let mut name = MetricName::new();
                    name.set_tag(tag.to_string());
                    let mut info = MetricInfo::new();
                    info.set_name(name);
                    info
                })
                .collect::<Vec<_>>(),
        ));
        let mut data = HParamsPluginData::new();
        data.set_experiment(experiment);
        self.plugin_summary("_hparams_/experiment", data);

        let mut start = SessionStartInfo::new();
        for (name, value) in values {
            let mut v = ProtoValue::new();
            match value {
                HParam::Number(x) => v.set_number_value(*x),
                HParam::Text(t) => v.set_string_value(t.clone()),
                HParam::Flag(b) => v.set_bool_value(*b),
            }
            start.mut_hparams().insert(name.clone(), v);
        }
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            start.set_start_time_secs(now.as_secs_f64());
        }
        let mut data = HParamsPluginData::new();
        data.set_session_start_info(start);
        self.plugin_summary("_hparams_/session_start_info", data);
    }

    /// A summary value that carries only the hparams plugin's data.
    fn plugin_summary(&mut self, tag: &str, mut data: HParamsPluginData) {
        data.set_version(0);
        let Ok(content) = data.write_to_bytes() else {
            eprintln!("warning: TensorBoard hparams not written");
            return;
        };
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name("hparams".into());
        plugin.set_content(content);
        let mut metadata = SummaryMetadata::new();
        metadata.set_plugin_data(plugin);
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_metadata(metadata);
        self.summary(v, 0);
    }

    pub fn flush(&mut self) {
        self.with(|w| w.flush());
    }
}
