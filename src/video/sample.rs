//! Frame sampling: which frames of a video of `n` frames each view sees, exactly as the official code
//! picks them.
//!
//! Legend: `n` frames in the decoded video (0-based indices) · `T` frames per clip · `s` sampling rate /
//! frame interval · `V` temporal views (clips).
//!
//! | official code | rule |
//! |---|---|
//! | ST-Adapter `VideoDataset._generate_temporal_crops`, `sampling_rate > 0` (dense) | pad the video to `(T-1)·s+1` frames by repeating the last one; `slide = n_padded − ((T-1)·s+1)`; view `i` starts at `round(slide/(V−1)·i)` (Python `round`, half to even; `slide // 2` if `V = 1`) and takes every `s`-th frame |
//! | ST-Adapter, `sampling_rate = 0` (uniform) and AIM `SampleFrames(frame_uniform=True, test_mode=True)` | `seg = (n−1)/T`; frame `i` is `(round(seg·i) + round(seg·(i+1))) // 2` (half to even) |
//! | AIM `SampleFrames(test_mode=True)` (mmaction2) | `avg = (n − T·s + 1)/V`; clip `i` starts at `int(avg·i + avg/2)` (NumPy truncation) if `n > T·s − 1`, else at 0; frame `k` is `start + k·s`, wrapped `mod n` (`out_of_bound_opt='loop'`) |
//! | ST-Adapter `_random_sample_frame_idx`, dense | if `s·(T−1)+1 ≥ n`: `k·s` while `< n`, then the last one repeated; else a start uniform in `[0, n − s·(T−1))` |
//! | ST-Adapter `_random_sample_frame_idx` uniform / AIM `get_seq_frames` train | frame `i` uniform in `[round(seg·i), round(seg·(i+1))]` (both ends included) |
//! | AIM `SampleFrames._get_train_clips` | `avg = (n − T·s + 1) // V`; `avg > 0`: clip `i` starts at `avg·i + U[0, avg)`; `n > max(V, T·s)`: sorted `U[0, n−T·s+1)`; `avg = 0`: `around(i·(n−T·s+1)/V)`; else 0; then `mod n` |
//!
//! The random draws use our RNG (any [`rand::Rng`]; the trainer seeds a `StdRng`), not NumPy's or Python's:
//! the *distribution* and every bound are the official ones, the stream is not. Each sampler takes its
//! draws through [`Draw`] so that the tests can force the lowest and highest draw and compare with the
//! official code run with the same forced draws (`fixtures/video/indices.json`).

use rand::Rng;

/// Python's `round(x)` on a float: to nearest, ties to even (NumPy's `np.round` is the same).
pub fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// A source of uniform integer draws `lo..=hi` (inclusive). Implemented for every [`rand::Rng`].
pub trait Draw {
    fn int(&mut self, lo: usize, hi: usize) -> usize;
}

impl<R: Rng> Draw for R {
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        self.gen_range(lo..=hi)
    }
}

/// A [`Draw`] that always answers the lowest (or the highest) allowed value: the tests' forced draws.
pub struct Extreme(pub bool);

impl Draw for Extreme {
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        if self.0 {
            hi
        } else {
            lo
        }
    }
}

/// The temporal rule of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Sampling {
    /// ST-Adapter dense sampling (`--sampling_rate > 0`): `frames` per clip, every `rate`-th frame,
    /// `views` clips at test time.
    StDense { frames: usize, rate: usize, views: usize },
    /// Segment-midpoint sampling: ST-Adapter `--sampling_rate 0` and AIM `frame_uniform=True`
    /// (one view at test time; a random frame per segment when training).
    Uniform { frames: usize },
    /// mmaction2 `SampleFrames` (AIM's K400/K700 configs): `clip_len`, `frame_interval`, `num_clips`,
    /// `out_of_bound_opt='loop'`, `twice_sample=False`, `temporal_jitter=False`.
    MmaClips { clip_len: usize, interval: usize, clips: usize },
}

impl Sampling {
    /// Frames per view (the model's `T`).
    pub fn frames(&self) -> usize {
        match *self {
            Sampling::StDense { frames, .. } | Sampling::Uniform { frames } => frames,
            Sampling::MmaClips { clip_len, .. } => clip_len,
        }
    }

    /// Temporal views at test time.
    pub fn views(&self) -> usize {
        match *self {
            Sampling::StDense { views, .. } => views,
            Sampling::Uniform { .. } => 1,
            Sampling::MmaClips { clips, .. } => clips,
        }
    }

    /// Test-time frame indices, one list per temporal view (clip order as the official code stacks them).
    /// `n` must be at least 1.
    pub fn test_indices(&self, n: usize) -> Vec<Vec<usize>> {
        assert!(n > 0, "a video has at least one frame");
        match *self {
            Sampling::StDense { frames, rate, views } => st_dense_test(n, frames, rate, views),
            Sampling::Uniform { frames } => vec![uniform_test(n, frames)],
            Sampling::MmaClips { clip_len, interval, clips } => mma_test(n, clip_len, interval, clips),
        }
    }

    /// Training-time frame indices (one clip), with the official distribution; `draw` supplies the
    /// uniform integer draws (pass any `rand::Rng`).
    pub fn train_indices(&self, n: usize, draw: &mut dyn Draw) -> Vec<usize> {
        assert!(n > 0, "a video has at least one frame");
        match *self {
            Sampling::StDense { frames, rate, .. } => st_dense_train(n, frames, rate, draw),
            Sampling::Uniform { frames } => uniform_train(n, frames, draw),
            Sampling::MmaClips { clip_len, interval, clips } => mma_train(n, clip_len, interval, clips, draw),
        }
    }
}

// ANCHOR: st_dense_test
/// ST-Adapter `_generate_temporal_crops` with `sampling_rate > 0`.
fn st_dense_test(n: usize, t: usize, s: usize, views: usize) -> Vec<Vec<usize>> {
    let seg_len = (t - 1) * s + 1;
    let padded = n.max(seg_len); // the last frame repeated up to seg_len
    let slide = padded - seg_len;
    (0..views)
        .map(|i| {
            let start =
                if views == 1 { slide / 2 } else { py_round(slide as f64 / (views - 1) as f64 * i as f64) as usize };
            (0..t).map(|k| (start + k * s).min(n - 1)).collect()
        })
        .collect()
}
// ANCHOR_END: st_dense_test

// ANCHOR: uniform_test
/// Segment bounds `(round(seg·i), round(seg·(i+1)))` with `seg = (n−1)/T` in f64, as both repos compute them.
fn segments(n: usize, t: usize) -> impl Iterator<Item = (usize, usize)> {
    let seg = (n - 1) as f64 / t as f64;
    (0..t).map(move |i| (py_round(seg * i as f64) as usize, py_round(seg * (i + 1) as f64) as usize))
}

fn uniform_test(n: usize, t: usize) -> Vec<usize> {
    segments(n, t).map(|(a, b)| (a + b) / 2).collect()
}
// ANCHOR_END: uniform_test

// ANCHOR: mma_test
/// mmaction2 `SampleFrames._get_test_clips` + the `loop` out-of-bound rule.
fn mma_test(n: usize, t: usize, s: usize, clips: usize) -> Vec<Vec<usize>> {
    let ori = t * s;
    let avg = (n as f64 - ori as f64 + 1.0) / clips as f64;
    (0..clips)
        .map(|i| {
            // (base + avg/2).astype(int): truncation toward zero of a non-negative f64
            let start = if n + 1 > ori { (i as f64 * avg + avg / 2.0) as usize } else { 0 };
            (0..t).map(|k| (start + k * s) % n).collect()
        })
        .collect()
}
// ANCHOR_END: mma_test

fn st_dense_train(n: usize, t: usize, s: usize, draw: &mut dyn Draw) -> Vec<usize> {
    if s * (t - 1) + 1 >= n {
        let mut out: Vec<usize> = Vec::with_capacity(t);
        for k in 0..t {
            let v = if k * s < n { k * s } else { out[k - 1] };
            out.push(v);
        }
        out
    } else {
        // np.random.randint(n - s·(T−1)): [0, n − s·(T−1) − 1]
        let start = draw.int(0, n - s * (t - 1) - 1);
        (0..t).map(|k| start + k * s).collect()
    }
}

fn uniform_train(n: usize, t: usize, draw: &mut dyn Draw) -> Vec<usize> {
    segments(n, t).map(|(a, b)| draw.int(a, b)).collect()
}

fn mma_train(n: usize, t: usize, s: usize, clips: usize, draw: &mut dyn Draw) -> Vec<usize> {
    let ori = t * s;
    let avg = (n as i64 - ori as i64 + 1).div_euclid(clips as i64);
    let offsets: Vec<usize> = if avg > 0 {
        (0..clips).map(|i| i * avg as usize + draw.int(0, avg as usize - 1)).collect()
    } else if n > clips.max(ori) {
        let mut o: Vec<usize> = (0..clips).map(|_| draw.int(0, n - ori)).collect();
        o.sort_unstable();
        o
    } else if avg == 0 {
        let ratio = (n as f64 - ori as f64 + 1.0) / clips as f64;
        (0..clips).map(|i| (i as f64 * ratio).round_ties_even() as usize).collect()
    } else {
        vec![0; clips]
    };
    offsets.iter().flat_map(|&o| (0..t).map(move |k| (o + k * s) % n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's round is half-to-even: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2.
    #[test]
    fn py_round_is_half_to_even() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, 2.4999].map(py_round), [0, 2, 2, 0, 2]);
    }

    /// ST-Adapter K400 on a 300-frame video: slide = 300 − 113 = 187, starts 0, round(93.5) = 94, 187.
    #[test]
    fn st_dense_three_views_start_at_0_94_187_on_300_frames() {
        let v = Sampling::StDense { frames: 8, rate: 16, views: 3 }.test_indices(300);
        assert_eq!(v.iter().map(|c| c[0]).collect::<Vec<_>>(), [0, 94, 187]);
        assert_eq!(v[2][7], 187 + 7 * 16);
    }

    /// A 5-frame video under 8×16 dense sampling: frame 0 then the last frame repeated (padding rule).
    #[test]
    fn st_dense_pads_a_short_video_with_its_last_frame() {
        let v = Sampling::StDense { frames: 8, rate: 16, views: 3 }.test_indices(5);
        assert!(v.iter().all(|c| c == &[0, 4, 4, 4, 4, 4, 4, 4]));
    }

    /// The training samplers are deterministic under a seed (our StdRng).
    #[test]
    fn train_sampling_is_deterministic_under_a_seed() {
        use rand::SeedableRng;
        for s in [
            Sampling::StDense { frames: 8, rate: 16, views: 1 },
            Sampling::Uniform { frames: 8 },
            Sampling::MmaClips { clip_len: 32, interval: 4, clips: 1 },
        ] {
            let a = s.train_indices(300, &mut rand::rngs::StdRng::seed_from_u64(7));
            let b = s.train_indices(300, &mut rand::rngs::StdRng::seed_from_u64(7));
            assert_eq!(a, b);
        }
    }
}
