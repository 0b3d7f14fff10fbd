//! TensorBoard event files read back independently: TFRecord framing with
//! its masked CRC32C, and the protobuf `Event`s decoded by hand.

use colorize_train::tensorboard::TbLogger;
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// CRC32C (Castagnoli), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file, each checked against its CRCs.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(len_crc, masked(crc32c(len_bytes)), "length CRC");
        let data = &bytes[at + 12..at + 12 + len];
        let data_crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(data_crc, masked(crc32c(data)), "data CRC");
        out.push(data.to_vec());
        at += 16 + len;
    }
    out
}

/// Protobuf fields: (number, wire type, varint or fixed value, bytes).
fn fields(mut b: &[u8]) -> Vec<(u64, u8, u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let (number, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            0 => out.push((number, wire, varint(&mut b), vec![])),
            1 => {
                out.push((number, wire, u64::from_le_bytes(b[..8].try_into().unwrap()), vec![]));
                b = &b[8..];
            }
            2 => {
                let len = varint(&mut b) as usize;
                out.push((number, wire, 0, b[..len].to_vec()));
                b = &b[len..];
            }
            5 => {
                out.push((number, wire, u64::from(u32::from_le_bytes(b[..4].try_into().unwrap())), vec![]));
                b = &b[4..];
            }
            _ => panic!("unexpected wire type {wire}"),
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Value {
    Scalar(String, u64, f32),
    Image(String, u64, Vec<u8>),
}

/// Event { step = 2, summary = 5 { value = 1 { tag = 1, simple_value = 2, image = 4 { encoded = 4 } } } }
fn decode(event: &[u8]) -> Vec<Value> {
    let f = fields(event);
    let step = f.iter().find(|x| x.0 == 2).map_or(0, |x| x.2);
    let mut values = Vec::new();
    for (_, _, _, summary) in f.iter().filter(|x| x.0 == 5) {
        for (_, _, _, value) in fields(summary).iter().filter(|x| x.0 == 1) {
            let v = fields(value);
            let tag = String::from_utf8(v.iter().find(|x| x.0 == 1).unwrap().3.clone()).unwrap();
            if let Some(s) = v.iter().find(|x| x.0 == 2 && x.1 == 5) {
                values.push(Value::Scalar(tag, step, f32::from_bits(s.2 as u32)));
            } else if let Some(img) = v.iter().find(|x| x.0 == 4) {
                let png = fields(&img.3).into_iter().find(|x| x.0 == 4).unwrap().3;
                values.push(Value::Image(tag, step, png));
            }
        }
    }
    values
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents"))
        .collect()
}

#[test]
fn scalars_and_non_square_images_read_back() {
    let dir = std::env::temp_dir().join(format!("colorize-tb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let picture = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 50, y as u8 * 100, 7]));
    {
        let mut tb = TbLogger::new(&dir, None);
        tb.scalar("train/loss", 0.25, 1);
        tb.scalar("train/loss", 0.125, 2);
        tb.image("val/strip", &picture, 2);
        tb.flush();
    } // dropping joins tensorboard-rs's writer thread
    let files = event_files(&dir);
    assert_eq!(files.len(), 1);
    let values: Vec<Value> = records(&std::fs::read(&files[0]).unwrap()).iter().flat_map(|r| decode(r)).collect();
    assert!(values.contains(&Value::Scalar("train/loss".into(), 1, 0.25)), "{values:?}");
    assert!(values.contains(&Value::Scalar("train/loss".into(), 2, 0.125)));
    let png = values
        .iter()
        .find_map(|v| match v {
            Value::Image(tag, 2, png) if tag == "val/strip" => Some(png.clone()),
            _ => None,
        })
        .expect("the image event");
    let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (5, 3), "width and height kept");
    assert_eq!(decoded, picture, "pixels kept in place");

    // Python's TensorBoard, where it is installed, reads them too, with
    // the header's width and height those of the picture.
    let script = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         a = E({:?}); a.Reload(); s = a.Scalars('train/loss'); i = a.Images('val/strip')\n\
         assert [x.value for x in s] == [0.25, 0.125], s\nassert len(i) == 1 and (i[0].width, i[0].height) == (5, 3), i\nprint('ok')",
        dir.to_string_lossy()
    );
    event_accumulator(&script);
}

/// Runs a Python check with TensorBoard's EventAccumulator, or says why not.
fn event_accumulator(script: &str) {
    match std::process::Command::new("python3").args(["-c", script]).output() {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'tensorboard'") => {
            eprintln!("skipped the EventAccumulator check: Python's tensorboard is not installed")
        }
        Ok(out) => assert!(out.status.success(), "EventAccumulator: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => eprintln!("skipped the EventAccumulator check: no python3"),
    }
}

/// A resumed run redoes the steps after its checkpoint in a second events
/// file; TensorBoard shows each step once, with the resumed values.
#[test]
fn a_resumed_run_shows_each_step_once() {
    let dir = std::env::temp_dir().join(format!("colorize-tb-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut tb = TbLogger::new(&dir, None);
        for step in 1..=5 {
            tb.scalar("train/loss", step as f64, step);
        }
        tb.flush();
    }
    // Event files are named by the second and the process: a new second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    {
        let mut tb = TbLogger::new(&dir, Some(3));
        for step in 4..=6 {
            tb.scalar("train/loss", 10.0 * step as f64, step);
        }
        tb.flush();
    }
    assert_eq!(event_files(&dir).len(), 2);
    let script = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         a = E({:?}); a.Reload(); s = [(x.step, x.value) for x in a.Scalars('train/loss')]\n\
         assert s == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)], s\nprint('ok')",
        dir.to_string_lossy()
    );
    event_accumulator(&script);
}

/// The HParams dashboard's data, read back by TensorBoard's own hparams
/// plugin code: the experiment names the hyperparameters and metrics, the
/// session start carries this run's values.
#[test]
fn hparams_read_back_with_tensorboards_plugin() {
    use colorize_train::tensorboard::{hparams_of, HParam};
    let dir = std::env::temp_dir().join(format!("colorize-tb-hparams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config: toml::Value =
        toml::from_str("name = \"a\"\n[train]\nloss = \"bins\"\nflip = true\n[train.optimizer]\nlr = 0.03\n").unwrap();
    let values = hparams_of(&config);
    assert_eq!(values["train.optimizer.lr"], HParam::Number(0.03));
    assert_eq!(values["train.loss"], HParam::Text("bins".into()));
    assert_eq!(values["train.flip"], HParam::Flag(true));
    {
        let mut tb = TbLogger::new(&dir, None);
        tb.hparams(&values, &["best/val_qssim", "train/loss"]);
        tb.scalar("best/val_qssim", 0.97, 10);
        tb.flush();
    }
    let script = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         from tensorboard.plugins.hparams import plugin_data_pb2 as P\n\
         a = E({:?}); a.Reload(); c = a.PluginTagToContent('hparams')\n\
         e = P.HParamsPluginData.FromString(c['_hparams_/experiment']).experiment\n\
         assert sorted(h.name for h in e.hparam_infos) == ['name', 'train.flip', 'train.loss', 'train.optimizer.lr'], e\n\
         assert [m.name.tag for m in e.metric_infos] == ['best/val_qssim', 'train/loss'], e\n\
         s = P.HParamsPluginData.FromString(c['_hparams_/session_start_info']).session_start_info\n\
         assert s.hparams['train.optimizer.lr'].number_value == 0.03 and s.hparams['train.loss'].string_value == 'bins', s\n\
         assert s.hparams['train.flip'].bool_value, s\n\
         v = a.Scalars('best/val_qssim'); assert len(v) == 1 and abs(v[0].value - 0.97) < 1e-6, v\nprint('ok')",
        dir.to_string_lossy()
    );
    event_accumulator(&script);
}
