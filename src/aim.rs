//! # AIM
//!
//! Taojiannan Yang, Yi Zhu, Yusheng Xie, Aston Zhang, Chen Chen, Mu Li. *AIM: Adapting Image
//! Models for Efficient Video Action Recognition*. ICLR 2023. arXiv:2302.03024.
//! Official code: <https://github.com/taoyang1122/adapt-image-models>,
//! `mmaction/models/backbones/vit_clip.py` @ b3580d2, with mmaction2's `Recognizer3D` and `I3DHead`.
//!
//! Shape legend: B videos · T frames · L = 1 + H·W tokens · C width · C/4 adapter bottleneck.
//!
//! The block (paper Eq. 3–5, as the official code computes it):
//! ```text
//! x += DropPath(T_Adapter(attn(ln_1(x)) over T))          temporal adaptation (T-MSA), no skip
//! x += S_Adapter(attn(ln_1(x)) over L)                     spatial adaptation, skip inside S_Adapter
//! x += mlp(ln_2(x)) + DropPath(s · MLP_Adapter(ln_2(x)))   joint adaptation, no skip
//! ```
//! What the official code does that the paper does not say (all reproduced here):
//! - T-MSA is the block's own frozen `attn` and `ln_1` run over the T frames of every token
//!   position, **the CLS token included**;
//! - the adapters use the **exact (erf) GELU**; `D_fc2` starts at zero (every adapter, including
//!   SSv2's extra `T_Adapter_in`, whose name contains `T_Adapter`);
//! - a trainable zero-initialised `temporal_embedding` (1, T, C) is added to every token of frame t
//!   after the positional embedding; `ln_post` is trainable and applied to each frame's CLS
//!   **before** the mean over T (ST-Adapter: after);
//! - DropPath acts on the sequence-first (L, B·T, C) tensor, so timm's per-"sample" mask is a mask
//!   per **token position** l, shared by all frames and videos of the batch; rates rise linearly
//!   from 0 (first block) to `drop_path_rate` (last);
//! - `num_tadapter = 2` (SSv2) adds `T_Adapter_in` (with skip) between `ln_1` and the temporal
//!   attention; the SSv2 configs use s = 1.0 (the paper's appendix says 0.5).
//!
//! Departures: the rearranges `n (b t) d -> t (b n) d` are strides inside our attention op
//! ([`SeqAxis::Frames`]); the stream stays (B·T, L, C) batch-first.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::vit::{
    clip_block, maybe, residual, trains, Block, ResidualAttentionBlock, Tokens, Video, VisionTransformer,
};
use crate::clip::{Blocks, ClipCfg};
use crate::context::Ctx;
use crate::count::{encoder_lines, layer_norm_macs, layer_norm_params, linear_macs, linear_params, Breakdown};
use crate::device::{KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::input::{ensure, ensure_in, ConfigError, Validate};
use crate::ops::{self, gelu, Grid, Linear, SeqAxis};
use crate::registry::validate_head;

/// An AIM video model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AimCfg {
    pub clip: ClipCfg,
    pub num_classes: usize,
    /// `num_frames`: the length of `temporal_embedding` and of every temporal sequence.
    pub frames: usize,
    /// Adapter bottleneck ratio: hidden = int(C · ratio) (Table 8).
    pub mlp_ratio: f64,
    /// s, the weight of the joint (MLP) adapter.
    pub adapter_scale: f64,
    /// 1, or 2 for SSv2's extra `T_Adapter_in`.
    pub num_tadapter: usize,
    pub drop_path_rate: f64,
    /// The head's dropout.
    pub dropout: f64,
    /// Table 1's components: spatial, temporal and joint adaptation.
    pub spatial: bool,
    pub temporal: bool,
    pub joint: bool,
    /// Blocks with adapters (Table 7); the others are plain CLIP blocks.
    pub blocks: Blocks,
}

impl AimCfg {
    /// `configs/recognition/vit/vitclip_base_k400.py`: ViT-B/16, 8 frames, s = 0.5, 400 classes.
    pub fn vitclip_base_k400() -> Self {
        Self {
            clip: ClipCfg::vit_b16(),
            num_classes: 400,
            frames: 8,
            mlp_ratio: 0.25,
            adapter_scale: 0.5,
            num_tadapter: 1,
            drop_path_rate: 0.2,
            dropout: 0.5,
            spatial: true,
            temporal: true,
            joint: true,
            blocks: Blocks::Last(12),
        }
    }

    /// `vitclip_large_k400.py`: ViT-L/14, 24 blocks.
    pub fn vitclip_large_k400() -> Self {
        Self { clip: ClipCfg::vit_l14(), blocks: Blocks::Last(24), ..Self::vitclip_base_k400() }
    }

    /// `vitclip_base_sthv2.py`: 174 classes, `num_tadapter = 2`, s = 1.0.
    pub fn vitclip_base_sthv2() -> Self {
        Self { num_classes: 174, num_tadapter: 2, adapter_scale: 1.0, ..Self::vitclip_base_k400() }
    }

    /// `vitclip_large_sthv2.py`.
    pub fn vitclip_large_sthv2() -> Self {
        Self { clip: ClipCfg::vit_l14(), blocks: Blocks::Last(24), ..Self::vitclip_base_sthv2() }
    }

    /// The largest `mlp_ratio` the kit builds (a hidden width of 4 × C).
    pub const MAX_RATIO: f64 = 4.0;

    /// Adapter hidden width: `int(C · mlp_ratio)`.
    pub fn hidden(&self) -> usize {
        (self.clip.width as f64 * self.mlp_ratio) as usize
    }

    /// Which adapters block i has: (T_Adapter_in, T_Adapter, S_Adapter, MLP_Adapter).
    pub fn adapters_of(&self, i: usize) -> [bool; 4] {
        let on = self.blocks.contains(i, self.clip.layers);
        [on && self.temporal && self.num_tadapter == 2, on && self.temporal, on && self.spatial, on && self.joint]
    }

    /// DropPath rate of block i: linspace(0, drop_path_rate, layers)[i].
    pub fn drop_path(&self, i: usize) -> f64 {
        let n = self.clip.layers;
        if n <= 1 {
            0.0
        } else {
            self.drop_path_rate * i as f64 / (n - 1) as f64
        }
    }
}

// ANCHOR: count
impl AimCfg {
    /// Parameters and multiply-adds per view (`frames` frames), line by line.
    pub fn breakdown(&self) -> Breakdown {
        let (c, t, l, h) =
            (self.clip.width as u64, self.frames as u64, self.clip.tokens() as u64, self.hidden() as u64);
        let mut b = Breakdown::new(
            format!(
                "AIM {} (ratio {}, s {}, num_tadapter {})",
                self.clip.name(),
                self.mlp_ratio,
                self.adapter_scale,
                self.num_tadapter
            ),
            self.frames,
        );
        encoder_lines(&mut b, &self.clip, self.frames, false, "backbone.");
        b.line("temporal_embedding", &["backbone.temporal_embedding"], t * c, true, 0);
        let count = |j: usize| (0..self.clip.layers).filter(|&i| self.adapters_of(i)[j]).count() as u64;
        let (n_tin, n_t, n_s, n_mlp) = (count(0), count(1), count(2), count(3));
        // T-MSA reuses the block's ln_1 and attn over T: no parameters, the attention's cost again
        // with sequences of length T (per frame: L·2·T·C for QKᵀ and PV).
        let t_msa = layer_norm_macs(l, c) + linear_macs(l, c, 3 * c) + 2 * l * t * c + linear_macs(l, c, c);
        b.line(&format!("{n_t} × T-MSA (ln_1 + attn reused over T)"), &[], 0, false, n_t * t * t_msa);
        let adapter_params = linear_params(c, h) + linear_params(h, c);
        let adapter_macs = t * (linear_macs(l, c, h) + linear_macs(l, h, c));
        for (n, name, key) in [
            (n_tin, "T_Adapter_in", "T_Adapter_in."),
            (n_t, "T_Adapter", "T_Adapter."),
            (n_s, "S_Adapter", "S_Adapter."),
            (n_mlp, "MLP_Adapter", "MLP_Adapter."),
        ] {
            if n > 0 {
                b.line(
                    &format!("{n} × {name} (D_fc1, GELU, D_fc2)"),
                    &[&format!("backbone.transformer.resblocks.*.{key}")],
                    n * adapter_params,
                    true,
                    n * adapter_macs,
                );
            }
        }
        b.line(
            "ln_post (every frame's CLS)",
            &["backbone.ln_post."],
            layer_norm_params(c),
            true,
            t * layer_norm_macs(1, c),
        );
        b.line(
            "cls_head.fc_cls",
            &["cls_head.fc_cls."],
            linear_params(c, self.num_classes as u64),
            true,
            linear_macs(1, c, self.num_classes as u64),
        );
        b
    }
}
// ANCHOR_END: count

// ANCHOR: adapter
/// `D_fc2(GELU(D_fc1(x)))`, plus `x` when `skip_connect` (S_Adapter, T_Adapter_in).
#[derive(Clone, Debug)]
pub struct Adapter<const C: usize, E: Dtype, D: Storage<E>> {
    pub d_fc1: Linear<Const<C>, usize, E, D>,
    pub d_fc2: Linear<usize, Const<C>, E, D>,
    pub skip_connect: bool,
}

impl<const C: usize, E: Real, D: KitDevice<E>> Adapter<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        let branch = |x| self.d_fc2.forward(gelu(self.d_fc1.forward(x))); // C -> C/4 -> C
        if self.skip_connect {
            residual(x, branch)
        } else {
            branch(x)
        }
    }
}
// ANCHOR_END: adapter

impl<const C: usize, E: Real, D: KitDevice<E>> Adapter<C, E, D> {
    /// As `init_weights` leaves it: D_fc1 trunc-normal(0.02), zero bias; D_fc2 all zero. Trainable.
    pub fn build(hidden: usize, skip_connect: bool, dev: &D, init: &mut Init) -> Self {
        Self {
            d_fc1: Linear {
                weight: param(dev, (hidden, Const::<C>), init.trunc_normal(hidden * C, 0.02), true),
                bias: Some(constant(dev, (hidden,), 0.0, true)),
            },
            d_fc2: Linear {
                weight: constant(dev, (Const::<C>, hidden), 0.0, true),
                bias: Some(constant(dev, (Const::<C>,), 0.0, true)),
            },
            skip_connect,
        }
    }
}

// ANCHOR: block
// ANCHOR: block_fields
/// A CLIP block with AIM's adapters. Keys: `attn`, `ln_1`, `mlp`, `ln_2` (CLIP's) and
/// `T_Adapter_in`, `T_Adapter`, `S_Adapter`, `MLP_Adapter`.
#[derive(Clone, Debug)]
pub struct AimBlock<const C: usize, E: Dtype, D: Storage<E>> {
    pub clip: ResidualAttentionBlock<C, E, D>,
    pub t_adapter_in: Option<Adapter<C, E, D>>,
    pub t_adapter: Option<Adapter<C, E, D>>,
    pub s_adapter: Option<Adapter<C, E, D>>,
    pub mlp_adapter: Option<Adapter<C, E, D>>,
    pub scale: f64,
    pub drop_path: f64,
}
// ANCHOR_END: block_fields

/// The block's three stages (AIM Eqs. 3–5), each a residual branch on the frozen CLIP weights:
/// temporal `x += T_Adapter(T-MSA(ln_1(x)))`, spatial `x += S_Adapter(S-MSA(ln_1(x)))`, joint
/// `x += MLP(ln_2(x)) + s·MLP_Adapter(ln_2(x))`.
impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for AimBlock<C, E, D> {
    fn stages(&self) -> usize {
        3
    }

    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        let clip = &self.clip;
        match i {
            // ANCHOR: eq3
            // temporal adaptation: the frozen ln_1 + attn over the T frames of every token position
            0 => maybe(self.t_adapter.as_ref(), x, |t_adapter, x| {
                residual(x, |x| {
                    let h = clip.ln_1.forward(x);
                    let h = maybe(self.t_adapter_in.as_ref(), h, |a, h| a.forward(h));
                    let h = clip.attn.forward(h, SeqAxis::Frames { frames: grid.t });
                    drop_path_tokens(t_adapter.forward(h), self.drop_path, ctx)
                })
            }),
            // ANCHOR_END: eq3
            // ANCHOR: eq4
            // spatial adaptation: S_Adapter (with skip) on the attention output
            1 => residual(x, |x| {
                let h = clip.attention(x, SeqAxis::Tokens);
                maybe(self.s_adapter.as_ref(), h, |a, h| a.forward(h))
            }),
            // ANCHOR_END: eq4
            // ANCHOR: eq5
            // joint adaptation: MLP_Adapter in parallel to the MLP, weighted by s
            _ => residual(x, |x| {
                let (xn, tape) = clip.ln_2.forward(x).split_tape();
                let h = clip.mlp.forward(xn.clone().put_tape(tape));
                maybe(self.mlp_adapter.as_ref(), h, |a, h| {
                    let j = ops::scale(a.forward(xn.retaped::<T>()), self.scale);
                    ops::add(h, drop_path_tokens(j, self.drop_path, ctx))
                })
            }),
            // ANCHOR_END: eq5
        }
    }

    fn stage_trains(&self, i: usize) -> bool {
        let clip = &self.clip;
        match i {
            0 => {
                self.t_adapter.is_some()
                    && (trains(&self.t_adapter)
                        || trains(&self.t_adapter_in)
                        || trains(&clip.ln_1)
                        || trains(&clip.attn))
            }
            1 => trains(&self.s_adapter) || trains(&clip.ln_1) || trains(&clip.attn),
            _ => trains(&self.mlp_adapter) || trains(&clip.ln_2) || trains(&clip.mlp),
        }
    }
}
// ANCHOR_END: block

/// AIM's DropPath: in the official (L, B·T, C) layout timm drops whole rows of axis 0, i.e. token
/// positions; here the stream is (B·T, L, C), so row (bt, l) gets the factor of position l.
fn drop_path_tokens<const C: usize, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tokens<C, E, D, T>,
    p: f64,
    ctx: &mut Ctx,
) -> Tokens<C, E, D, T> {
    let (n, l, _) = *x.shape();
    match ctx.drop_factors::<E>(l, p) {
        Some(per_token) => ops::drop_rows(x, (0..n * l).map(|r| per_token[r % l]).collect()),
        None => x,
    }
}

/// mmaction2's `I3DHead` with `spatial_type='avg'`: mean over T (and space, already pooled),
/// dropout, `fc_cls`.
#[derive(Clone, Debug)]
pub struct I3dHead<const C: usize, E: Dtype, D: Storage<E>> {
    pub fc_cls: Linear<Const<C>, usize, E, D>,
    pub dropout: f64,
}

// ANCHOR: model
/// AIM's recogniser: keys `backbone.*` (the encoder with `temporal_embedding`) and `cls_head.fc_cls.*`.
#[derive(Clone, Debug)]
pub struct Aim<const C: usize, E: Dtype, D: Storage<E>> {
    pub backbone: VisionTransformer<C, AimBlock<C, E, D>, E, D>,
    pub cls_head: I3dHead<C, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> Aim<C, E, D> {
    /// Logits (B, classes): `ln_post` on every frame's CLS token, mean over T, dropout, `fc_cls`.
    pub fn forward<T: Tape<E, D>>(&self, video: &Video<E, D>, ctx: &mut Ctx) -> Tensor<(usize, usize), E, D, T> {
        let frames = self.backbone.temporal_embedding.as_ref().map_or(0, |t| t.value.shape().0);
        assert_eq!(
            video.shape().2,
            frames,
            "AIM was built for num_frames = {frames}; the input has T = {}",
            video.shape().2
        );
        let (x, grid) = self.backbone.forward::<T>(video, ctx);
        let cls = self.backbone.ln_post.forward(ops::cls_tokens(x)); // (B·T, C), per frame
        ctx.tap("backbone_out", &cls);
        let x = ops::mean_over_frames(cls, grid.t); // (B, C)
        ctx.tap("pre_logits", &x);
        let x = ops::dropout(x, self.cls_head.dropout, ctx);
        let logits = self.cls_head.fc_cls.forward(x);
        ctx.tap("logits", &logits);
        logits
    }
}
// ANCHOR_END: model

impl AimCfg {
    /// Builds the model: frozen CLIP encoder (values from `init`; load CLIP over them), trainable
    /// adapters, `temporal_embedding` (zeros), `ln_post`, and `fc_cls` (N(0, 0.01²), I3DHead's init).
    /// An invalid config is an error naming the field.
    pub fn build<const C: usize, E: Real, D: KitDevice<E>>(
        &self,
        dev: &D,
        init: &mut Init,
    ) -> Result<Aim<C, E, D>, ConfigError> {
        self.validate()?;
        let clip = &self.clip;
        let hidden = self.hidden();
        let mut backbone = VisionTransformer::build(clip, dev, init, Some(self.frames), |i, init| {
            let [t_in, t, s, mlp] = self.adapters_of(i);
            let block = clip_block(clip, dev, init);
            let mut adapter = |on: bool, skip: bool| on.then(|| Adapter::build(hidden, skip, dev, init));
            AimBlock {
                clip: block,
                t_adapter_in: adapter(t_in, true),
                t_adapter: adapter(t, false),
                s_adapter: adapter(s, true),
                mlp_adapter: adapter(mlp, false),
                scale: self.adapter_scale,
                drop_path: self.drop_path(i),
            }
        })?;
        if let Some(te) = &mut backbone.temporal_embedding {
            te.trainable = true;
        }
        backbone.ln_post.set_trainable(true);
        let fc_cls = Linear {
            weight: param(dev, (self.num_classes, Const::<C>), init.normal(self.num_classes * C, 0.01), true),
            bias: Some(constant(dev, (self.num_classes,), 0.0, true)),
        };
        Ok(Aim { backbone, cls_head: I3dHead { fc_cls, dropout: self.dropout } })
    }
}

impl Validate for AimCfg {
    fn validate(&self) -> Result<(), ConfigError> {
        self.clip.validate().map_err(|e| e.within("clip"))?;
        validate_head(self.num_classes, self.frames)?;
        ensure_in(self.mlp_ratio, "mlp_ratio", 0.0, Self::MAX_RATIO, true)?;
        ensure(self.hidden() >= 1, "mlp_ratio", || {
            format!(
                "{} gives an adapter hidden width of int({} × {}) = 0",
                self.mlp_ratio, self.clip.width, self.mlp_ratio
            )
        })?;
        ensure_in(self.adapter_scale, "adapter_scale", -1e3, 1e3, true)?;
        ensure((1..=2).contains(&self.num_tadapter), "num_tadapter", || {
            format!("must be 1, or 2 for the SSv2 configs' extra T_Adapter_in; is {}", self.num_tadapter)
        })?;
        ensure_in(self.drop_path_rate, "drop_path_rate", 0.0, 1.0, false)?;
        ensure_in(self.dropout, "dropout", 0.0, 1.0, false)?;
        self.blocks.validate(self.clip.layers, "blocks")
    }
}

/// The official constructors `ViT_CLIP(**backbone)` + `I3DHead(**cls_head)` as a config. Unknown
/// keywords are errors.
pub fn from_official_kwargs(kw: &serde_json::Value) -> anyhow::Result<AimCfg> {
    use crate::official::Kwargs;
    use anyhow::bail;
    const BB: [&str; 10] = [
        "input_resolution",
        "num_frames",
        "patch_size",
        "width",
        "layers",
        "heads",
        "drop_path_rate",
        "num_tadapter",
        "adapter_scale",
        "pretrained",
    ];
    const HEAD: [&str; 5] = ["num_classes", "in_channels", "dropout_ratio", "spatial_type", "init_std"];
    let bb = Kwargs::new("AIM backbone (ViT_CLIP)", kw.get("backbone"), &BB)?;
    let head = Kwargs::new("AIM cls_head (I3DHead)", kw.get("cls_head"), &HEAD)?;
    if let Some(s) = head.opt_str("spatial_type")?.filter(|s| *s != "avg") {
        bail!("I3DHead spatial_type `{s}` is not supported (only 'avg')");
    }
    let clip = bb.clip()?;
    if let Some(c) = head.opt_int("in_channels")?.filter(|c| *c != clip.width) {
        bail!("I3DHead in_channels {c} differs from the backbone width {}", clip.width);
    }
    let num_tadapter = bb.opt_int("num_tadapter")?.unwrap_or(1);
    if !(1..=2).contains(&num_tadapter) {
        bail!("num_tadapter must be 1 or 2, is {num_tadapter}");
    }
    let layers = clip.layers;
    Ok(AimCfg {
        clip,
        num_classes: head.int("num_classes")?,
        frames: bb.int("num_frames")?,
        mlp_ratio: 0.25,
        adapter_scale: bb.num("adapter_scale", 0.5)?,
        num_tadapter,
        drop_path_rate: bb.num("drop_path_rate", 0.0)?,
        dropout: head.num("dropout_ratio", 0.5)?,
        spatial: true,
        temporal: true,
        joint: true,
        blocks: Blocks::Last(layers),
    })
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] Adapter<C, E, D> {
    module "D_fc1" => d_fc1,
    module "D_fc2" => d_fc2,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] AimBlock<C, E, D> {
    module "" => clip,
    module "MLP_Adapter" => mlp_adapter,
    module "S_Adapter" => s_adapter,
    module "T_Adapter" => t_adapter,
    module "T_Adapter_in" => t_adapter_in,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] I3dHead<C, E, D> {
    module "fc_cls" => fc_cls,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] Aim<C, E, D> {
    module "backbone" => backbone,
    module "cls_head" => cls_head,
});
