//! Training-time augmentation as the official recipes run it, deterministic under a seed.
//!
//! | preset (official source) | sampling | spatial | mirror | other |
//! |---|---|---|---|---|
//! | [`TrainPipeline::st_k400`] (`train_k400_clip_vit_b16_adapter12x384.sh`: `--sampling_rate 16 --resize_type random_short_side_scale_jitter --scale_range 1.0 1.15 --mirror`) | dense 8×16, random start | normalise, short side `int(round(U(224, 258)))` by torch bicubic (no resize when already that size; long side `floor(long/short·size)`), `random_crop(224)` with offsets `randint(0, H−224)` (upper end excluded, as SlowFast's code) | p = 0.5 | — |
//! | [`TrainPipeline::st_ssv2`] (`train_ssv2_clip_vit_b16_adapter24x384.sh`: `--sampling_rate 0 --auto_augment rand-m7-n4-mstd0.5-inc1`, default `--resize_type random_resized_crop --scale_range 0.08 1.0`) | uniform 8, one random frame per segment | RandAugment (PIL, on the decoded frames), normalise, `random_resized_crop` (area U(0.08,1)·HW, log-ratio U(ln 3/4, ln 4/3), `int(round(·))` sides, 10 tries, then a centered fallback) → torch bicubic 224 | no | see [`super::augment`] |
//! | [`TrainPipeline::aim_k400`] (`vitclip_base_k400.py` `train_pipeline`) | `SampleFrames(32, 4, 1)` train | cv2 `Resize((-1, 256))`, mmaction `RandomResizedCrop` (10 ratios then 10 areas drawn up front, `np.round`, fallback: centered square), cv2 `Resize((224, 224))`, normalise | `Flip(0.5)` | — |
//! | [`TrainPipeline::aim_ssv2`] (`vitclip_base_sthv2.py` `train_pipeline`) | uniform 8, random | as AIM K400 | `Flip(0)` | `RandomErasing(probability=0.25)` after normalising ([`mma_random_erasing`]); **not ported**: `Imgaug` RandAugment(n=4, m=7) (see below) |
//!
//! **Not ported: AIM's SSv2 `Imgaug(transforms=[dict(type='RandAugment', n=4, m=7)])`.** It is imgaug 0.4's
//! `iaa.RandAugment`, a different implementation from ST-Adapter's: before choosing its ops it always
//! flips left-right with p = 0.5 (`Fliplr(0.5)`, although the config sets `Flip(flip_ratio=0)` for SSv2)
//! and crops up to `U(0, m)/224` of each side then resizes back (`KeepSizeByResize(Crop)`, cv2 linear);
//! then `SomeOf(4)` of 16 ops (Identity, Autocontrast, Equalize, Invert, Affine rotate ±m/30·30°,
//! Posterize, Solarize, Enhance{Color,Contrast,Brightness,Sharpness}, shear x/y, translate x/y,
//! Cutout) with magnitude m/30 — imgaug's own numpy/cv2 re-implementations of the PIL ops, whose rounding
//! would each need porting and checking. Expected cost: not measured here, and none of the three papers
//! ablates it (AIM's appendix lists RandAugment with label smoothing and random erasing as the "stronger
//! data augmentations" it takes from Video Swin for SSv2's 50 epochs): expect a lower SSv2 top-1 when
//! training AIM without it, from over-fitting. Its implied left-right mirror is missing too (on SSv2 that
//! mirror swaps the meaning of left/right classes). The closest ported substitute is ST-Adapter's
//! RandAugment ([`super::augment`]); a run that uses it must say so.
//!
//! All draws come from one `rand::Rng` (the trainer's seeded `StdRng`) through [`Draws`]; NumPy's,
//! Python's and torch's generators are not reproduced (same distributions, different streams). The
//! tests drive the same code with the draws recorded from the official functions.

use super::sample::{py_round, Draw, Sampling};
use super::transform::{cv2_linear, mma_normalize, mma_rescale_size, st_normalize, Planes};
use super::Frame;
use anyhow::{bail, Result};
use rand::Rng;

/// Integer and real uniform draws.
pub trait Draws: Draw {
    /// Uniform in `[lo, hi)` (Python's `random.uniform` / `np.random.uniform`).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64;
}

impl<R: Rng> Draws for R {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.gen::<f64>()
    }
}

/// ST-Adapter `random_short_side_scale_jitter` (bicubic): `size = int(round(U(min, max)))`; frames whose
/// short side already equals `size` are returned unchanged.
pub fn st_scale_jitter(frames: &[Planes], min: usize, max: usize, d: &mut dyn Draws) -> Vec<Planes> {
    let size = py_round(d.uniform(min as f64, max as f64)) as usize;
    let (h, w) = (frames[0].h, frames[0].w);
    if (w <= h && w == size) || (h <= w && h == size) {
        return frames.to_vec();
    }
    let (nh, nw) = if w < h {
        ((h as f64 / w as f64 * size as f64).floor() as usize, size)
    } else {
        (size, (w as f64 / h as f64 * size as f64).floor() as usize)
    };
    frames.iter().map(|f| f.bicubic(nh, nw)).collect()
}

/// ST-Adapter (SlowFast) `random_crop`: offsets `randint(0, H − size)` (the last position is never drawn).
pub fn st_random_crop(frames: &[Planes], size: usize, d: &mut dyn Draws) -> Vec<Planes> {
    let (h, w) = (frames[0].h, frames[0].w);
    if h == size && w == size {
        return frames.to_vec();
    }
    let y = if h > size { d.int(0, h - size - 1) } else { 0 };
    let x = if w > size { d.int(0, w - size - 1) } else { 0 };
    frames.iter().map(|f| f.crop(y, x, size, size)).collect()
}

/// ST-Adapter `_get_param_spatial_crop` (scale 0.08-1, ratio 3/4-4/3, log-uniform ratio, 10 tries):
/// `(top, left, height, width)`.
pub fn st_rrc_params(h: usize, w: usize, d: &mut dyn Draws) -> (usize, usize, usize, usize) {
    let (scale, ratio) = ((0.08, 1.0), (3.0f64 / 4.0, 4.0f64 / 3.0));
    let area = (h * w) as f64;
    for _ in 0..10 {
        let target = d.uniform(scale.0, scale.1) * area;
        let aspect = d.uniform(ratio.0.ln(), ratio.1.ln()).exp();
        let cw = py_round((target * aspect).sqrt());
        let ch = py_round((target / aspect).sqrt());
        if 0 < cw && cw as usize <= w && 0 < ch && ch as usize <= h {
            let (cw, ch) = (cw as usize, ch as usize);
            let i = d.int(0, h - ch);
            let j = d.int(0, w - cw);
            return (i, j, ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, py_round(w as f64 / ratio.0) as usize)
    } else if in_ratio > ratio.1 {
        (py_round(h as f64 * ratio.1) as usize, h)
    } else {
        (w, h)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// ST-Adapter `random_resized_crop` to `size`×`size` with torch bicubic.
pub fn st_random_resized_crop(frames: &[Planes], size: usize, d: &mut dyn Draws) -> Vec<Planes> {
    let (i, j, ch, cw) = st_rrc_params(frames[0].h, frames[0].w, d);
    frames.iter().map(|f| f.crop(i, j, ch, cw).bicubic(size, size)).collect()
}

/// mmaction2 `RandomResizedCrop.get_crop_bbox` (area 0.08-1, ratio 3/4-4/3): 10 log-ratios, then 10 areas,
/// are drawn up front; sides `np.round(...)`; `(left, top, right, bottom)`.
pub fn mma_rrc_bbox(h: usize, w: usize, d: &mut dyn Draws) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let ratios: Vec<f64> = (0..10).map(|_| d.uniform((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln()).exp()).collect();
    let areas: Vec<f64> = (0..10).map(|_| d.uniform(0.08, 1.0) * area).collect();
    for (r, a) in ratios.iter().zip(&areas) {
        let cw = (a * r).sqrt().round_ties_even() as usize;
        let ch = (a / r).sqrt().round_ties_even() as usize;
        if ch <= h && cw <= w {
            let x = d.int(0, w - cw);
            let y = d.int(0, h - ch);
            return (x, y, x + cw, y + ch);
        }
    }
    let s = h.min(w);
    let (x, y) = ((w - s) / 2, (h - s) / 2);
    (x, y, x + s, y + s)
}

fn crop_frame(f: &Frame, left: usize, top: usize, right: usize, bottom: usize) -> Frame {
    let mut rgb = Vec::with_capacity((right - left) * (bottom - top) * 3);
    for y in top..bottom {
        rgb.extend_from_slice(&f.rgb[(y * f.width + left) * 3..(y * f.width + right) * 3]);
    }
    Frame::new(right - left, bottom - top, rgb)
}

/// AIM's spatial training chain: `Resize((-1, short))` → `RandomResizedCrop` → `Resize((crop, crop),
/// keep_ratio=False)` → `Flip(flip_ratio)` → `Normalize`. Returns `(3, T, crop, crop)` as planes per frame.
pub fn mma_train_spatial(
    frames: &[Frame],
    short: usize,
    crop: usize,
    flip_ratio: f64,
    d: &mut dyn Draws,
) -> Vec<Planes> {
    let (w, h) = mma_rescale_size(frames[0].width, frames[0].height, short);
    let resized: Vec<Frame> = frames.iter().map(|f| cv2_linear(f, w, h)).collect();
    let (l, t, r, b) = mma_rrc_bbox(h, w, d);
    // np.random.rand() < flip_ratio
    let flip = d.uniform(0.0, 1.0) < flip_ratio;
    resized
        .iter()
        .map(|f| {
            let mut p = mma_normalize(&cv2_linear(&crop_frame(f, l, t, r, b), crop, crop));
            if flip {
                p.flip();
            }
            p
        })
        .collect()
}

/// timm `RandomErasing(probability, mode='const')` as AIM's SSv2 recipe applies it after `Normalize`: with
/// probability `p` one box (area U(0.02, 1/3)·HW, log-aspect U(ln 0.3, ln 1/0.3), `int(round(·))` sides,
/// 10 tries, kept only if strictly smaller than the frame) is set to 0 in every channel. AIM restores
/// Python's random state before each frame, so all frames of the clip get the same box (one set of draws).
pub fn mma_random_erasing(frames: &mut [Planes], probability: f64, d: &mut dyn Draws) {
    // `random.random() > probability` skips
    if d.uniform(0.0, 1.0) > probability {
        return;
    }
    let (h, w) = (frames[0].h, frames[0].w);
    let area = (h * w) as f64;
    for _ in 0..10 {
        let target = d.uniform(0.02, 1.0 / 3.0) * area;
        let aspect = d.uniform(0.3f64.ln(), (1.0f64 / 0.3).ln()).exp();
        let eh = py_round((target * aspect).sqrt()) as usize;
        let ew = py_round((target / aspect).sqrt()) as usize;
        if ew < w && eh < h {
            let top = d.int(0, h - eh);
            let left = d.int(0, w - ew);
            for p in frames.iter_mut() {
                for c in 0..p.channels() {
                    for y in top..top + eh {
                        let row = (c * h + y) * w;
                        p.data[row + left..row + left + ew].fill(0.0);
                    }
                }
            }
            return;
        }
    }
}

/// A training pipeline: sampling + augmentation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum TrainPipeline {
    /// ST-Adapter K400: dense sampling, scale jitter `[round(size·lo), round(size·hi)]`, random crop, mirror.
    St { sampling: Sampling, size: usize, jitter: Option<(f64, f64)>, mirror: bool, rand_augment: bool },
    /// AIM: mmaction2 sampling, Resize(-1, short), RandomResizedCrop, Resize(crop), Flip, Normalize,
    /// RandomErasing (`erase_prob` 0: not in the pipeline, no draws).
    Mma { sampling: Sampling, short: usize, crop: usize, flip_ratio: f64, erase_prob: f64 },
}

impl TrainPipeline {
    /// `train_k400_clip_vit_b16_adapter12x384.sh`.
    pub fn st_k400() -> Self {
        TrainPipeline::St {
            sampling: Sampling::StDense { frames: 8, rate: 16, views: 1 },
            size: 224,
            jitter: Some((1.0, 1.15)),
            mirror: true,
            rand_augment: false,
        }
    }

    /// `train_ssv2_clip_vit_b16_adapter24x384.sh` (RandAugment `rand-m7-n4-mstd0.5-inc1`).
    pub fn st_ssv2() -> Self {
        TrainPipeline::St {
            sampling: Sampling::Uniform { frames: 8 },
            size: 224,
            jitter: None,
            mirror: false,
            rand_augment: true,
        }
    }

    /// `vitclip_base_k400.py` `train_pipeline`.
    pub fn aim_k400() -> Self {
        TrainPipeline::Mma {
            sampling: Sampling::MmaClips { clip_len: 32, interval: 4, clips: 1 },
            short: 256,
            crop: 224,
            flip_ratio: 0.5,
            erase_prob: 0.0,
        }
    }

    /// `vitclip_base_sthv2.py` `train_pipeline` (`RandomErasing(probability=0.25)`), **without** its imgaug
    /// RandAugment (not ported).
    pub fn aim_ssv2() -> Self {
        TrainPipeline::Mma {
            sampling: Sampling::Uniform { frames: 8 },
            short: 256,
            crop: 224,
            flip_ratio: 0.0,
            erase_prob: 0.25,
        }
    }

    pub fn sampling(&self) -> Sampling {
        match *self {
            TrainPipeline::St { sampling, .. } | TrainPipeline::Mma { sampling, .. } => sampling,
        }
    }

    /// The clip's frame indices for a video of `n` frames.
    pub fn indices<R: Rng>(&self, n: usize, rng: &mut R) -> Result<Vec<usize>> {
        if n == 0 {
            bail!("the video has no frames");
        }
        Ok(self.sampling().train_indices(n, rng))
    }

    /// The `(3, T, S, S)` training tensor from the sampled frames (in order).
    pub fn apply<R: Rng>(&self, frames: &[Frame], rng: &mut R) -> Result<Vec<f32>> {
        if frames.is_empty() {
            bail!("no frames to augment");
        }
        if let Some(k) = frames.iter().position(|f| (f.width, f.height) != (frames[0].width, frames[0].height)) {
            bail!(
                "frame {k} is {}x{}, frame 0 is {}x{}: a clip needs one frame size",
                frames[k].width,
                frames[k].height,
                frames[0].width,
                frames[0].height
            );
        }
        let planes = match *self {
            TrainPipeline::St { size, jitter, mirror, rand_augment, .. } => {
                let augmented;
                let frames = if rand_augment {
                    augmented = super::augment::RandAugment::st_ssv2().apply(frames, rng);
                    &augmented[..]
                } else {
                    frames
                };
                let normed: Vec<Planes> = frames.iter().map(st_normalize).collect();
                let mut out = match jitter {
                    Some((lo, hi)) => {
                        let (min, max) = (py_round(size as f64 * lo) as usize, py_round(size as f64 * hi) as usize);
                        st_random_crop(&st_scale_jitter(&normed, min, max, rng), size, rng)
                    }
                    None => st_random_resized_crop(&normed, size, rng),
                };
                // `torch.rand(1).item() < 0.5`
                if mirror && rng.gen::<f64>() < 0.5 {
                    out.iter_mut().for_each(Planes::flip);
                }
                out
            }
            TrainPipeline::Mma { short, crop, flip_ratio, .. } => {
                mma_train_spatial(frames, short, crop, flip_ratio, rng)
            }
        };
        Ok(stack(&planes))
    }
}

/// Planes per frame → `(3, T, H, W)`.
pub fn stack(frames: &[Planes]) -> Vec<f32> {
    let (t, hw) = (frames.len(), frames[0].h * frames[0].w);
    let mut out = vec![0f32; 3 * t * hw];
    for (k, p) in frames.iter().enumerate() {
        for c in 0..3 {
            out[(c * t + k) * hw..(c * t + k + 1) * hw].copy_from_slice(&p.data[c * hw..(c + 1) * hw]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn video(n: usize, w: usize, h: usize) -> Vec<Frame> {
        (0..n).map(|t| Frame::new(w, h, (0..w * h * 3).map(|i| ((i * 7 + t * 13) % 256) as u8).collect())).collect()
    }

    /// Same seed, same clip and tensor; another seed, another tensor (every preset).
    #[test]
    fn training_augmentation_is_deterministic_under_a_seed() {
        let v = video(8, 40, 30);
        for p in [
            TrainPipeline::St {
                sampling: Sampling::StDense { frames: 8, rate: 1, views: 1 },
                size: 24,
                jitter: Some((1.0, 1.15)),
                mirror: true,
                rand_augment: false,
            },
            TrainPipeline::St {
                sampling: Sampling::Uniform { frames: 8 },
                size: 24,
                jitter: None,
                mirror: false,
                rand_augment: true,
            },
            TrainPipeline::Mma {
                sampling: Sampling::Uniform { frames: 8 },
                short: 32,
                crop: 24,
                flip_ratio: 0.5,
                erase_prob: 0.5,
            },
        ] {
            let run = |seed| p.apply(&v, &mut rand::rngs::StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(run(3), run(3));
            assert_ne!(run(3), run(4));
        }
    }
}
