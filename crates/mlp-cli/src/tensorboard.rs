//! TensorBoard event files (`mlp train --tensorboard`, `mlp search --tensorboard`): per epoch
//! the training and validation loss and accuracy, the learning rate, the mean gradient norm,
//! histograms of W1 and W2, and W1's first 64 columns as a grid of 28 × 28 images.
//! `tensorboard --logdir runs` shows them, a search's trials side by side.
//!
//! The file is TFRecord framing around `Event` protobufs (written with `protobuf.rs`): each
//! record is its length (u64), the masked CRC-32C of the length, the event, and the masked
//! CRC-32C of the event. Every epoch's events are appended and flushed as the epoch ends,
//! so a run can be watched live. One file per run folder, `events.out.tfevents.mlp`: a
//! resumed run first cuts it back, in place, to the epochs of its checkpoint (dropping the
//! record a kill may have cut short), so that no step is repeated or missing. (A
//! TensorBoard left running across the resume keeps the steps it had read past the
//! checkpoint until it reloads the run.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mlp_core::Mlp;
use mlp_train::EpochRecord;

use crate::protobuf::Message;

/// The event file's name in a run folder (TensorBoard reads files whose name holds
/// `tfevents`).
pub const FILE_NAME: &str = "events.out.tfevents.mlp";

/// Columns of W1 drawn in the weight grid.
const GRID_UNITS: usize = 64;
/// Buckets of the weight histograms.
const BUCKETS: usize = 60;

/// Appends a run's events to its event file.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Opens `dir`'s event file for a run that has finished `epochs_done` epochs: a fresh
    /// one (0) starts the file anew; a resumed one keeps the records of those epochs only,
    /// cut back in place (the same file, which a running TensorBoard goes on reading).
    pub fn open(dir: &Path, epochs_done: usize) -> anyhow::Result<Self> {
        let path = dir.join(FILE_NAME);
        let cannot = |what: &str| format!("{}: cannot {what}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| cannot("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| cannot("read"))?;
        // The records are in step order, so those kept are the start of the file.
        let kept = match epochs_done {
            0 => 0,
            _ => kept_len(&bytes, epochs_done as u64),
        };
        file.set_len(kept as u64).with_context(|| cannot("write"))?;
        file.seek(SeekFrom::End(0))
            .with_context(|| cannot("write"))?;
        if kept == 0 {
            let version = event(now(), 0).bytes(3, b"brain.Event:2"); // file_version
            file.write_all(&record(&version))
                .with_context(|| cannot("write"))?;
        }
        file.flush().with_context(|| cannot("write"))?;
        Ok(Self { path, file })
    }

    /// Writes epoch `record`'s events (step = its epoch number), with the parameters
    /// `model` ended it with.
    pub fn epoch(&mut self, record: &EpochRecord, model: &Mlp) -> anyhow::Result<()> {
        let (step, wall_time) = (record.epoch as u64, now());
        let scalars = [
            ("loss/train", Some(record.train_loss)),
            ("loss/validation", record.val_loss),
            ("accuracy/train", Some(record.train_acc)),
            ("accuracy/validation", record.val_acc),
            ("learning_rate", Some(record.lr)),
            ("grad_norm", Some(record.grad_norm)),
        ];
        let mut bytes = Vec::new();
        for (tag, value) in scalars.iter().filter_map(|&(tag, v)| Some((tag, v?))) {
            let value = Message::default().string(1, tag).float(2, value as f32);
            bytes.extend(record_of(wall_time, step, value));
        }
        for (tag, weights) in [("weights/W1", &model.w1), ("weights/W2", &model.w2)] {
            let histogram = histogram(weights.as_slice().expect("contiguous"));
            let value = Message::default().string(1, tag).message(5, histogram);
            bytes.extend(record_of(wall_time, step, value));
        }
        if let Some(png) = weight_grid(model) {
            let value = Message::default()
                .string(1, "weights/W1 columns")
                .message(4, png);
            bytes.extend(record_of(wall_time, step, value));
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Seconds since the Unix epoch, as events carry them.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An `Event` with its wall time and step (fields 1 and 2).
fn event(wall_time: f64, step: u64) -> Message {
    Message::default().double(1, wall_time).int(2, step)
}

/// The framed record of an event holding one summary value.
fn record_of(wall_time: f64, step: u64, value: Message) -> Vec<u8> {
    let summary = Message::default().message(1, value);
    record(&event(wall_time, step).message(5, summary))
}

/// TFRecord framing: length, its masked CRC, the data, its masked CRC.
fn record(event: &Message) -> Vec<u8> {
    let len = (event.0.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(event.0.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc(&len).to_le_bytes());
    r.extend_from_slice(&event.0);
    r.extend_from_slice(&masked_crc(&event.0).to_le_bytes());
    r
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The length of the leading whole records of an event file whose step is at most
/// `last_step` (the file-version record has step 0): a record cut short, or one that fails
/// its CRC, ends the file there, as does the first record of a later step.
fn kept_len(bytes: &[u8], last_step: u64) -> usize {
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        // The length is trusted only once its CRC holds.
        if masked_crc(&header[..8]).to_le_bytes() != header[8..12] {
            break;
        }
        let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let Some(data) = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(at + 12..)?.get(..len.checked_add(4)?))
        else {
            break;
        };
        let (data, crc) = data.split_at(data.len() - 4);
        if masked_crc(data).to_le_bytes() != crc || step_of(data) > last_step {
            break;
        }
        at += 12 + data.len() + 4;
    }
    at
}

/// The step (field 2, a varint) of an `Event`, 0 if it has none.
fn step_of(event: &[u8]) -> u64 {
    let mut at = 0;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *event.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    };
    while let Some(key) = varint(&mut at) {
        match (key >> 3, key & 7) {
            (2, 0) => return varint(&mut at).unwrap_or(0),
            (_, 0) => {
                varint(&mut at);
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            (_, 2) => {
                match varint(&mut at).and_then(|len| at.checked_add(usize::try_from(len).ok()?)) {
                    Some(end) if end <= event.len() => at = end,
                    _ => return 0,
                }
            }
            _ => return 0,
        }
    }
    0
}

/// A `HistogramProto` of `values`: BUCKETS equal buckets from the smallest to the largest.
fn histogram(values: &[f32]) -> Message {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
    // Equal values (a layer still at zero) get buckets of width 1, so that the limits rise.
    let width = if max > min {
        (max - min) / BUCKETS as f64
    } else {
        1.0
    };
    let mut counts = [0.0f64; BUCKETS];
    for &v in values {
        let k = (((v as f64 - min) / width) as usize).min(BUCKETS - 1);
        counts[k] += 1.0;
    }
    let packed =
        |xs: &mut dyn Iterator<Item = f64>| -> Vec<u8> { xs.flat_map(f64::to_le_bytes).collect() };
    let limits = packed(&mut (1..=BUCKETS).map(|k| min + width * k as f64));
    Message::default()
        .double(1, min)
        .double(2, max)
        .double(3, values.len() as f64)
        .double(4, values.iter().map(|&v| v as f64).sum())
        .double(5, values.iter().map(|&v| (v as f64).powi(2)).sum())
        .bytes(6, &limits)
        .bytes(7, &packed(&mut counts.iter().copied()))
}

/// W1's first columns as 28 × 28 tiles, 8 to a row, each scaled to its own range (white
/// high), as a `Summary.Image` holding a PNG; None when the inputs are not 28 × 28.
fn weight_grid(model: &Mlp) -> Option<Message> {
    const SIDE: usize = 28;
    let s = model.shape();
    if s.inputs != SIDE * SIDE {
        return None;
    }
    let units = s.hidden.min(GRID_UNITS);
    let (cols, rows) = (8.min(units), units.div_ceil(8));
    let (width, height) = (cols * (SIDE + 1) + 1, rows * (SIDE + 1) + 1);
    let mut grid = image::GrayImage::new(width as u32, height as u32);
    for h in 0..units {
        let column = model.w1.column(h);
        let (lo, hi) = column
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
        let (x0, y0) = (1 + (h % 8) * (SIDE + 1), 1 + (h / 8) * (SIDE + 1));
        for p in 0..SIDE * SIDE {
            let v = ((column[p] - lo) * scale) as u8;
            grid.put_pixel(
                (x0 + p % SIDE) as u32,
                (y0 + p / SIDE) as u32,
                image::Luma([v]),
            );
        }
    }
    let mut png = Vec::new();
    grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(
        Message::default()
            .int(1, height as u64)
            .int(2, width as u64)
            .int(3, 1) // colorspace: grey
            .bytes(4, &png),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TFRecord's masked CRC, against TensorBoard's own (Python) implementation:
    /// `from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c;
    /// hex(masked_crc32c(b"123456789")), hex(masked_crc32c(bytes(8)))` (tensorboard 2.21).
    #[test]
    fn the_masked_crc_is_tfrecords() {
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc(&[0; 8]), 0x0798_0329);
    }

    #[test]
    fn a_file_is_cut_back_to_whole_records_of_the_kept_steps() {
        let first = record(&event(0.0, 0).bytes(3, b"brain.Event:2"));
        let step = |s| record_of(1.0, s, Message::default().string(1, "x").float(2, 1.0));
        let mut file = [first.clone(), step(1), step(2), step(3)].concat();
        let len = |records: &[Vec<u8>]| records.iter().map(Vec::len).sum::<usize>();
        assert_eq!(kept_len(&file, 2), len(&[first.clone(), step(1), step(2)]));
        // A record cut short by a kill ends the file.
        file.truncate(file.len() - 3);
        assert_eq!(kept_len(&file, 9), len(&[first.clone(), step(1), step(2)]));
        // A length that lies (its CRC fails) is not followed.
        let mut lying = [first.clone(), step(1)].concat();
        lying[first.len()..first.len() + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(kept_len(&lying, 9), first.len());
    }

    #[test]
    fn a_histogram_of_equal_values_has_rising_limits() {
        let h = histogram(&[0.0; 10]).0;
        // min, max, num, sum, sum_squares as doubles (9 bytes each), then the limits' key
        // (1 byte) and length (480: 2 bytes).
        let limits = &h[5 * 9 + 3..][..BUCKETS * 8];
        let limit = |k: usize| f64::from_le_bytes(limits[k * 8..][..8].try_into().unwrap());
        assert!((1..BUCKETS).all(|k| limit(k) > limit(k - 1)));
    }
}
