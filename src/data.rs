//! What the trainer and the evaluator read: labelled clips, from real videos
//! ([`crate::video::dataset`], feature `video`) or generated in memory (the embedded benchmark).
//!
//! A clip is `(3, T, H, W)` f32 values, channels first, normalised as the model expects; a batch
//! of clips is their concatenation, `(B, 3, T, H, W)`. Loading runs on worker threads ahead of
//! the model ([`Prefetch`]), in a fixed order, so a run's inputs do not depend on the timing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Why one item could not be read: the item's name (a path) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{item}: {reason}")]
pub struct ItemError {
    pub item: String,
    pub reason: String,
}

impl ItemError {
    pub fn new(item: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self { item: item.into(), reason: reason.to_string() }
    }
}

/// A clip and its label, or why the item could not be read.
pub type Labelled = Result<(Vec<f32>, usize), ItemError>;

/// Training items: item `i`'s clip with all its randomness (sampling, augmentation) drawn from the
/// generator it is given, so a run is reproduced by reproducing the generators.
pub trait TrainSource: Send + Sync {
    /// Items in one epoch.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn num_classes(&self) -> usize;
    /// Frames, height and width of every clip.
    fn clip_shape(&self) -> [usize; 3];
    /// Item `i` as a training clip and its label.
    fn train_clip(&self, i: usize, rng: &mut StdRng) -> Labelled;
}

/// Evaluation items: item `i`'s test views (deterministic) and its label.
pub trait EvalSource: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn num_classes(&self) -> usize;
    /// Frames, height and width of every view.
    fn clip_shape(&self) -> [usize; 3];
    /// Views per item (temporal clips × spatial crops).
    fn views_per_item(&self) -> usize;
    /// Item `i`'s views, each a clip, and its label.
    fn views(&self, i: usize) -> Result<(Vec<Vec<f32>>, usize), ItemError>;
    /// What the set is (for the results file): listed items, a hash of the list, where it came from.
    fn manifest(&self) -> Manifest;
    /// Class names by label, when the set has them.
    fn class_names(&self) -> Option<Vec<String>> {
        None
    }
}

/// What a data set held when it was read: enough to tell two copies of "the K400 validation set"
/// apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Dataset name as the tables use it: "k400", "ssv2", … or a synthetic task's name.
    pub dataset: String,
    /// Where it was read from (list file, folder, generator and seed).
    pub source: String,
    /// Items the list names.
    pub listed: usize,
    /// Items whose file exists.
    pub found: usize,
    /// Items that failed to load during the run (filled by the evaluator).
    #[serde(default)]
    pub unreadable: usize,
    /// sha256 of the sorted list of (item, label) lines.
    pub list_sha256: String,
}

/// A deterministic generator for one use of one item: the run's seed, a stream id (what the
/// numbers are for) and an index (global sample number, step, …) mixed by SplitMix64.
pub fn rng_for(seed: u64, stream: u64, index: u64) -> StdRng {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Results of `f(0), f(1), …` computed by worker threads up to `ahead` items before the consumer,
/// handed out in index order.
pub struct Prefetch<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    next: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
    stop: AtomicBool,
}

struct State<T> {
    /// Next index a worker takes.
    claim: u64,
    /// Next index the consumer takes.
    consumer: u64,
    done: BTreeMap<u64, T>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `workers` threads computing `f(start)`, `f(start + 1)`, … at most `ahead` ahead.
    pub fn new(start: u64, workers: usize, ahead: usize, f: impl Fn(u64) -> T + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { claim: start, consumer: start, done: BTreeMap::new() }),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let f = Arc::new(f);
        let ahead = ahead.max(1) as u64;
        let workers = (0..workers.max(1))
            .map(|_| {
                let (shared, f) = (shared.clone(), f.clone());
                std::thread::spawn(move || loop {
                    let i = {
                        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                        while !shared.stop.load(Ordering::Relaxed) && st.claim >= st.consumer + ahead {
                            st = shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                        }
                        if shared.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        st.claim += 1;
                        st.claim - 1
                    };
                    let value = f(i);
                    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.done.insert(i, value);
                    shared.cond.notify_all();
                })
            })
            .collect();
        Self { shared, workers, next: start }
    }

    /// The result for the next index.
    pub fn next_item(&mut self) -> T {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = st.done.remove(&self.next) {
                self.next += 1;
                st.consumer = self.next;
                self.shared.cond.notify_all();
                return v;
            }
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T: Send + 'static> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.cond.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The default number of loader threads: half the cores (the model's kernels use them all), at
/// least one.
pub fn default_workers() -> usize {
    (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items come out in index order whatever the worker count, and every one exactly once.
    #[test]
    fn prefetch_hands_out_items_in_order() {
        for workers in [1, 3] {
            let mut p = Prefetch::new(5, workers, 4, |i| {
                std::thread::sleep(std::time::Duration::from_micros((i * 37 % 11) * 50));
                i * 2
            });
            let got: Vec<u64> = (0..40).map(|_| p.next_item()).collect();
            assert_eq!(got, (5..45).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    /// The per-use generators differ by seed, stream and index, and repeat exactly.
    #[test]
    fn rng_for_is_deterministic_and_distinct() {
        use rand::Rng;
        let draw = |s, st, i| rng_for(s, st, i).gen::<u64>();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        let all = [draw(1, 2, 3), draw(2, 2, 3), draw(1, 3, 3), draw(1, 2, 4)];
        for i in 0..4 {
            for j in 0..i {
                assert_ne!(all[i], all[j]);
            }
        }
    }
}
