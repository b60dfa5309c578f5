//! The embedded CPU benchmark's pieces below the trainer: synthetic tasks ([`synth`]), the small
//! pre-trained backbone that stands in for CLIP, and each method of the tables as a config on it.
//!
//! The methods are the kit's own presets (the same code as the ViT-B/16 models); only the widths,
//! depths and data differ. The numbers behind every choice here are in `fixtures/proxy/STUDY.md`.

pub mod bench;
pub mod claims;
#[cfg(feature = "video")]
pub mod export;
pub mod runs;
pub mod source;
pub mod synth;

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::aim::AimCfg;
use crate::baselines::{Arch, BenchmarkCfg, Tuning};
use crate::clip::weights::{is_clip_key, KeyMap, LoadReport};
use crate::clip::Blocks;
use crate::clip::{ClipCfg, MlpAct};
use crate::context::Ctx;
use crate::init::Init;
use crate::mst_adapter::MstAdapterCfg;
use crate::ops::Kernel3;
use crate::registry::{BaselineCfg, ModelCfg, VideoModel};
use crate::st_adapter::{Position, StAdapterCfg};
use synth::{Dataset, Task};

// ANCHOR: backbone
/// The CLIP stand-in: a CLIP-shaped ViT (pre-LN blocks, `ln_pre`, QuickGELU, linear patch
/// embedding without bias) of width 64, 4 layers, 4 heads, on 32×32 frames cut into 8×8 patches:
/// 1 + 4² = 17 tokens per frame. Chosen by measurement (`fixtures/proxy/STUDY.md`).
pub fn backbone() -> ClipCfg {
    ClipCfg {
        input_resolution: 32,
        patch_size: 8,
        width: 64,
        layers: 4,
        heads: 4,
        ln_pre: true,
        patch_bias: false,
        mlp_act: MlpAct::QuickGelu,
    }
}
// ANCHOR_END: backbone

/// The committed pre-trained weights (regenerate: `cargo run --release --bin proxy -- pretrain`).
pub fn backbone_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/proxy/backbone.safetensors")
}

/// A method of the tables, on the proxy backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Frozen encoder, mean of frame CLS, `fc` trained (ST-Adapter Table 1 "linear probe").
    LinearProbe,
    /// Every weight trained, frames averaged (the "CLIP full fine-tuning" rows).
    FullFinetune,
    /// One Houlsby adapter per block before the MLP (no temporal op), `fc`.
    Houlsby,
    /// ST-Adapter, one adapter per block before the MLP, with this depthwise kernel.
    StAdapter(Kernel3),
    /// AIM with its three adapters in every block.
    Aim,
    /// MST-Adapter (the kit's assumptions: branches 3/5/7×1×1, dense 1×1×1, [CLS] shift).
    MstAdapter,
    /// MST-Adapter without its [CLS] token shift (MST-Adapter Table 4, "w/o shift").
    MstAdapterNoShift,
}

impl Method {
    /// ST-Adapter with its published kernel 3×1×1.
    pub const ST_ADAPTER: Method = Method::StAdapter(Kernel3 { t: 3, h: 1, w: 1 });

    pub fn name(&self) -> String {
        match self {
            Method::LinearProbe => "linear probe".into(),
            Method::FullFinetune => "full fine-tuning".into(),
            Method::Houlsby => "Houlsby adapter".into(),
            Method::StAdapter(k) => format!("ST-Adapter {k}"),
            Method::Aim => "AIM".into(),
            Method::MstAdapter => "MST-Adapter".into(),
            Method::MstAdapterNoShift => "MST-Adapter w/o shift".into(),
        }
    }

    /// The model config on `clip` for a task with `classes` classes and `frames` frames. Adapter
    /// bottlenecks are C/4 = 16 at width 64 (ST-Adapter's 384/768 would be 32; AIM's ratio is 0.25).
    pub fn cfg(&self, clip: &ClipCfg, classes: usize, frames: usize) -> ModelCfg {
        let layers = clip.layers;
        let w = clip.width / 4;
        let bench = |tuning| {
            ModelCfg::Benchmark(BenchmarkCfg {
                clip: clip.clone(),
                arch: Arch::Sa,
                tuning,
                num_classes: classes,
                frames,
            })
        };
        match *self {
            Method::LinearProbe => bench(Tuning::LinearProbe),
            Method::FullFinetune => bench(Tuning::Full),
            Method::Houlsby => bench(Tuning::Adapter { width: w }),
            Method::StAdapter(kernel) => ModelCfg::StAdapter(StAdapterCfg {
                clip: clip.clone(),
                num_classes: classes,
                frames,
                adapter_width: w,
                kernel,
                positions: vec![Position::PreMlp],
                blocks: Blocks::Last(layers),
            }),
            Method::Aim => ModelCfg::Aim(AimCfg {
                clip: clip.clone(),
                num_classes: classes,
                frames,
                blocks: Blocks::Last(layers),
                ..AimCfg::vitclip_base_k400()
            }),
            Method::MstAdapter | Method::MstAdapterNoShift => {
                let base = MstAdapterCfg::vit_b16_k400();
                let cls_shift = if *self == Method::MstAdapter { base.cls_shift } else { None };
                ModelCfg::MstAdapter(MstAdapterCfg {
                    clip: clip.clone(),
                    num_classes: classes,
                    frames,
                    adapter_width: w,
                    blocks: Blocks::Last(layers),
                    cls_shift,
                    ..base
                })
            }
        }
    }
}

/// The pre-training model: the frame-wise baseline on stills (T = 1) with every weight trainable.
pub fn pretrain_cfg(clip: &ClipCfg) -> ModelCfg {
    ModelCfg::ClipBaseline(BaselineCfg { clip: clip.clone(), num_classes: Task::Shapes.num_classes(), frames: 1 })
}

/// In the backbone file the encoder sits under `visual.` (as in OpenAI's CLIP checkpoints) and the
/// image task's head under `image_fc.`, so that no video model's own head can be mistaken for it.
pub const ENCODER_PREFIX: &str = "visual.";
pub const IMAGE_HEAD_PREFIX: &str = "image_fc.";

/// The file key of a pre-training model key: CLIP keys under `visual.`, `fc.*` as `image_fc.*`.
pub fn backbone_file_key(model_key: &str) -> String {
    match model_key.strip_prefix("fc.") {
        Some(rest) => format!("{IMAGE_HEAD_PREFIX}{rest}"),
        None => format!("{ENCODER_PREFIX}{model_key}"),
    }
}

/// Loads the pre-trained encoder from `path` into `model` (built from `cfg`): every CLIP key from
/// the file; everything else (adapters, the video head, AIM's temporal embedding) kept as
/// initialised. Errors name the file and the keys.
pub fn load_backbone(model: &mut dyn VideoModel, cfg: &ModelCfg, path: &Path) -> anyhow::Result<LoadReport> {
    let prefix = cfg.encoder_prefix();
    let map = KeyMap { model_prefix: prefix.to_string(), file_prefix: ENCODER_PREFIX.into(), ignore: vec![] };
    let fresh = |k: &str| !k.strip_prefix(prefix).is_some_and(is_clip_key);
    Ok(model.load(path, &map, &fresh)?)
}

/// Loads the whole pre-training model (encoder and image head) from `path`.
pub fn load_image_model(model: &mut dyn VideoModel, path: &Path) -> anyhow::Result<()> {
    let encoder = KeyMap { model_prefix: String::new(), file_prefix: ENCODER_PREFIX.into(), ignore: vec![] };
    model.load(path, &encoder, &|k: &str| k.starts_with("fc."))?;
    let head = KeyMap { model_prefix: "fc.".into(), file_prefix: IMAGE_HEAD_PREFIX.into(), ignore: vec![] };
    model.load(path, &head, &|k: &str| !k.starts_with("fc."))?;
    Ok(())
}

/// Accuracy of `model` on `data` (eval mode, batches of `batch`).
pub fn accuracy(model: &dyn VideoModel, data: &Dataset, batch: usize) -> f64 {
    let dev = Cpu::default();
    let mut correct = 0;
    for start in (0..data.len()).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let (video, labels) = data.batch(&idx, &dev);
        let logits = model.logits(&video, &mut Ctx::eval());
        let classes = logits.shape().1;
        let v = logits.as_vec();
        for (r, &y) in labels.iter().enumerate() {
            let row = &v[r * classes..(r + 1) * classes];
            let arg = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            correct += usize::from(arg == y);
        }
    }
    correct as f64 / data.len().max(1) as f64
}

/// Predicted labels of `model` on `data`.
pub fn predictions(model: &dyn VideoModel, data: &Dataset, batch: usize) -> Vec<usize> {
    let dev = Cpu::default();
    let mut out = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let (video, _) = data.batch(&idx, &dev);
        let logits = model.logits(&video, &mut Ctx::eval());
        let classes = logits.shape().1;
        let v = logits.as_vec();
        for r in 0..idx.len() {
            let row = &v[r * classes..(r + 1) * classes];
            out.push((0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b }));
        }
    }
    out
}

/// The model of `cfg` (a method on the proxy backbone, width 64) with the head's dropout set to
/// `d` (the presets' 0.5 is the papers'; the benchmark runs without it, `STUDY.md`).
pub fn build_with_dropout(cfg: &ModelCfg, d: f64, seed: u64) -> anyhow::Result<Box<dyn VideoModel>> {
    let (dev, mut init) = (Cpu::default(), Init::seeded(seed));
    anyhow::ensure!(cfg.clip().width == 64, "the proxy's models are compiled for width 64, not {}", cfg.clip().width);
    Ok(match cfg {
        ModelCfg::StAdapter(c) => {
            let mut m = c.build::<64, f32, Cpu>(&dev, &mut init)?;
            m.dropout = d;
            Box::new(m)
        }
        ModelCfg::MstAdapter(c) => {
            let mut m = c.build::<64, f32, Cpu>(&dev, &mut init)?;
            m.dropout = d;
            Box::new(m)
        }
        ModelCfg::Aim(c) => {
            let mut m = c.build::<64, f32, Cpu>(&dev, &mut init)?;
            m.cls_head.dropout = d;
            Box::new(m)
        }
        ModelCfg::Benchmark(c) => {
            let mut m = c.build::<64, f32, Cpu>(&dev, &mut init)?;
            m.dropout = d;
            Box::new(m)
        }
        ModelCfg::ClipBaseline(c) => {
            let mut m = crate::clip::FrameBaseline::<64, f32, Cpu>::build(&c.clip, c.num_classes, &dev, &mut init)?;
            m.dropout = d;
            Box::new(m)
        }
    })
}
