//! Real videos as the trainer's and the evaluator's sources (feature `video`): a [`Dataset`] and a
//! recipe's pipelines, decode → sample → transform, run by the loader threads
//! ([`crate::data::Prefetch`]) ahead of the model.
//!
//! Each item is decoded twice: once to count its frames (the sampling needs the count, and a
//! container's frame count is not exact, see `decode.rs`), once converting only the sampled frames to
//! RGB. The frames are those of a full decode (the official loader converts every frame), so the
//! tensors are identical; decoding twice costs less than converting every frame of a long
//! high-resolution video, and keeps memory to the sampled frames.
//!
//! A missing file or a video that does not decode is an [`ItemError`] naming the file and the reason;
//! the trainer and the evaluator stop on it, or skip and count it (`--skip-bad`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;

use super::dataset::Dataset;
use super::decode::{decode, probe};
use super::{Frame, Pipeline, TrainPipeline};
use crate::data::{EvalSource, ItemError, Labelled, Manifest, TrainSource};

// ANCHOR: load_frames
/// Decodes `path` and returns, for each list of indices `pick(n)` gives for a video of `n` frames,
/// those frames in order (an index may repeat).
pub fn load_frames(
    path: &Path,
    pick: impl FnOnce(usize) -> anyhow::Result<Vec<Vec<usize>>>,
) -> Result<Vec<Vec<Frame>>, ItemError> {
    let item = || path.display().to_string();
    if !path.is_file() {
        let reason = if path.exists() { "not a file" } else { "missing: no such file" };
        return Err(ItemError::new(item(), reason));
    }
    let n = probe(path).map_err(|e| ItemError::new(item(), e.failure))?.frames;
    let lists = pick(n).map_err(|e| ItemError::new(item(), format!("{e:#}")))?;
    let keep: BTreeSet<usize> = lists.iter().flatten().copied().collect();
    let decoded = decode(path, Some(&keep)).map_err(|e| ItemError::new(item(), e.failure))?;
    if decoded.info.frames != n {
        return Err(ItemError::new(item(), format!("decoded {} frames, then {n}", decoded.info.frames)));
    }
    let frames: BTreeMap<usize, Frame> = decoded.frames.into_iter().collect();
    lists
        .iter()
        .map(|list| {
            list.iter()
                .map(|i| {
                    frames.get(i).cloned().ok_or_else(|| ItemError::new(item(), format!("frame {i} was not decoded")))
                })
                .collect()
        })
        .collect()
}
// ANCHOR_END: load_frames

fn item(data: &Dataset, i: usize) -> Result<&super::dataset::Item, ItemError> {
    data.items
        .get(i)
        .ok_or_else(|| ItemError::new(format!("item {i}"), format!("the set has {} items", data.items.len())))
}

/// A data set under a test pipeline: every view of every video.
pub struct VideoEval {
    pub data: Arc<Dataset>,
    pub pipeline: Pipeline,
}

// ANCHOR: eval_views
impl EvalSource for VideoEval {
    fn len(&self) -> usize {
        self.data.items.len()
    }
    fn num_classes(&self) -> usize {
        self.data.num_classes
    }
    fn clip_shape(&self) -> [usize; 3] {
        let s = self.pipeline.spatial.size();
        [self.pipeline.sampling.frames(), s, s]
    }
    fn views_per_item(&self) -> usize {
        self.pipeline.sampling.views() * self.pipeline.spatial.crops()
    }
    fn views(&self, i: usize) -> Result<(Vec<Vec<f32>>, usize), ItemError> {
        let it = item(&self.data, i)?;
        let mut views = Vec::new();
        let frames = load_frames(&it.path, |n| {
            views = self.pipeline.views(n)?;
            Ok(views.iter().map(|v| v.frames.clone()).collect())
        })?;
        let tensors = views
            .iter()
            .zip(&frames)
            .map(|(v, f)| self.pipeline.apply(f, v))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| ItemError::new(it.path.display().to_string(), format!("{e:#}")))?;
        Ok((tensors, it.label))
    }
    fn manifest(&self) -> Manifest {
        self.data.manifest()
    }
    fn class_names(&self) -> Option<Vec<String>> {
        self.data.classes.clone()
    }
}
// ANCHOR_END: eval_views

/// A data set under a training pipeline: one augmented clip per item and draw.
pub struct VideoTrain {
    pub data: Arc<Dataset>,
    pub pipeline: TrainPipeline,
}

impl VideoTrain {
    fn size(&self) -> usize {
        match self.pipeline {
            TrainPipeline::St { size, .. } => size,
            TrainPipeline::Mma { crop, .. } => crop,
        }
    }
}

// ANCHOR: train_clip
impl TrainSource for VideoTrain {
    fn len(&self) -> usize {
        self.data.items.len()
    }
    fn num_classes(&self) -> usize {
        self.data.num_classes
    }
    fn clip_shape(&self) -> [usize; 3] {
        let s = self.size();
        // mmaction2's SampleFrames with num_clips > 1 at training time concatenates the clips
        let clips = match self.pipeline.sampling() {
            super::Sampling::MmaClips { clips, .. } => clips,
            _ => 1,
        };
        [self.pipeline.sampling().frames() * clips, s, s]
    }
    fn train_clip(&self, i: usize, rng: &mut StdRng) -> Labelled {
        let it = item(&self.data, i)?;
        let frames = load_frames(&it.path, |n| Ok(vec![self.pipeline.indices(n, rng)?]))?;
        let clip = self
            .pipeline
            .apply(&frames[0], rng)
            .map_err(|e| ItemError::new(it.path.display().to_string(), format!("{e:#}")))?;
        Ok((clip, it.label))
    }
}
// ANCHOR_END: train_clip
