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
use crate::mst_adapter::{Fusion, MstAdapterCfg, Placement, Pointwise};
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

/// A set of the proxy backbone's layers: bit i is layer i (0-based, from the input).
///
/// The ablation tables name groups of ViT-B/16's 12 blocks; the proxy has 4 layers. A group maps
/// to the proxy layer at the same relative depth as the group's centre ([`Layers::group`]: a block
/// i of 12, 0-based, sits at depth (i + ½)/12, and depth d is proxy layer ⌊4d⌋): blocks 1–4 →
/// layer 0, 5–8 → layer 2, 9–12 → layer 3, so "shallow, middle, deep" keep their order and each
/// group is one layer. Halves of the depth (AIM Table 7) are layers 0–1 and 2–3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Layers(pub u8);

impl Layers {
    /// Every layer of the proxy backbone.
    pub const ALL: Layers = Layers(0b1111);

    /// The proxy layer of ViT-B/16's blocks `first..=last` (1-based, inclusive; a group of 4).
    pub const fn group(first: usize, last: usize) -> Layers {
        // the group's centre (0-based) is c = (first + last − 2)/2, at depth (c + ½)/12
        let twice_centre = first + last - 2;
        Layers(1 << ((twice_centre + 1) / 6))
    }

    /// The union of two sets.
    pub const fn and(self, other: Layers) -> Layers {
        Layers(self.0 | other.0)
    }

    /// These layers as the presets' `blocks` (every layer: `Last(layers)`, as the presets say it).
    pub fn blocks(self, layers: usize) -> Blocks {
        let list: Vec<usize> = (0..layers).filter(|&i| self.0 & (1 << i) != 0).collect();
        if list.len() == layers {
            Blocks::Last(layers)
        } else {
            Blocks::List(list)
        }
    }

    /// "layers 1, 3" (1-based), or "all layers".
    pub fn name(self) -> String {
        if self == Layers::ALL {
            return "all layers".into();
        }
        let l: Vec<String> = (0..8).filter(|&i| self.0 & (1 << i) != 0).map(|i| (i + 1).to_string()).collect();
        format!("layer{} {}", if l.len() > 1 { "s" } else { "" }, l.join(", "))
    }
}

/// A method of the tables, on the proxy backbone.
///
/// The first seven variants keep their serialized form (it is part of every cached run's key);
/// the ablation variants are built with [`Method::baseline`], [`Method::st`], [`Method::aim_with`]
/// and [`Method::mst_with`], which return the plain variant when the setting is the default, so
/// one setting has one name and one cache entry.
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
    /// Another baseline of ST-Adapter Table 1 (`src/baselines`): SA+TA is TimeSformer, SA+TS X-ViT.
    Baseline(Arch, Tuning),
    /// ST-Adapter 3×1×1 with ST-Adapter Table 5's knobs: bottleneck width, positions in the block
    /// (before MHSA, after MHSA = before the MLP, after the FFN), adapted layers.
    StAblation { width: usize, pre_attn: bool, pre_mlp: bool, post_mlp: bool, layers: Layers },
    /// AIM with Table 1's components (spatial adaptation always), Table 7's layers and Table 8's
    /// bottleneck (`hidden` = int(64 · ratio)).
    AimAblation { temporal: bool, joint: bool, layers: Layers, hidden: usize },
    /// MST-Adapter with Table 3's components, Table 5's placement and Table 6's layers.
    MstAblation { pointwise: Pointwise, average_fusion: bool, placement: Placement, layers: Layers },
}

/// The proxy's adapter bottleneck: C/4 = 16 at width 64.
pub const ADAPTER_WIDTH: usize = 16;
/// Prompt tokens per block for prompt tuning: ST-Adapter Table 1's 100 prompts against 196 patch
/// tokens, scaled to the proxy's 16 patch tokens (100 · 16 / 196 ≈ 8).
pub const PROMPT_TOKENS: usize = 8;

impl Method {
    /// ST-Adapter with its published kernel 3×1×1.
    pub const ST_ADAPTER: Method = Method::StAdapter(Kernel3 { t: 3, h: 1, w: 1 });

    /// The baseline `arch` × `tuning` (ST-Adapter Table 1), under its plain name where it has one.
    pub fn baseline(arch: Arch, tuning: Tuning) -> Method {
        match (arch, tuning) {
            (Arch::Sa, Tuning::LinearProbe) => Method::LinearProbe,
            (Arch::Sa, Tuning::Full) => Method::FullFinetune,
            (Arch::Sa, Tuning::Adapter { width: ADAPTER_WIDTH }) => Method::Houlsby,
            _ => Method::Baseline(arch, tuning),
        }
    }

    /// ST-Adapter 3×1×1 of bottleneck `width` at `positions` in `layers`.
    pub fn st(width: usize, positions: &[Position], layers: Layers) -> Method {
        let has = |p| positions.contains(&p);
        let (pre_attn, pre_mlp, post_mlp) = (has(Position::PreAttn), has(Position::PreMlp), has(Position::PostMlp));
        if width == ADAPTER_WIDTH && !pre_attn && pre_mlp && !post_mlp && layers == Layers::ALL {
            return Method::ST_ADAPTER;
        }
        Method::StAblation { width, pre_attn, pre_mlp, post_mlp, layers }
    }

    /// AIM with spatial adaptation and these components, layers and bottleneck.
    pub fn aim_with(temporal: bool, joint: bool, layers: Layers, hidden: usize) -> Method {
        if temporal && joint && layers == Layers::ALL && hidden == ADAPTER_WIDTH {
            return Method::Aim;
        }
        Method::AimAblation { temporal, joint, layers, hidden }
    }

    /// MST-Adapter (with its [CLS] shift) with these components, placement and layers.
    pub fn mst_with(pointwise: Pointwise, average_fusion: bool, placement: Placement, layers: Layers) -> Method {
        if pointwise == Pointwise::Dense
            && !average_fusion
            && placement == Placement::PostResidual
            && layers == Layers::ALL
        {
            return Method::MstAdapter;
        }
        Method::MstAblation { pointwise, average_fusion, placement, layers }
    }

    pub fn name(&self) -> String {
        match self {
            Method::LinearProbe => "linear probe".into(),
            Method::FullFinetune => "full fine-tuning".into(),
            Method::Houlsby => "Houlsby adapter".into(),
            Method::StAdapter(k) => format!("ST-Adapter {k}"),
            Method::Aim => "AIM".into(),
            Method::MstAdapter => "MST-Adapter".into(),
            Method::MstAdapterNoShift => "MST-Adapter w/o shift".into(),
            Method::Baseline(arch, tuning) => {
                let a = match arch {
                    Arch::Sa => "SA",
                    Arch::SaTa => "SA+TA (TimeSformer)",
                    Arch::SaTs => "SA+TS (X-ViT)",
                };
                format!("{a} {}", tuning.name())
            }
            Method::StAblation { width, pre_attn, pre_mlp, post_mlp, layers } => {
                let mut at = Vec::new();
                if *pre_attn {
                    at.push("before MHSA");
                }
                if *pre_mlp {
                    at.push("after MHSA");
                }
                if *post_mlp {
                    at.push("after FFN");
                }
                format!("ST-Adapter w{width} {} {}", at.join(" & "), layers.name())
            }
            Method::AimAblation { temporal, joint, layers, hidden } => {
                let parts = match (temporal, joint) {
                    (false, false) => "spatial",
                    (true, false) => "spatial+temporal",
                    (false, true) => "spatial+joint",
                    (true, true) => "spatial+temporal+joint",
                };
                format!("AIM {parts} hidden {hidden} {}", layers.name())
            }
            Method::MstAblation { pointwise, average_fusion, placement, layers } => {
                let pw = match pointwise {
                    Pointwise::Dense => "1×1×1",
                    Pointwise::Depthwise => "dw 1×1×1",
                    Pointwise::None => "no 1×1×1",
                };
                let fusion = if *average_fusion { "averaged" } else { "learned" };
                let place = match placement {
                    Placement::PostResidual => "post-residual",
                    Placement::PriorLn => "A (prior LN)",
                    Placement::PriorBranch => "B (prior MSA/MLP)",
                    Placement::PostBranch => "C (post MSA/MLP)",
                };
                format!("MST-Adapter {place}, {pw}, {fusion} fusion, {}", layers.name())
            }
        }
    }

    /// Whether the method trains pre-trained encoder weights (full and partial fine-tuning): those
    /// train at 1/10 of the learning rate ([`bench::run`]).
    pub fn fine_tunes_encoder(&self) -> bool {
        matches!(self, Method::FullFinetune | Method::Baseline(_, Tuning::Full | Tuning::Partial))
    }

    /// The model config on `clip` for a task with `classes` classes and `frames` frames. Adapter
    /// bottlenecks are C/4 = 16 at width 64 (ST-Adapter's 384/768 would be 32; AIM's ratio is 0.25).
    pub fn cfg(&self, clip: &ClipCfg, classes: usize, frames: usize) -> ModelCfg {
        let layers = clip.layers;
        let w = clip.width / 4;
        let bench = |arch, tuning| {
            ModelCfg::Benchmark(BenchmarkCfg { clip: clip.clone(), arch, tuning, num_classes: classes, frames })
        };
        let st = |kernel, width, positions, blocks| {
            ModelCfg::StAdapter(StAdapterCfg {
                clip: clip.clone(),
                num_classes: classes,
                frames,
                adapter_width: width,
                kernel,
                positions,
                blocks,
            })
        };
        let aim = |temporal, joint, blocks, hidden: usize| {
            ModelCfg::Aim(AimCfg {
                clip: clip.clone(),
                num_classes: classes,
                frames,
                blocks,
                temporal,
                joint,
                mlp_ratio: hidden as f64 / clip.width as f64,
                ..AimCfg::vitclip_base_k400()
            })
        };
        let mst = |cls_shift: bool, f: &dyn Fn(MstAdapterCfg) -> MstAdapterCfg| {
            let base = MstAdapterCfg::vit_b16_k400();
            let cls_shift = if cls_shift { base.cls_shift } else { None };
            ModelCfg::MstAdapter(f(MstAdapterCfg {
                clip: clip.clone(),
                num_classes: classes,
                frames,
                adapter_width: w,
                blocks: Blocks::Last(layers),
                cls_shift,
                ..base
            }))
        };
        match *self {
            Method::LinearProbe => bench(Arch::Sa, Tuning::LinearProbe),
            Method::FullFinetune => bench(Arch::Sa, Tuning::Full),
            Method::Houlsby => bench(Arch::Sa, Tuning::Adapter { width: w }),
            Method::Baseline(arch, tuning) => bench(arch, tuning),
            Method::StAdapter(kernel) => st(kernel, w, vec![Position::PreMlp], Blocks::Last(layers)),
            Method::StAblation { width, pre_attn, pre_mlp, post_mlp, layers: l } => {
                let positions =
                    [(pre_attn, Position::PreAttn), (pre_mlp, Position::PreMlp), (post_mlp, Position::PostMlp)]
                        .into_iter()
                        .filter(|p| p.0)
                        .map(|p| p.1)
                        .collect();
                st(Kernel3::new(3, 1, 1), width, positions, l.blocks(layers))
            }
            // AIM's own ratio 0.25 gives 16 at width 64
            Method::Aim => aim(true, true, Blocks::Last(layers), w),
            Method::AimAblation { temporal, joint, layers: l, hidden } => {
                aim(temporal, joint, l.blocks(layers), hidden)
            }
            Method::MstAdapter => mst(true, &|c| c),
            Method::MstAdapterNoShift => mst(false, &|c| c),
            Method::MstAblation { pointwise, average_fusion, placement, layers: l } => mst(true, &|c| MstAdapterCfg {
                pointwise,
                fusion: if average_fusion { Fusion::Average } else { c.fusion },
                placement,
                blocks: l.blocks(layers),
                ..c
            }),
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
