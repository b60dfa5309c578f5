//! Video in: decoding real files (feature `video`), the official frame sampling and test-time
//! transforms (pure, testable without ffmpeg), and datasets.
//!
//! Layout: a decoded video is a list of [`Frame`]s in presentation order; sampling turns a frame
//! count into frame indices per view; transforms turn the sampled frames of a view into the
//! (3, T, H, W) float tensor the models take.
//!
//! - `decode` (feature `video`): every frame of a file in presentation order, as the official loader
//!   decodes it (PyAV; byte-identical RGB with the same ffmpeg);
//! - [`sample`]: frame indices per view, test and training time (index-exact against the official code);
//! - [`transform`]: the resize kernels (torch bicubic, cv2 bilinear), normalisations, crops, flip;
//! - [`pipeline`]: the official test pipelines as presets ([`pipeline::Pipeline`]);
//! - [`train`]: the official training-time augmentations (scale jitter, random crops, mirror);
//! - [`augment`]: RandAugment as ST-Adapter's SSv2 recipe runs it (PIL ops);
//! - [`dataset`]: the data sets on disk (official list files, Kinetics CSV, SSv2 JSON, a folder per class);
//! - `source` (feature `video`): a data set under a recipe's pipelines as the trainer's and evaluator's sources.

pub mod augment;
pub mod dataset;
#[cfg(feature = "video")]
pub mod decode;
pub mod pipeline;
pub mod sample;
#[cfg(feature = "video")]
pub mod source;
pub mod train;
pub mod transform;

pub use pipeline::{Pipeline, Spatial, View};
pub use sample::Sampling;
pub use train::TrainPipeline;

/// One decoded frame: RGB, 8 bits per channel, row-major `(height, width, 3)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    /// `height · width · 3` bytes: pixel (y, x) channel c at `(y · width + x) · 3 + c`.
    pub rgb: Vec<u8>,
}

impl Frame {
    /// A frame from its bytes; the length must be `height · width · 3`.
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Self {
        assert_eq!(rgb.len(), width * height * 3, "a {width}x{height} RGB frame has {} bytes", width * height * 3);
        Self { width, height, rgb }
    }
}
