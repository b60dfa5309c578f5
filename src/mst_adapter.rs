//! # MST-Adapter
//!
//! Chenrui Chang, Tongwei Lu, Feng Yao. *MST-Adapter: Multi-scaled Spatio-Temporal Adapter for
//! Parameter-Efficient Image-to-Video Transfer Learning*. IEICE Trans. Fundamentals, 2024.
//! DOI: 10.1587/transfun.2024EAP1080. **No code was released**: this module follows the paper's
//! text, and every choice the text leaves open is an assumption, stated below, configurable, and
//! shown against the published counts in `tests/mst_assumptions.rs`.
//!
//! Shape legend: B videos · T frames · H×W patch grid · L = 1 + H·W tokens · C width ·
//! W bottleneck width.
//!
//! What the paper fixes:
//! - two MST-Adapters per block, "post residual": after the attention residual and after the MLP
//!   residual (Fig. 4; the variants A "prior layer norm", B "prior MSA/MLP", C "post MSA/MLP" of
//!   Table 5 are [`Placement`]);
//! - `MST-Adapter(V) = V + up(ME(down(V)))` (Eq. 6), with the multi-scale extraction
//!   `Bᵢ = DWConv3Dᵢ(V_down)`, `z = X_down + Σᵢ Wᵢ·Bᵢ`, `y = z + Conv3D₁ₓ₁ₓ₁(z)` (Eq. 7–9): three
//!   depthwise 3D conv branches at different scales, fused by learnable scalars initialised to 0.33
//!   ("+72 parameters" = 3 × 24 adapters) or by plain averaging (Table 3);
//! - a [CLS] token shift across adjacent frames, parameter-free (Section 3.5, Table 4);
//! - the CLIP encoder is frozen; only the adapters (and the classifier) train.
//!
//! Assumptions (the text does not say; each is a field of [`MstAdapterCfg`]):
//! - **bottleneck width W = 384**, ST-Adapter's;
//! - **branch kernels 3×1×1, 5×1×1, 7×1×1**: three temporal scales (ST-Adapter's 3×1×1 and two
//!   longer spans; the paper's introduction motivates the scales by action duration, and ST-Adapter's
//!   Table 7 finds the temporal extent is what matters). The published counts constrain the
//!   branches: with W = 384, a dense 1×1×1 conv and the usual rounding to whole millions, "18M"
//!   (ViT-B/16) and "45M" (ViT-L/14) both hold only if the three kernels have at most 28 taps per
//!   channel in all; 3×1×1 + 5×1×1 + 7×1×1 has 15. (Spatio-temporal 3×1×1 + 1×3×3 + 3×3×3, 39 taps,
//!   fits only if the paper truncated 45.7 to 45 — see `tests/mst_assumptions.rs`.);
//! - **the 1×1×1 conv is dense** (W → W). Eq. 9 calls it depth-wise, but the paper's "+4M
//!   parameters" for it only fits a dense conv at W ≈ 384 (24 × (384² + 384) = 3.55M; depthwise
//!   would add 18K);
//! - **adapters act on the patch tokens only** (the reshape to B×T×H×W×C has no place for CLS;
//!   CLS passes unchanged, as in ST-Adapter); no activation (Eq. 6–9 have none);
//! - **the [CLS] shift moves 1/8 of the channels from frame t+1 and 1/8 from frame t−1** (TSM's
//!   default, which the paper cites), at the input of every block's attention branch, zero at the
//!   clip ends;
//! - **the up-projection starts at zero** (the adapter starts as an identity, as AIM's and
//!   ST-Adapter's do); other layers use torch's default initialisation, fusion weights 0.33;
//! - **the head is ST-Adapter's**: mean of the per-frame CLS over T, frozen `ln_post`, dropout 0.5,
//!   `fc` (the paper: "the average of these [CLS] tokens … through the fully connected layer").
//!
//! Key names are ours (there is no official checkpoint): `adapter_attn`, `adapter_mlp`, each with
//! `down`, `branches.{0,1,2}`, `fusion`, `pointwise`, `up`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::vit::{
    clip_block, head, head_lines, maybe, residual, trains, Block, FrameClassifier, ResidualAttentionBlock, Tokens,
    VisionTransformer,
};
use crate::clip::{Blocks, ClipCfg};
use crate::context::Ctx;
use crate::count::{dwconv_macs, encoder_lines, linear_macs, linear_params, Breakdown};
use crate::device::{KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::input::{ensure, ensure_count, ensure_in, ConfigError, Validate};
use crate::ops::{self, dwconv3d::DwConv3d, Grid, Kernel3, Linear, SeqAxis, Weights};
use crate::param::Param;
use crate::registry::validate_head;

/// Where the two adapters sit in a block (Table 5, Fig. 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// `x = A(x + MHSA(LN(x)))`, `x = A(x + MLP(LN(x)))` (the paper's MST-Adapter).
    PostResidual,
    /// A, "prior layer norm": `x + MHSA(LN(A(x)))`.
    PriorLn,
    /// B, "prior MSA/MLP": `x + MHSA(A(LN(x)))`.
    PriorBranch,
    /// C, "post MSA/MLP": `x + A(MHSA(LN(x)))`.
    PostBranch,
}

/// How the three branches are fused (Table 3).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Fusion {
    /// Learnable scalars W₁, W₂, W₃ starting at `init` (0.33).
    Learned { init: f64 },
    /// Plain averaging, no parameters.
    Average,
}

/// The 1×1×1 conv of Eq. 9 (Table 3: with or without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pointwise {
    /// A dense 1×1×1 conv, W → W (our default; see the module docs).
    Dense,
    /// A depthwise 1×1×1 conv: one scale and bias per channel (the equation's wording).
    Depthwise,
    /// No 1×1×1 conv (`y = z`).
    None,
}

/// The [CLS] shift: `from_next` and `from_prev` channels of CLS taken from frames t+1 and t−1,
/// given as divisors of the width (8 → C/8 channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClsShift {
    pub next_div: usize,
    pub prev_div: usize,
}

/// An MST-Adapter video model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MstAdapterCfg {
    pub clip: ClipCfg,
    pub num_classes: usize,
    pub frames: usize,
    pub adapter_width: usize,
    pub branches: Vec<Kernel3>,
    pub fusion: Fusion,
    pub pointwise: Pointwise,
    pub placement: Placement,
    pub blocks: Blocks,
    pub cls_shift: Option<ClsShift>,
}

impl Validate for MstAdapterCfg {
    fn validate(&self) -> Result<(), ConfigError> {
        self.clip.validate().map_err(|e| e.within("clip"))?;
        validate_head(self.num_classes, self.frames)?;
        ensure_count(self.adapter_width, "adapter_width", 1 << 14)?;
        ensure_count(self.branches.len(), "branches", 16)?;
        for (i, k) in self.branches.iter().enumerate() {
            k.validate(&format!("branches[{i}]"))?;
        }
        if let Fusion::Learned { init } = self.fusion {
            ensure_in(init, "fusion.init", -1e3, 1e3, true)?;
        }
        if let Some(s) = self.cls_shift {
            ensure_count(s.next_div, "cls_shift.next_div", self.clip.width)?;
            ensure_count(s.prev_div, "cls_shift.prev_div", self.clip.width)?;
            let (next, prev) = (self.clip.width / s.next_div, self.clip.width / s.prev_div);
            ensure(next + prev <= self.clip.width, "cls_shift", || {
                format!("shifts {next} + {prev} channels, more than the width {}", self.clip.width)
            })?;
        }
        self.blocks.validate(self.clip.layers, "blocks")
    }
}

impl MstAdapterCfg {
    /// ViT-B/16, Kinetics-400, 8 frames, with the assumptions of the module docs.
    pub fn vit_b16_k400() -> Self {
        Self {
            clip: ClipCfg::vit_b16(),
            num_classes: 400,
            frames: 8,
            adapter_width: 384,
            branches: vec![Kernel3::new(3, 1, 1), Kernel3::new(5, 1, 1), Kernel3::new(7, 1, 1)],
            fusion: Fusion::Learned { init: 0.33 },
            pointwise: Pointwise::Dense,
            placement: Placement::PostResidual,
            blocks: Blocks::Last(12),
            cls_shift: Some(ClsShift { next_div: 8, prev_div: 8 }),
        }
    }
    /// ViT-B/16, Something-Something v2 (174 classes).
    pub fn vit_b16_ssv2() -> Self {
        Self { num_classes: 174, ..Self::vit_b16_k400() }
    }
    /// ViT-L/14, Kinetics-400.
    pub fn vit_l14_k400() -> Self {
        Self { clip: ClipCfg::vit_l14(), blocks: Blocks::Last(24), ..Self::vit_b16_k400() }
    }
    /// ViT-L/14, Something-Something v2.
    pub fn vit_l14_ssv2() -> Self {
        Self { num_classes: 174, ..Self::vit_l14_k400() }
    }

    /// Adapters in the model: two per adapted block.
    pub fn num_adapters(&self) -> usize {
        2 * (0..self.clip.layers).filter(|&i| self.blocks.contains(i, self.clip.layers)).count()
    }

    /// (from_next, from_prev) CLS channels shifted.
    pub fn shift_channels(&self) -> Option<(usize, usize)> {
        self.cls_shift.map(|s| (self.clip.width / s.next_div, self.clip.width / s.prev_div))
    }

    /// Parameters of one adapter, term by term (see [`MstAdapterCfg::breakdown`]).
    pub fn adapter_params(&self) -> u64 {
        let (c, w) = (self.clip.width as u64, self.adapter_width as u64);
        let branches: u64 = self.branches.iter().map(|k| w * k.taps() as u64 + w).sum();
        let fusion = match self.fusion {
            Fusion::Learned { .. } => self.branches.len() as u64,
            Fusion::Average => 0,
        };
        let pointwise = match self.pointwise {
            Pointwise::Dense => w * w + w,
            Pointwise::Depthwise => w + w,
            Pointwise::None => 0,
        };
        linear_params(c, w) + branches + fusion + pointwise + linear_params(w, c)
    }

    /// Multiply-adds of one adapter on one frame (the H·W patch tokens).
    pub fn adapter_macs_per_frame(&self) -> u64 {
        let (c, w, n) = (self.clip.width as u64, self.adapter_width as u64, (self.clip.tokens() - 1) as u64);
        let branches: u64 = self.branches.iter().map(|k| dwconv_macs(n * w, k.taps() as u64)).sum();
        let pointwise = match self.pointwise {
            Pointwise::Dense => linear_macs(n, w, w),
            Pointwise::Depthwise => dwconv_macs(n * w, 1),
            Pointwise::None => 0,
        };
        linear_macs(n, c, w) + branches + pointwise + linear_macs(n, w, c)
    }

    /// Parameters and multiply-adds per view, line by line.
    pub fn breakdown(&self) -> Breakdown {
        let kernels: Vec<String> = self.branches.iter().map(|k| k.to_string()).collect();
        let mut b = Breakdown::new(
            format!("MST-Adapter {} (W {}, branches {})", self.clip.name(), self.adapter_width, kernels.join("+")),
            self.frames,
        );
        encoder_lines(&mut b, &self.clip, self.frames, false, "");
        let n = self.num_adapters() as u64;
        b.line(
            &format!("{n} × MST-Adapter (down, 3 branches, 1×1×1, up)"),
            &["transformer.resblocks.*.adapter_attn.", "transformer.resblocks.*.adapter_mlp."],
            n * self.adapter_params(),
            true,
            n * self.frames as u64 * self.adapter_macs_per_frame(),
        );
        head_lines(&mut b, self.clip.width as u64, self.num_classes as u64, "");
        b
    }
}

/// The 1×1×1 conv after the fusion.
#[derive(Clone, Debug)]
pub enum PointwiseLayer<E: Dtype, D: Storage<E>> {
    Dense(Linear<usize, usize, E, D>),
    Depthwise(DwConv3d<E, D>),
}

// ANCHOR: adapter
// ANCHOR: adapter_fields
/// `V + up(ME(down(V)))` on the patch tokens, with the multi-scale extraction
/// `z = V_down + Σᵢ Wᵢ·DWConv3Dᵢ(V_down)`, `ME = z + Conv₁ₓ₁ₓ₁(z)`.
#[derive(Clone, Debug)]
pub struct MstAdapter<const C: usize, E: Dtype, D: Storage<E>> {
    pub down: Linear<Const<C>, usize, E, D>,
    pub branches: Vec<DwConv3d<E, D>>,
    pub fusion: Weights<E, D>,
    pub pointwise: Option<PointwiseLayer<E, D>>,
    pub up: Linear<usize, Const<C>, E, D>,
}
// ANCHOR_END: adapter_fields

impl<const C: usize, E: Real, D: KitDevice<E>> MstAdapter<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        // ANCHOR: eq6_down
        let (x, tape) = x.split_tape();
        // V_down: (B·T, H·W, W)
        let v = self.down.forward(ops::patch_tokens(x.clone().put_tape(tape)));
        // ANCHOR_END: eq6_down
        // ANCHOR: eq7
        // Eq. 7: the branches B_i = DWConv3D_i(V_down), each on the (T, H, W) grid of each video
        let (v, tape) = v.split_tape();
        let mut tape = Some(tape);
        let branches: Vec<_> = self
            .branches
            .iter()
            .map(|conv| {
                let input = match tape.take() {
                    Some(t) => v.clone().put_tape(t),
                    None => v.retaped::<T>(),
                };
                conv.forward(input, grid)
            })
            .collect();
        // ANCHOR_END: eq7
        // ANCHOR: eq8
        // Eq. 8: z = V_down + Σᵢ Wᵢ·Bᵢ
        let z = ops::fuse(v, branches, &self.fusion);
        // ANCHOR_END: eq8
        // ANCHOR: eq9
        // Eq. 9: y = z + Conv1x1x1(z)
        let y = match &self.pointwise {
            Some(PointwiseLayer::Dense(lin)) => residual(z, |z| lin.forward(z)),
            Some(PointwiseLayer::Depthwise(conv)) => residual(z, |z| conv.forward(z, grid)),
            None => z,
        };
        // ANCHOR_END: eq9
        // ANCHOR: eq6_up
        // Eq. 6: V + up(·), the CLS token untouched
        ops::add_to_patches(x, self.up.forward(y))
        // ANCHOR_END: eq6_up
    }
}
// ANCHOR_END: adapter

impl<const C: usize, E: Real, D: KitDevice<E>> MstAdapter<C, E, D> {
    /// A fresh, trainable adapter (initialisation: see the module docs).
    pub fn build(cfg: &MstAdapterCfg, dev: &D, init: &mut Init) -> Self {
        let w = cfg.adapter_width;
        let conv = |k: Kernel3, init: &mut Init| DwConv3d {
            weight: Param::stored_as(
                param(dev, (w, k.taps()), init.torch_linear(w, k.taps()), true).value,
                true,
                &[w, 1, k.t, k.h, k.w],
            ),
            bias: param(dev, (w,), init.uniform(w, 1.0 / (k.taps() as f64).sqrt()), true),
            kernel: k,
        };
        let branches = cfg.branches.iter().map(|k| conv(*k, init)).collect();
        let fusion = match cfg.fusion {
            Fusion::Learned { init: v } => Weights::Learned(constant(dev, (cfg.branches.len(),), v, true)),
            Fusion::Average => Weights::Fixed(vec![1.0 / cfg.branches.len() as f64; cfg.branches.len()]),
        };
        let pointwise = match cfg.pointwise {
            Pointwise::Dense => Some(PointwiseLayer::Dense(Linear {
                weight: Param::stored_as(
                    param(dev, (w, w), init.torch_linear(w, w), true).value,
                    true,
                    &[w, w, 1, 1, 1],
                ),
                bias: Some(param(dev, (w,), init.uniform(w, 1.0 / (w as f64).sqrt()), true)),
            })),
            Pointwise::Depthwise => Some(PointwiseLayer::Depthwise(conv(Kernel3::new(1, 1, 1), init))),
            Pointwise::None => None,
        };
        Self {
            down: Linear {
                weight: param(dev, (w, Const::<C>), init.torch_linear(w, C), true),
                bias: Some(param(dev, (w,), init.uniform(w, 1.0 / (C as f64).sqrt()), true)),
            },
            branches,
            fusion,
            pointwise,
            up: Linear {
                weight: constant(dev, (Const::<C>, w), 0.0, true),
                bias: Some(constant(dev, (Const::<C>,), 0.0, true)),
            },
        }
    }
}

// ANCHOR: block
/// A CLIP block with two MST-Adapters and the [CLS] shift.
#[derive(Clone, Debug)]
pub struct MstBlock<const C: usize, E: Dtype, D: Storage<E>> {
    pub clip: ResidualAttentionBlock<C, E, D>,
    pub adapter_attn: Option<MstAdapter<C, E, D>>,
    pub adapter_mlp: Option<MstAdapter<C, E, D>>,
    pub placement: Placement,
    /// (from_next, from_prev) CLS channels, shifted at the input of the attention branch.
    pub shift: Option<(usize, usize)>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> MstBlock<C, E, D> {
    /// The attention branch, shifted: `MHSA(LN(shift(x)))`, with the adapter where `placement` puts it.
    fn attention_branch<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        let x = maybe(self.shift, x, |(next, prev), x| ops::cls_shift(x, grid.t, next, prev));
        let a = |x| maybe(self.adapter_attn.as_ref(), x, |a, x| a.forward(x, grid));
        let clip = &self.clip;
        match self.placement {
            Placement::PriorLn => clip.attn.forward(clip.ln_1.forward(a(x)), SeqAxis::Tokens),
            Placement::PriorBranch => clip.attn.forward(a(clip.ln_1.forward(x)), SeqAxis::Tokens),
            Placement::PostBranch => a(clip.attention(x, SeqAxis::Tokens)),
            Placement::PostResidual => clip.attention(x, SeqAxis::Tokens),
        }
    }

    fn mlp_branch<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        let a = |x| maybe(self.adapter_mlp.as_ref(), x, |a, x| a.forward(x, grid));
        let clip = &self.clip;
        match self.placement {
            Placement::PriorLn => clip.mlp.forward(clip.ln_2.forward(a(x))),
            Placement::PriorBranch => clip.mlp.forward(a(clip.ln_2.forward(x))),
            Placement::PostBranch => a(clip.feed_forward(x)),
            Placement::PostResidual => clip.feed_forward(x),
        }
    }

    /// The adapter after a residual, in the paper's post-residual placement only.
    fn post<'a>(&self, a: &'a Option<MstAdapter<C, E, D>>) -> Option<&'a MstAdapter<C, E, D>> {
        a.as_ref().filter(|_| self.placement == Placement::PostResidual)
    }
}

/// The block's four stages (the paper's post-residual placement; the other placements move the
/// adapter inside a branch and leave stages 1 and 3 empty): `x += MHSA(LN(shift(x)))`,
/// `x = A_attn(x)`, `x += MLP(LN(x))`, `x = A_mlp(x)`.
impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for MstBlock<C, E, D> {
    fn stages(&self) -> usize {
        4
    }

    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, grid: Grid, _ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        match i {
            0 => residual(x, |x| self.attention_branch(x, grid)),
            1 => maybe(self.post(&self.adapter_attn), x, |a, x| a.forward(x, grid)),
            2 => residual(x, |x| self.mlp_branch(x, grid)),
            _ => maybe(self.post(&self.adapter_mlp), x, |a, x| a.forward(x, grid)),
        }
    }

    fn stage_trains(&self, i: usize) -> bool {
        let (clip, inside) = (&self.clip, self.placement != Placement::PostResidual);
        match i {
            0 => trains(&clip.ln_1) || trains(&clip.attn) || inside && trains(&self.adapter_attn),
            1 => !inside && trains(&self.adapter_attn),
            2 => trains(&clip.ln_2) || trains(&clip.mlp) || inside && trains(&self.adapter_mlp),
            _ => !inside && trains(&self.adapter_mlp),
        }
    }
}
// ANCHOR_END: block

/// MST-Adapter's video model: the CLIP encoder with MST blocks and ST-Adapter's frame-averaging head.
pub type MstAdapterViT<const C: usize, E, D> = FrameClassifier<C, MstBlock<C, E, D>, E, D>;

impl MstAdapterCfg {
    /// Builds the model: frozen CLIP encoder, trainable adapters and `fc`.
    /// An invalid config is an error naming the field.
    pub fn build<const C: usize, E: Real, D: KitDevice<E>>(
        &self,
        dev: &D,
        init: &mut Init,
    ) -> Result<MstAdapterViT<C, E, D>, ConfigError> {
        self.validate()?;
        let clip = &self.clip;
        let shift = self.shift_channels();
        let backbone = VisionTransformer::build(clip, dev, init, None, |i, init| {
            let on = self.blocks.contains(i, clip.layers);
            let block = clip_block(clip, dev, init);
            let adapter_attn = on.then(|| MstAdapter::build(self, dev, init));
            let adapter_mlp = on.then(|| MstAdapter::build(self, dev, init));
            MstBlock { clip: block, adapter_attn, adapter_mlp, placement: self.placement, shift }
        })?;
        Ok(FrameClassifier { backbone, fc: head(dev, init, self.num_classes, 0.02), dropout: 0.5 })
    }
}

crate::impl_params!([E: Real, D: KitDevice<E>] PointwiseLayer<E, D>, |m, w| {
    match r!(*m) {
        PointwiseLayer::Dense(l) => w.module("", l),
        PointwiseLayer::Depthwise(c) => w.module("", c),
    }
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] MstAdapter<C, E, D> {
    module "down" => down,
    module "branches" => branches,
    module "fusion" => fusion,
    module "pointwise" => pointwise,
    module "up" => up,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] MstBlock<C, E, D> {
    module "" => clip,
    module "adapter_attn" => adapter_attn,
    module "adapter_mlp" => adapter_mlp,
});
