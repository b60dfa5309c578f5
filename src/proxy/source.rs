//! The synthetic tasks as the trainer's and the evaluator's inputs ([`TrainSource`],
//! [`EvalSource`]): the embedded benchmark runs through the same `train::train` and
//! `eval::evaluate` as real videos do, fed by clips generated in memory.

use std::sync::Arc;

use rand::rngs::StdRng;

use super::synth::Dataset;
use crate::data::{EvalSource, ItemError, Labelled, Manifest, TrainSource};

/// A generated split as training items. The clips are fixed (the split is the data set); the
/// generator the trainer hands over is not used: the synthetic tasks need no augmentation.
pub struct SynthTrain(pub Arc<Dataset>);

impl TrainSource for SynthTrain {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn num_classes(&self) -> usize {
        self.0.task.num_classes()
    }
    fn clip_shape(&self) -> [usize; 3] {
        let g = self.0.geometry;
        [g.frames, g.size, g.size]
    }
    fn train_clip(&self, i: usize, _rng: &mut StdRng) -> Labelled {
        match self.0.labels.get(i) {
            Some(&label) => Ok((self.0.clip_values(i), label)),
            None => Err(ItemError::new(format!("{} clip {i}", self.0.task.name()), "index out of range")),
        }
    }
}

/// A generated split as evaluation items: one view per clip (the clip itself).
pub struct SynthEval(pub Arc<Dataset>);

impl EvalSource for SynthEval {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn num_classes(&self) -> usize {
        self.0.task.num_classes()
    }
    fn clip_shape(&self) -> [usize; 3] {
        let g = self.0.geometry;
        [g.frames, g.size, g.size]
    }
    fn views_per_item(&self) -> usize {
        1
    }
    fn views(&self, i: usize) -> Result<(Vec<Vec<f32>>, usize), ItemError> {
        match self.0.labels.get(i) {
            Some(&label) => Ok((vec![self.0.clip_values(i)], label)),
            None => Err(ItemError::new(format!("{} clip {i}", self.0.task.name()), "index out of range")),
        }
    }
    fn manifest(&self) -> Manifest {
        let d = &self.0;
        Manifest {
            dataset: format!("proxy-{}", d.task.name()),
            source: format!(
                "generated: task {}, {}x{} pixels x {} frames, stream seed {}, clips 0..{}",
                d.task.name(),
                d.geometry.size,
                d.geometry.size,
                d.geometry.frames,
                d.seed,
                d.len()
            ),
            listed: d.len(),
            found: d.len(),
            unreadable: 0,
            list_sha256: d.checksum(),
        }
    }
    fn class_names(&self) -> Option<Vec<String>> {
        Some((0..self.0.task.num_classes()).map(|c| self.0.task.class_name(c)).collect())
    }
}
