//! Evaluation with the official multi-view protocol: every view of a video through the model, the
//! softmax of each view's logits averaged over the views, then top-1 / top-5 over videos (ST-Adapter
//! `main.py` `evaluate`; AIM's `test_cfg=dict(average_clips='prob')` does the same), plus mean class
//! accuracy (mmaction2's `mean_class_accuracy`), per-class accuracy and the confusion matrix.

use std::sync::Arc;
use std::time::Instant;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::data::{EvalSource, ItemError, Prefetch};
use crate::registry::VideoModel;

/// How an evaluation runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub workers: usize,
    /// Skip (and count) videos that fail to load instead of stopping.
    pub skip_bad: bool,
    /// Evaluate only the first `limit` videos.
    pub limit: Option<usize>,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { workers: crate::data::default_workers(), skip_bad: false, limit: None, progress: false }
    }
}

/// The headline numbers, in percent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub top1: f64,
    pub top5: f64,
    pub mean_class_accuracy: f64,
    /// Videos scored.
    pub videos: usize,
}

/// Everything an evaluation measured.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub metrics: Metrics,
    /// Per class: (videos, correct top-1).
    pub per_class: Vec<(usize, usize)>,
    /// `confusion[true][predicted]`, top-1.
    pub confusion: Vec<Vec<u32>>,
    /// Videos that failed to load (with `skip_bad`).
    pub failures: Vec<ItemError>,
    /// Views per second through the model (loading overlapped).
    pub clips_per_s: f64,
    pub seconds: f64,
}

/// Evaluates `model` on every video of `source` (or the first `limit`).
pub fn evaluate(model: &dyn VideoModel, source: Arc<dyn EvalSource>, opts: &Options) -> anyhow::Result<Evaluation> {
    let n = opts.limit.map_or(source.len(), |l| l.min(source.len()));
    if n == 0 {
        anyhow::bail!("nothing to evaluate: the evaluation set is empty");
    }
    let k = source.num_classes();
    let [t, h, w] = source.clip_shape();
    let src = source.clone();
    // the workers run ahead of the consumer: indices past the last video are never asked for
    let mut loader = Prefetch::new(0, opts.workers, 2 * opts.workers.max(1), move |i| match i as usize {
        i if i < n => src.views(i),
        i => Err(ItemError::new(format!("item {i}"), "past the end of the evaluation set")),
    });
    let bar = crate::train::progress_bar(opts.progress, 0, n);
    let dev = Cpu::default();
    let (mut per_class, mut confusion) = (vec![(0usize, 0usize); k], vec![vec![0u32; k]; k]);
    let (mut top1, mut top5, mut views_done, mut failures) = (0usize, 0usize, 0usize, Vec::new());
    let started = Instant::now();
    for i in 0..n {
        let (views, label) = match loader.next_item() {
            Ok(v) => v,
            Err(e) if opts.skip_bad => {
                failures.push(e);
                continue;
            }
            Err(e) => anyhow::bail!("video {i}: {e} (--skip-bad skips unreadable videos)"),
        };
        if label >= k {
            anyhow::bail!("video {i}: label {label} is out of range for {k} classes");
        }
        let v = views.len();
        let data: Vec<f32> = views.concat();
        let video = dev.tensor_from_vec(data, (v, Const::<3>, t, h, w));
        let logits = model.logits(&video, &mut Ctx::eval()).as_vec();
        if logits.iter().any(|x| !x.is_finite()) {
            anyhow::bail!("video {i}: the model's logits are not finite (check the weights)");
        }
        let classes = logits.len() / v;
        if classes < k {
            anyhow::bail!("the model has {classes} classes; the evaluation set has {k}");
        }
        let scores = mean_softmax(&logits, v, classes);
        let ranked = ranking(&scores);
        per_class[label].0 += 1;
        if ranked[0] == label {
            top1 += 1;
            per_class[label].1 += 1;
        }
        if ranked.iter().take(5).any(|&c| c == label) {
            top5 += 1;
        }
        if ranked[0] < k {
            confusion[label][ranked[0]] += 1;
        }
        views_done += v;
        bar.set_position(i as u64 + 1);
    }
    bar.finish_and_clear();
    let videos = n - failures.len();
    if videos == 0 {
        anyhow::bail!("every video failed to load ({} failures; the first: {})", failures.len(), failures[0]);
    }
    let seconds = started.elapsed().as_secs_f64();
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b as f64;
    let seen: Vec<f64> = per_class.iter().filter(|c| c.0 > 0).map(|c| pct(c.1, c.0)).collect();
    Ok(Evaluation {
        metrics: Metrics {
            top1: pct(top1, videos),
            top5: pct(top5, videos),
            mean_class_accuracy: seen.iter().sum::<f64>() / seen.len() as f64,
            videos,
        },
        per_class,
        confusion,
        failures,
        clips_per_s: views_done as f64 / seconds,
        seconds,
    })
}

// ANCHOR: mean_softmax
/// The softmax of each of `v` rows of logits, averaged over the rows (in f64).
pub fn mean_softmax(logits: &[f32], v: usize, classes: usize) -> Vec<f64> {
    let mut mean = vec![0.0; classes];
    for row in logits.chunks_exact(classes) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
        let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        for (s, &x) in mean.iter_mut().zip(row) {
            *s += (x as f64 - m).exp() / z / v as f64;
        }
    }
    mean
}
// ANCHOR_END: mean_softmax

/// Class indices by decreasing score (ties: the lower index first, as `torch.topk` on CPU).
fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

impl Evaluation {
    /// The per-class table as CSV: class, name, videos, correct, accuracy (%).
    pub fn per_class_csv(&self, names: Option<&[String]>) -> String {
        let mut s = String::from("class,name,videos,correct,accuracy\n");
        for (c, (n, ok)) in self.per_class.iter().enumerate() {
            let name = names.and_then(|v| v.get(c)).map_or(String::new(), |n| csv_field(n));
            let acc = if *n > 0 { format!("{:.2}", 100.0 * *ok as f64 / *n as f64) } else { String::new() };
            s += &format!("{c},{name},{n},{ok},{acc}\n");
        }
        s
    }

    /// The confusion matrix as CSV: one row per true class, one column per predicted class.
    pub fn confusion_csv(&self) -> String {
        let k = self.confusion.len();
        let mut s = String::from("true\\predicted");
        for c in 0..k {
            s += &format!(",{c}");
        }
        s.push('\n');
        for (c, row) in self.confusion.iter().enumerate() {
            s += &c.to_string();
            for v in row {
                s += &format!(",{v}");
            }
            s.push('\n');
        }
        s
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two views: softmax([0, ln 3]) = [1/4, 3/4] and softmax([ln 3, 0]) = [3/4, 1/4] average to
    /// [1/2, 1/2]; averaging logits instead would give the same here, so a third case: one confident
    /// view [0, 10] and one mild [1, 0] average probabilities to about [0.366, 0.634].
    #[test]
    fn views_are_combined_by_averaging_softmax_probabilities() {
        let s = mean_softmax(&[0.0, 3f32.ln(), 3f32.ln(), 0.0], 2, 2);
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[1] - 0.5).abs() < 1e-7);
        let s = mean_softmax(&[0.0, 10.0, 1.0, 0.0], 2, 2);
        let want0 = 0.5 * (1.0 / (1.0 + 10f64.exp()) + 1f64.exp() / (1.0 + 1f64.exp()));
        assert!((s[0] - want0).abs() < 1e-9, "{s:?}");
    }
}
