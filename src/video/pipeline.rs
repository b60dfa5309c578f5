//! The official pipelines as presets: frame indices per view, then the `(3, T, S, S)` f32 tensor of each
//! view, channels first, exactly what the official loader hands the model.
//!
//! | preset (official source) | sampling | resize | crop | normalisation | views |
//! |---|---|---|---|---|---|
//! | [`Pipeline::st_k400_test`] (st-adapter `scripts/train_k400_clip_vit_b16_adapter12x384.sh` l.8-13: `--num_frames 8 --sampling_rate 16 --num_spatial_views 1 --num_temporal_views 3`; `video_dataset/dataset.py` l.142-166 test branch, l.176-204 temporal crops, l.206-228 spatial crops) | dense 8×16, last frame repeated to 113, 3 clips at `round(slide/2·i)` | torch bicubic (f32, after normalising), short side 224, long `long·224//short` | center 224 | `(x/255 − CLIP mean)/CLIP std`, before resizing | 3 temporal × 1 spatial |
//! | [`Pipeline::st_ssv2_test`] (`scripts/train_ssv2_clip_vit_b16_adapter24x384.sh` l.8-11: `--sampling_rate 0 --num_spatial_views 3`) | uniform 8, segment midpoints | same | 3 crops at 0, margin//2, margin along the long side | same | 1 × 3 |
//! | [`Pipeline::aim_k400_test`] (AIM `configs/recognition/vit/vitclip_base_k400.py` l.49-65; `mmaction/datasets/pipelines/loading.py` l.164-187 `_get_test_clips`; `augmentations.py` `Resize` l.1061, `CenterCrop` l.1659, `Normalize` l.1391) | `SampleFrames(32, 4, num_clips=3, test_mode)`, loop | cv2 bilinear u8, `Resize((-1, 224))` = short side 224, sides `int(x·f+0.5)` | `CenterCrop(224)` | mmcv `imnormalize` (0..255, mean 122.769/116.74/104.04, std 68.493/66.63/70.321), after cropping | 3 × 1 |
//! | [`Pipeline::aim_ssv2_test`] (`vitclip_base_sthv2.py` l.53-70; `loading.py` l.205-224 `get_seq_frames`; `ThreeCrop` l.1759) | `SampleFrames(8, frame_uniform, test_mode)`: segment midpoints | same | `ThreeCrop(224)`: left, **right** (`2·((W−224)//2)`), middle | same | 1 × 3 |
//!
//! The view order is crop-major in both repos (`view = spatial · clips + temporal`); the evaluators
//! average softmax scores over views, so the order only matters when comparing views one by one.
//! Note AIM's `ThreeCrop` puts its "right" crop at `2·((W−S)//2)`, one column short of the edge when
//! `W − S` is odd, while ST-Adapter's reaches the edge. The AIM `val_pipeline` (short side 256, one
//! center crop) is not the published protocol and is not a preset.
//!
//! Departures: ST-Adapter resizes every decoded frame before picking the clip; we resize only the
//! sampled frames (each frame once, even when several views share it) — the kernel is per frame, so
//! the tensors are identical. AIM decodes with decord; the frame count `n` is whatever the decoder
//! reports (see `decode.rs`).

use super::sample::Sampling;
use super::transform::{self, cv2_linear, mma_normalize, st_normalize, Planes};
use super::Frame;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// How a view's frames become a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Spatial {
    /// ST-Adapter: normalise, torch bicubic to short side `size`, then 1 (center) or 3 crops of `size`.
    St { size: usize, three_crop: bool },
    /// AIM / mmaction2: cv2 bilinear to short side `short`, `CenterCrop`/`ThreeCrop` of `crop`, normalise.
    Mma { short: usize, crop: usize, three_crop: bool },
}

impl Spatial {
    pub fn crops(&self) -> usize {
        match *self {
            Spatial::St { three_crop, .. } | Spatial::Mma { three_crop, .. } => {
                if three_crop {
                    3
                } else {
                    1
                }
            }
        }
    }

    pub fn size(&self) -> usize {
        match *self {
            Spatial::St { size, .. } => size,
            Spatial::Mma { crop, .. } => crop,
        }
    }
}

/// A test-time pipeline: sampling + spatial transform.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The preset's name (`st_k400_test`, …), or the user's.
    pub name: String,
    pub sampling: Sampling,
    pub spatial: Spatial,
}

/// One view: the frame indices it reads and its temporal/spatial position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub frames: Vec<usize>,
    pub temporal: usize,
    pub spatial: usize,
}

impl Pipeline {
    // ANCHOR: st_k400_test
    /// ST-Adapter K400 (`train_k400_clip_vit_b16_adapter12x384.sh`): 8×16 dense, 3 temporal × 1 spatial.
    pub fn st_k400_test() -> Self {
        Self {
            name: "st_k400_test".into(),
            sampling: Sampling::StDense { frames: 8, rate: 16, views: 3 },
            spatial: Spatial::St { size: 224, three_crop: false },
        }
    }
    // ANCHOR_END: st_k400_test

    /// ST-Adapter SSv2 (`train_ssv2_clip_vit_b16_adapter24x384.sh`): 8 uniform, 1 temporal × 3 spatial.
    pub fn st_ssv2_test() -> Self {
        Self {
            name: "st_ssv2_test".into(),
            sampling: Sampling::Uniform { frames: 8 },
            spatial: Spatial::St { size: 224, three_crop: true },
        }
    }

    /// AIM K400 (`vitclip_base_k400.py` `test_pipeline`): 32×4, 3 clips × 1 center crop.
    pub fn aim_k400_test() -> Self {
        Self {
            name: "aim_k400_test".into(),
            sampling: Sampling::MmaClips { clip_len: 32, interval: 4, clips: 3 },
            spatial: Spatial::Mma { short: 224, crop: 224, three_crop: false },
        }
    }

    /// AIM SSv2 (`vitclip_base_sthv2.py` `test_pipeline`): 8 uniform, 1 clip × `ThreeCrop`.
    pub fn aim_ssv2_test() -> Self {
        Self {
            name: "aim_ssv2_test".into(),
            sampling: Sampling::Uniform { frames: 8 },
            spatial: Spatial::Mma { short: 224, crop: 224, three_crop: true },
        }
    }

    /// Every preset, by name.
    pub fn presets() -> [Pipeline; 4] {
        [Self::st_k400_test(), Self::st_ssv2_test(), Self::aim_k400_test(), Self::aim_ssv2_test()]
    }

    // ANCHOR: pipeline_views
    /// The views of a video of `n` frames, crop-major (as both repos stack them).
    pub fn views(&self, n: usize) -> Result<Vec<View>> {
        if n == 0 {
            bail!("{}: the video has no frames", self.name);
        }
        let clips = self.sampling.test_indices(n);
        Ok((0..self.spatial.crops())
            .flat_map(|s| {
                clips.iter().enumerate().map(move |(t, f)| View { frames: f.clone(), temporal: t, spatial: s })
            })
            .collect())
    }
    // ANCHOR_END: pipeline_views

    /// The tensor of one view, `(3, T, S, S)` flattened, from the view's frames in order (`frames[k]` is
    /// video frame `view.frames[k]`).
    pub fn apply(&self, frames: &[Frame], view: &View) -> Result<Vec<f32>> {
        if frames.len() != view.frames.len() {
            bail!("{}: the view reads {} frames, {} given", self.name, view.frames.len(), frames.len());
        }
        let resized: Vec<Planes> = frames.iter().map(|f| self.resize(f)).collect::<Result<_>>()?;
        let refs: Vec<&Planes> = resized.iter().collect();
        self.crop_stack(&refs, view.spatial)
    }

    /// All views of a decoded video (every frame, in presentation order), each needed frame resized once.
    pub fn apply_video(&self, video: &[Frame]) -> Result<Vec<Vec<f32>>> {
        let views = self.views(video.len())?;
        let mut cache: BTreeMap<usize, Planes> = BTreeMap::new();
        for v in &views {
            for &i in &v.frames {
                if let std::collections::btree_map::Entry::Vacant(e) = cache.entry(i) {
                    e.insert(self.resize(&video[i])?);
                }
            }
        }
        views
            .iter()
            .map(|v| {
                let refs: Vec<&Planes> = v.frames.iter().map(|i| &cache[i]).collect();
                self.crop_stack(&refs, v.spatial)
            })
            .collect()
    }

    /// Frame → resized planes: ST normalises then resizes (float); AIM resizes (u8) then normalises
    /// (cropping commutes with AIM's per-pixel normalisation, so it may come first or last).
    fn resize(&self, f: &Frame) -> Result<Planes> {
        if f.width == 0 || f.height == 0 {
            bail!("{}: empty frame ({}x{})", self.name, f.width, f.height);
        }
        Ok(match self.spatial {
            Spatial::St { size, .. } => {
                let (w, h) = transform::st_short_side_size(f.width, f.height, size);
                st_normalize(f).bicubic(h, w)
            }
            Spatial::Mma { short, .. } => {
                let (w, h) = transform::mma_rescale_size(f.width, f.height, short);
                mma_normalize(&cv2_linear(f, w, h))
            }
        })
    }

    /// The crop of spatial view `s` of every frame, stacked to `(3, T, S, S)`.
    fn crop_stack(&self, frames: &[&Planes], s: usize) -> Result<Vec<f32>> {
        let size = self.spatial.size();
        let (h, w) = (frames[0].h, frames[0].w);
        if let Some(k) = frames.iter().position(|p| (p.h, p.w) != (h, w)) {
            bail!(
                "{}: frame {k} of the view resizes to {}x{}, frame 0 to {}x{}",
                self.name,
                frames[k].w,
                frames[k].h,
                w,
                h
            );
        }
        let (y0, x0) = match self.spatial {
            Spatial::St { three_crop: false, .. } => {
                if h < size || w < size {
                    bail!("{}: a {}x{} frame cannot give a {} crop", self.name, w, h, size);
                }
                ((h - size) / 2, (w - size) / 2)
            }
            Spatial::St { three_crop: true, .. } => {
                if h.min(w) != size {
                    bail!("{}: three crops need the short side {} to equal {}", self.name, h.min(w), size);
                }
                let margin = h.max(w) - size;
                let st = [0, margin / 2, margin][s];
                if h > w {
                    (st, 0)
                } else {
                    (0, st)
                }
            }
            Spatial::Mma { three_crop: false, crop, .. } => {
                if h < crop || w < crop {
                    bail!("{}: a {}x{} frame cannot give a {} crop", self.name, w, h, crop);
                }
                ((h - crop) / 2, (w - crop) / 2)
            }
            Spatial::Mma { three_crop: true, crop, .. } => {
                if crop == h {
                    let step = (w - crop) / 2;
                    (0, [0, 2 * step, step][s])
                } else if crop == w {
                    let step = (h - crop) / 2;
                    ([0, 2 * step, step][s], 0)
                } else {
                    bail!("{}: ThreeCrop needs a side equal to {} (frame {}x{})", self.name, crop, w, h);
                }
            }
        };
        let t = frames.len();
        let mut out = vec![0f32; 3 * t * size * size];
        for (k, p) in frames.iter().enumerate() {
            let c = p.crop(y0, x0, size, size);
            for ch in 0..3 {
                let dst = (ch * t + k) * size * size;
                out[dst..dst + size * size].copy_from_slice(&c.data[ch * size * size..(ch + 1) * size * size]);
            }
        }
        Ok(out)
    }
}

/// `--pipeline` and `--views`: a preset or a RON file, and other views of it.
impl Pipeline {
    /// A preset by name ([`Pipeline::presets`]) or a RON file.
    pub fn named_or_file(name_or_path: &str) -> Result<Self> {
        if let Some(p) = Self::presets().into_iter().find(|p| p.name == name_or_path) {
            return Ok(p);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<String> = Self::presets().into_iter().map(|p| p.name).collect();
            bail!("pipeline `{name_or_path}` is neither a preset ({}) nor a file", names.join(", "));
        }
        Ok(crate::input::read_ron(path)?)
    }

    /// The views it produces: frames × temporal clips × spatial crops.
    pub fn views_spec(&self) -> crate::count::Views {
        crate::count::Views::new(self.sampling.frames(), self.sampling.views(), self.spatial.crops())
    }

    /// The same pipeline producing `v` views (frames per clip, clips, crops 1 or 3); the name gets
    /// the views appended when they differ.
    pub fn with_views(&self, v: crate::count::Views) -> Result<Self> {
        let mut p = self.clone();
        p.sampling = match p.sampling {
            Sampling::StDense { rate, .. } => Sampling::StDense { frames: v.frames, rate, views: v.clips },
            Sampling::Uniform { .. } if v.clips == 1 => Sampling::Uniform { frames: v.frames },
            Sampling::Uniform { .. } => bail!("{}: uniform sampling has 1 temporal clip, not {}", self.name, v.clips),
            Sampling::MmaClips { interval, .. } => Sampling::MmaClips { clip_len: v.frames, interval, clips: v.clips },
        };
        let three = match v.crops {
            1 => false,
            3 => true,
            n => bail!("{}: {n} spatial crops; the official pipelines take 1 (center) or 3", self.name),
        };
        p.spatial = match p.spatial {
            Spatial::St { size, .. } => Spatial::St { size, three_crop: three },
            Spatial::Mma { short, crop, .. } => Spatial::Mma { short, crop, three_crop: three },
        };
        crate::input::Validate::validate(&p).map_err(|e| anyhow::anyhow!("{}: {e}", self.name))?;
        if p != *self {
            p.name = format!("{}@{v}", self.name);
        }
        Ok(p)
    }
}

impl crate::input::Validate for Pipeline {
    fn validate(&self) -> std::result::Result<(), crate::input::ConfigError> {
        use crate::input::ensure_count;
        let (frames, views) = (self.sampling.frames(), self.sampling.views());
        ensure_count(frames, "sampling.frames", 1024)?;
        ensure_count(views, "sampling.views", 1024)?;
        if let Sampling::StDense { rate, .. } | Sampling::MmaClips { interval: rate, .. } = self.sampling {
            ensure_count(rate, "sampling.rate", 1 << 16)?;
        }
        ensure_count(self.spatial.size(), "spatial.size", 4096)?;
        if let Spatial::Mma { short, crop, .. } = self.spatial {
            crate::input::ensure(short >= crop, "spatial.short", || format!("{short} is below the crop {crop}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published view counts: ST K400 3×1, ST SSv2 1×3, AIM K400 3×1, AIM SSv2 1×3.
    #[test]
    fn presets_have_the_published_view_counts() {
        let counts: Vec<usize> = Pipeline::presets().iter().map(|p| p.views(300).unwrap().len()).collect();
        assert_eq!(counts, [3, 3, 3, 3]);
    }

    /// A view is 3·T·224·224 floats.
    #[test]
    fn a_view_is_3_t_224_224_floats() {
        let p = Pipeline::aim_ssv2_test();
        let video: Vec<Frame> = (0..10).map(|_| Frame::new(240, 180, vec![128; 240 * 180 * 3])).collect();
        let out = p.apply_video(&video).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|v| v.len() == 3 * 8 * 224 * 224));
    }
}
