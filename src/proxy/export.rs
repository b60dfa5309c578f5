//! The synthetic clips as real video files (feature `video`), so that the same clips can go through
//! the decoding path ([`crate::video::decode`]) and the data-set readers ([`crate::video::dataset`]).
//!
//! Each clip becomes one H.264 file in Matroska, written by video-rs's encoder: libx264 at `qp 0`
//! (lossless, High 4:4:4 Predictive profile) on full-range 4:4:4 YCbCr (`yuvj444p`). At 32×32 every
//! pixel matters: 4:2:0 would halve the colour resolution at every object edge, and a lossy
//! quantiser would smear them; with lossless 4:4:4 the only change is the RGB → YCbCr → RGB
//! round trip of libswscale (BT.601 matrix, full range, 8 bits each way), which moves a channel by
//! at most [`TOLERANCE`] = 2 levels (`tests/proxy_export.rs` measures it on exported clips). H.264 has
//! an RGB mode (libx264rgb) that would be exact, but video-rs's encoder always opens `libx264`.
//! Matroska, not MP4: video-rs writes no packet durations, and an MP4 written that way decodes
//! one frame short (`DESIGN.md`), a quarter of a 4-frame clip.
//!
//! Next to the videos, a list file in the official format the kit reads (`list:FILE`,
//! [`crate::video::dataset::Dataset::from_list`]): `<split>/<index>.mkv <label>` per line, with the
//! task's labels as they are in memory, and `classes.txt` (class names by label).

use std::path::{Path, PathBuf};

use video_rs::ffmpeg;
use video_rs::ffmpeg::format::Pixel;

use super::bench::{TEST_STREAM, TRAIN_STREAM};
use super::synth::{Dataset, Geometry, Task};
use crate::video::Frame;

/// Largest difference, in 8-bit levels per channel, between a clip's pixels and the same pixels
/// decoded from its exported file: the full-range BT.601 round trip at 8 bits. Rounding Y, Cb, Cr
/// (±0.5 each) moves a decoded channel by up to 0.5 + 1.772 · 0.5 ≈ 1.4 levels before the final
/// rounding (1.772: the Cb → B coefficient), so at most 2. Measured on the 24 exported motion
/// clips of `tests/proxy_export.rs`: at most 1 level, mean 0.36, 64 % of values exact.
pub const TOLERANCE: u8 = 2;

/// The frame rate written into the files (the kit samples frames by index, not by time).
pub const FPS: usize = 30;

/// A split of a task: the benchmark's training or test stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
    /// The stream seed the benchmark generates this split from ([`super::bench::splits`]).
    pub fn stream(self) -> u64 {
        match self {
            Split::Train => TRAIN_STREAM,
            Split::Test => TEST_STREAM,
        }
    }
}

/// What [`export`] wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The list file (`<out>/<split>.txt`): `<split>/<index>.mkv <label>` per line.
    pub list: PathBuf,
    /// The video files, in clip order.
    pub videos: Vec<PathBuf>,
    /// The clips as generated (the same bytes the benchmark trains and tests on).
    pub data: Dataset,
}

/// Writes clips `0..n` of `task`'s `split` (the benchmark's own clips, [`super::bench::GEOMETRY`])
/// under `out` as video files, with the list file and `classes.txt`. Errors name the file.
pub fn export(task: Task, split: Split, n: usize, out: &Path) -> anyhow::Result<Exported> {
    anyhow::ensure!(task != Task::Shapes, "the image task has stills, not clips: export motion or appearance");
    let data = Dataset::generate(task, super::bench::GEOMETRY, n, split.stream());
    let dir = out.join(split.name());
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let mut list = String::new();
    let mut videos = Vec::with_capacity(n);
    for i in 0..data.len() {
        let name = format!("{}/{i:06}.mkv", split.name());
        let path = out.join(&name);
        write_video(&path, &data.frames(i), data.geometry)?;
        list += &format!("{name} {}\n", data.labels[i]);
        videos.push(path);
    }
    let list_path = out.join(format!("{}.txt", split.name()));
    crate::io::write_atomic(&list_path, list.as_bytes())?;
    let classes: String = (0..task.num_classes()).map(|c| task.class_name(c) + "\n").collect();
    crate::io::write_atomic(&out.join("classes.txt"), classes.as_bytes())?;
    Ok(Exported { list: list_path, videos, data })
}

// ANCHOR: write_video
/// Writes `frames` (RGB, `g.size`²) as one lossless 4:4:4 H.264 file at [`FPS`] (see the module
/// header for the choice). Errors name the file and the frame.
pub fn write_video(path: &Path, frames: &[Frame], g: Geometry) -> anyhow::Result<()> {
    let fail = |what: String| anyhow::anyhow!("writing {}: {what}", path.display());
    video_rs::init().map_err(|e| fail(format!("initialising ffmpeg: {e}")))?;
    let options: std::collections::HashMap<String, String> =
        [("preset", "medium"), ("qp", "0"), ("threads", "1")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    let settings = video_rs::encode::Settings::preset_h264_custom(g.size, g.size, Pixel::YUVJ444P, options.into());
    let mut enc = video_rs::Encoder::new(path, settings).map_err(|e| fail(format!("opening the encoder: {e}")))?;
    let tb = enc.time_base();
    for (t, f) in frames.iter().enumerate() {
        anyhow::ensure!(
            (f.width, f.height) == (g.size, g.size),
            "writing {}: frame {t} is {}x{}, expected {}x{}",
            path.display(),
            f.width,
            f.height,
            g.size,
            g.size
        );
        let mut raw = ffmpeg::frame::Video::new(Pixel::RGB24, g.size as u32, g.size as u32);
        let stride = raw.stride(0);
        let row = g.size * 3;
        for y in 0..g.size {
            raw.data_mut(0)[y * stride..y * stride + row].copy_from_slice(&f.rgb[y * row..(y + 1) * row]);
        }
        // frame t at t / FPS seconds, in the encoder's time base
        let pts = t as i64 * tb.denominator() as i64 / (FPS as i64 * tb.numerator() as i64);
        raw.set_pts(Some(pts));
        enc.encode_raw(raw).map_err(|e| fail(format!("encoding frame {t}: {e}")))?;
    }
    enc.finish().map_err(|e| fail(format!("finishing the file: {e}")))
}
// ANCHOR_END: write_video
