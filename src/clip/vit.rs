//! CLIP's ViT image encoder, run on every frame of a video.
//!
//! Official code: openai/CLIP `clip/model.py` (`VisionTransformer`, `ResidualAttentionBlock`), as
//! copied into linziyi96/st-adapter `models_adapter.py` (@ b914b38) and taoyang1122/adapt-image-models
//! `vit_clip.py` (@ b3580d2). Field names are the checkpoint keys.
//!
//! Shape legend: B videos · T frames · H×W patch grid · L = 1 + H·W tokens (CLS first) · C width.
//! The token stream is (B·T, L, C), frame row b·T + t (batch-major), patches row-major after CLS.
//!
//! Departures from the official code, none of which changes a number (tests/parity.rs):
//! - `conv1` (a stride-p Conv2d without bias) is a reshape into (B·T, H·W, 3·p·p) patches and a
//!   matmul with the (C, 3·p·p) weight; dfdx 0.13 has no convolution on stable.
//! - The official ST-Adapter code keeps the frozen CLIP weights in fp16 under autocast; the parity
//!   fixtures (and this port) run fp32.

use dfdx::prelude::*;

use super::{ClipCfg, MlpAct};
use crate::context::Ctx;
use crate::count::{layer_norm_macs, layer_norm_params, linear_macs, linear_params, Breakdown};
use crate::device::{host, tensor, KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::input::{ConfigError, Validate};
use crate::ops::attention::MultiheadAttention;
use crate::ops::{self, layer_norm::LayerNorm, promote, Grid, Linear, SeqAxis};
use crate::param::{param_list, Param, Params};

/// The (B·T, L, C) token stream.
pub type Tokens<const C: usize, E, D, T = NoneTape> = Tensor<(usize, usize, Const<C>), E, D, T>;

/// A video batch (B, 3, T, H, W), channels first, as the official models take it.
pub type Video<E, D> = Tensor<(usize, Const<3>, usize, usize, usize), E, D>;

// ANCHOR: clip_block
/// CLIP's MLP: `c_fc` (C → 4C) → QuickGELU → `c_proj` (4C → C).
#[derive(Clone, Debug)]
pub struct Mlp<const C: usize, E: Dtype, D: Storage<E>> {
    pub c_fc: Linear<Const<C>, usize, E, D>,
    pub c_proj: Linear<usize, Const<C>, E, D>,
    pub act: MlpAct,
}

/// CLIP's pre-LN transformer block: `x += attn(ln_1(x)); x += mlp(ln_2(x))`.
#[derive(Clone, Debug)]
pub struct ResidualAttentionBlock<const C: usize, E: Dtype, D: Storage<E>> {
    pub attn: MultiheadAttention<C, E, D>,
    pub ln_1: LayerNorm<Const<C>, E, D>,
    pub mlp: Mlp<C, E, D>,
    pub ln_2: LayerNorm<Const<C>, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> ResidualAttentionBlock<C, E, D> {
    /// `attn(ln_1(x))` with sequences along `axis`: the tokens of a frame (CLIP) or, reusing the
    /// same weights, the frames of a token position (AIM's T-MSA).
    pub fn attention<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, axis: SeqAxis) -> Tokens<C, E, D, T> {
        self.attn.forward_normed(x, &self.ln_1, axis)
    }

    /// `mlp(ln_2(x))`.
    pub fn feed_forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        self.mlp.forward_normed(x, &self.ln_2)
    }
}

impl<const C: usize, E: Real, D: KitDevice<E>> Mlp<C, E, D> {
    /// `c_proj(act(c_fc(x)))`: (B·T, L, C) → (B·T, L, 4C) → (B·T, L, C), one op ([`ops::mlp`]).
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        ops::mlp(x, None, &self.c_fc, self.act(), &self.c_proj, false)
    }

    /// `mlp(ln(x))`.
    pub fn forward_normed<T: Tape<E, D>>(
        &self,
        x: Tokens<C, E, D, T>,
        ln: &LayerNorm<Const<C>, E, D>,
    ) -> Tokens<C, E, D, T> {
        ops::mlp(x, Some(ln), &self.c_fc, self.act(), &self.c_proj, false)
    }

    /// `x + mlp(ln(x))`: CLIP's MLP residual branch.
    pub fn residual<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, ln: &LayerNorm<Const<C>, E, D>) -> Tokens<C, E, D, T> {
        ops::mlp(x, Some(ln), &self.c_fc, self.act(), &self.c_proj, true)
    }

    fn act(&self) -> ops::Act {
        match self.act {
            MlpAct::QuickGelu => ops::Act::QuickGelu,
            MlpAct::Gelu => ops::Act::Gelu,
        }
    }
}
// ANCHOR_END: clip_block

// ANCHOR: block_trait
/// A transformer block of a video model (CLIP's own, or one with a paper's additions), written
/// once, as the sequence of its stages: each stage is one line of the paper's block equations
/// (an adapter, or a residual branch).
///
/// The same stages serve inference and training. In training, [`VisionTransformer::forward`]
/// runs the frozen leading stages untraced and promotes the stream to the traced tape at the first
/// stage that reads a trainable parameter, so the frozen attention before ST-Adapter's pre-MLP
/// adapter records nothing for the backward pass.
pub trait Block<const C: usize, E: Real, D: KitDevice<E>>: Params<E, D> {
    /// The number of stages.
    fn stages(&self) -> usize;

    /// Stage `i` (0-based) on the token stream.
    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T>;

    /// Whether stage `i` reads a trainable parameter.
    fn stage_trains(&self, i: usize) -> bool;

    /// Every stage, on a stream traced throughout (or untraced throughout).
    fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        (0..self.stages()).fold(x, |x, i| self.stage(i, x, grid, ctx))
    }
}
// ANCHOR_END: block_trait

/// Whether any parameter of `m` is trainable.
pub fn trains<E: Real, D: KitDevice<E>, M: Params<E, D> + ?Sized>(m: &M) -> bool {
    param_list(m).iter().any(|p| p.trainable)
}

/// `f(a, x)` when the optional part `a` is present, `x` unchanged otherwise (an absent adapter).
pub fn maybe<A, X>(a: Option<A>, x: X, f: impl FnOnce(A, X) -> X) -> X {
    match a {
        Some(a) => f(a, x),
        None => x,
    }
}

/// The plain CLIP block is a [`Block`] (the frame-wise baseline's).
pub type ClipBlock<const C: usize, E, D> = ResidualAttentionBlock<C, E, D>;

/// CLIP's two stages: `x += attn(ln_1(x))`, `x += mlp(ln_2(x))`.
impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for ResidualAttentionBlock<C, E, D> {
    fn stages(&self) -> usize {
        2
    }

    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, _grid: Grid, _ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        match i {
            0 => self.attn.residual(x, &self.ln_1, SeqAxis::Tokens), // x + attn(ln_1(x)), one op
            _ => self.mlp.residual(x, &self.ln_2),                   // x + mlp(ln_2(x)), one op
        }
    }

    fn stage_trains(&self, i: usize) -> bool {
        match i {
            0 => trains(&self.ln_1) || trains(&self.attn),
            _ => trains(&self.ln_2) || trains(&self.mlp),
        }
    }
}

/// `x + f(x)`: the residual connection (x is read twice; both gradients add up).
pub fn residual<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    f: impl FnOnce(Tensor<S, E, D, T>) -> Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    let (x, tape) = x.split_tape();
    let h = f(x.clone().put_tape(tape));
    ops::add(h, x)
}

/// `transformer.resblocks`.
#[derive(Clone, Debug)]
pub struct Transformer<B> {
    pub resblocks: Vec<B>,
}

/// The CLIP visual encoder up to `ln_post`, generic over the block type.
#[derive(Clone, Debug)]
pub struct VisionTransformer<const C: usize, B, E: Dtype, D: Storage<E>> {
    /// The patch embedding: weight (C, 3·p·p), stored as the Conv2d weight (C, 3, p, p).
    pub conv1: Linear<usize, Const<C>, E, D>,
    pub class_embedding: Param<(Const<C>,), E, D>,
    pub positional_embedding: Param<(usize, Const<C>), E, D>,
    /// AIM's trainable (1, T, C) embedding, added to every token of frame t (TimeSformer's
    /// `time_embed`: to the patch tokens only, `temporal_on_cls = false`).
    pub temporal_embedding: Option<Param<(usize, Const<C>), E, D>>,
    pub temporal_on_cls: bool,
    pub ln_pre: Option<LayerNorm<Const<C>, E, D>>,
    pub transformer: Transformer<B>,
    pub ln_post: LayerNorm<Const<C>, E, D>,
    pub cfg: ClipCfg,
}

// ANCHOR: vit_forward
impl<const C: usize, B: Block<C, E, D>, E: Real, D: KitDevice<E>> VisionTransformer<C, B, E, D> {
    /// Builds the encoder with CLIP's shapes (values from `init`; load real weights over them).
    /// All encoder parameters start frozen; `block(i, init)` builds block i. An invalid config,
    /// or one whose width is not `C`, is an error naming the field.
    pub fn build(
        cfg: &ClipCfg,
        dev: &D,
        init: &mut Init,
        temporal_frames: Option<usize>,
        mut block: impl FnMut(usize, &mut Init) -> B,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        crate::input::ensure(cfg.width == C, "width", || format!("{} built as a width-{C} model", cfg.width))?;
        let (p, l) = (cfg.patch_size, cfg.tokens());
        let scale = (C as f64).powf(-0.5);
        let conv_in = 3 * p * p;
        Ok(Self {
            conv1: Linear {
                weight: Param::stored_as(
                    tensor(dev, init.torch_linear(C, conv_in).into_iter().map(E::of).collect(), (Const::<C>, conv_in)),
                    false,
                    &[C, 3, p, p],
                ),
                bias: cfg.patch_bias.then(|| constant(dev, (Const::<C>,), 0.0, false)),
            },
            class_embedding: param(dev, (Const::<C>,), init.normal(C, scale), false),
            positional_embedding: param(dev, (l, Const::<C>), init.normal(l * C, scale), false),
            temporal_embedding: temporal_frames.map(|t| {
                let te = constant(dev, (t, Const::<C>), 0.0, false);
                Param::stored_as(te.value, false, &[1, t, C])
            }),
            temporal_on_cls: true,
            ln_pre: cfg.ln_pre.then(|| layer_norm(dev)),
            transformer: Transformer { resblocks: (0..cfg.layers).map(|i| block(i, init)).collect() },
            ln_post: layer_norm(dev),
            cfg: cfg.clone(),
        })
    }

    // ANCHOR: encoder_forward
    /// The frame tokens after the last block: (B·T, L, C), and the video's grid.
    ///
    /// With `T = OwnedTape` (training) the stream stays untraced up to the first stage that reads a
    /// trainable parameter: frozen embeddings and frozen leading stages record nothing for the
    /// backward pass.
    pub fn forward<T: Tape<E, D>>(&self, video: &Video<E, D>, ctx: &mut Ctx) -> (Tokens<C, E, D, T>, Grid) {
        let (b, _, t, h, w) = *video.shape();
        let p = self.cfg.patch_size;
        assert!(h % p == 0 && w % p == 0, "frame size {h}x{w} is not a multiple of patch size {p}");
        let grid = Grid { b, t, h: h / p, w: w / p };
        let patches = patchify(video, p); // (B·T, H·W, 3·p·p)

        let mut x = if T::OWNS_TAPE && self.embedding_trains() {
            Flow::Traced(self.embed(promote::<_, E, D, NoneTape, T>(patches), ctx))
        } else {
            Flow::Untraced(self.embed(patches, ctx))
        };
        for (i, blk) in self.transformer.resblocks.iter().enumerate() {
            for s in 0..blk.stages() {
                x = x.stage(blk, s, grid, ctx);
            }
            x.tap(ctx, &format!("block{i}_out"));
        }
        (x.traced(), grid)
    }

    /// Whether a parameter of the embedding (patches, CLS, positions, time, `ln_pre`) trains.
    fn embedding_trains(&self) -> bool {
        trains(&self.conv1)
            || trains(&self.class_embedding)
            || trains(&self.positional_embedding)
            || trains(&self.temporal_embedding)
            || trains(&self.ln_pre)
    }
    // ANCHOR_END: encoder_forward

    /// `ln_pre([class_embedding; conv1(patches)] + positional_embedding (+ temporal_embedding[t]))`.
    fn embed<T: Tape<E, D>>(
        &self,
        patches: Tensor<(usize, usize, usize), E, D, T>,
        ctx: &mut Ctx,
    ) -> Tokens<C, E, D, T> {
        let x = self.conv1.forward(patches); // (B·T, H·W, C)
        let x = ops::embed_tokens(
            x,
            &self.class_embedding,
            &self.positional_embedding,
            self.temporal_embedding.as_ref(),
            self.temporal_on_cls,
        );
        let x = maybe(self.ln_pre.as_ref(), x, |ln, x| ln.forward(x));
        ctx.tap("embed_out", &x);
        x
    }
}
// ANCHOR_END: vit_forward

/// The token stream of a forward pass: untraced until the first trainable stage, traced after.
enum Flow<const C: usize, E: Real, D: KitDevice<E>, T> {
    Untraced(Tokens<C, E, D>),
    Traced(Tokens<C, E, D, T>),
}

impl<const C: usize, E: Real, D: KitDevice<E>, T: Tape<E, D>> Flow<C, E, D, T> {
    /// Runs stage `s` of `blk`, promoting an untraced stream when the stage trains (and `T` traces).
    fn stage<B: Block<C, E, D>>(self, blk: &B, s: usize, grid: Grid, ctx: &mut Ctx) -> Self {
        match self {
            Flow::Traced(x) => Flow::Traced(blk.stage(s, x, grid, ctx)),
            Flow::Untraced(x) if T::OWNS_TAPE && blk.stage_trains(s) => {
                Flow::Traced(blk.stage(s, promote(x), grid, ctx))
            }
            Flow::Untraced(x) => Flow::Untraced(blk.stage(s, x, grid, ctx)),
        }
    }

    fn tap(&self, ctx: &mut Ctx, name: &str) {
        match self {
            Flow::Untraced(x) => ctx.tap(name, x),
            Flow::Traced(x) => ctx.tap(name, x),
        }
    }

    /// The stream with the caller's tape type (an untraced stream gets an empty tape).
    fn traced(self) -> Tokens<C, E, D, T> {
        match self {
            Flow::Untraced(x) => promote(x),
            Flow::Traced(x) => x,
        }
    }
}

fn layer_norm<const C: usize, E: Real, D: KitDevice<E>>(dev: &D) -> LayerNorm<Const<C>, E, D> {
    LayerNorm {
        weight: constant(dev, (Const::<C>,), 1.0, false),
        bias: constant(dev, (Const::<C>,), 0.0, false),
        eps: 1e-5,
    }
}

/// A frozen CLIP block with CLIP's shapes (values from `init`).
pub fn clip_block<const C: usize, E: Real, D: KitDevice<E>>(
    cfg: &ClipCfg,
    dev: &D,
    init: &mut Init,
) -> ResidualAttentionBlock<C, E, D> {
    let f = cfg.mlp_width();
    let lin_in = |init: &mut Init, out: usize| init.torch_linear(out, C);
    ResidualAttentionBlock {
        attn: MultiheadAttention {
            in_proj_weight: param(
                dev,
                (3 * C, Const::<C>),
                init.uniform(3 * C * C, (6.0 / (4.0 * C as f64)).sqrt()),
                false,
            ),
            in_proj_bias: constant(dev, (3 * C,), 0.0, false),
            out_proj: Linear {
                weight: param(dev, (Const::<C>, Const::<C>), lin_in(init, C), false),
                bias: Some(constant(dev, (Const::<C>,), 0.0, false)),
            },
            heads: cfg.heads,
        },
        ln_1: layer_norm(dev),
        mlp: Mlp {
            c_fc: Linear {
                weight: param(dev, (f, Const::<C>), lin_in(init, f), false),
                bias: Some(param(dev, (f,), init.uniform(f, 1.0 / (C as f64).sqrt()), false)),
            },
            c_proj: Linear {
                weight: param(dev, (Const::<C>, f), init.torch_linear(C, f), false),
                bias: Some(param(dev, (Const::<C>,), init.uniform(C, 1.0 / (f as f64).sqrt()), false)),
            },
            act: cfg.mlp_act,
        },
        ln_2: layer_norm(dev),
    }
}

// ANCHOR: patchify
/// Cuts every frame into p×p patches: (B, 3, T, H, W) → (B·T, (H/p)·(W/p), 3·p·p), frames
/// batch-major, patches row-major, each patch flattened as (channel, y, x) like the Conv2d weight.
pub fn patchify<E: Real, D: KitDevice<E>>(video: &Video<E, D>, p: usize) -> Tensor<(usize, usize, usize), E, D> {
    if let Some(y) = D::k_patchify(video, p) {
        return y;
    }
    let (b, _, t, h, w) = *video.shape();
    let (gh, gw) = (h / p, w / p);
    let v = host(video);
    let mut out = vec![E::zero(); b * t * gh * gw * 3 * p * p];
    let mut i = 0;
    for bi in 0..b {
        for ti in 0..t {
            for py in 0..gh {
                for px in 0..gw {
                    for c in 0..3 {
                        for ky in 0..p {
                            let row = (((bi * 3 + c) * t + ti) * h + py * p + ky) * w + px * p;
                            out[i..i + p].copy_from_slice(&v[row..row + p]);
                            i += p;
                        }
                    }
                }
            }
        }
    }
    tensor(video.device(), out, (b * t, gh * gw, 3 * p * p))
}
// ANCHOR_END: patchify

// ANCHOR: frame_head
/// A video classifier in the ST-Adapter codebase's form: the encoder, then the per-frame CLS tokens
/// averaged over T, `ln_post`, dropout 0.5 (training only) and `fc` on the width. CLIP's `proj` is
/// not used. The encoder's keys sit at the top level (`conv1.weight`, …, `fc.weight`), as in
/// `models_adapter.VisionTransformer`.
#[derive(Clone, Debug)]
pub struct FrameClassifier<const C: usize, B, E: Dtype, D: Storage<E>> {
    pub backbone: VisionTransformer<C, B, E, D>,
    pub fc: Linear<Const<C>, usize, E, D>,
    pub dropout: f64,
}

impl<const C: usize, B: Block<C, E, D>, E: Real, D: KitDevice<E>> FrameClassifier<C, B, E, D> {
    /// Logits (B, classes).
    pub fn forward<T: Tape<E, D>>(&self, video: &Video<E, D>, ctx: &mut Ctx) -> Tensor<(usize, usize), E, D, T> {
        let (x, grid) = self.backbone.forward::<T>(video, ctx);
        let cls = ops::cls_tokens(x); // (B·T, C)
        let x = ops::mean_over_frames(cls, grid.t); // (B, C)
        let x = self.backbone.ln_post.forward(x);
        ctx.tap("pre_logits", &x);
        let x = ops::dropout(x, self.dropout, ctx);
        let logits = self.fc.forward(x);
        ctx.tap("logits", &logits);
        logits
    }
}
/// The counts of [`FrameClassifier`]'s head (ST-Adapter's, MST-Adapter's and the frame-wise baseline's): `ln_post` (frozen) on the mean of the
/// per-frame CLS tokens, then `fc` (trainable). One LayerNorm row and one fc row per view.
pub fn head_lines(b: &mut Breakdown, c: u64, classes: u64, prefix: &str) {
    b.line(
        "ln_post (after the mean over T)",
        &[&format!("{prefix}ln_post.")],
        layer_norm_params(c),
        false,
        layer_norm_macs(1, c),
    );
    b.line("fc (classifier)", &[&format!("{prefix}fc")], linear_params(c, classes), true, linear_macs(1, c, classes));
}
// ANCHOR_END: frame_head

crate::impl_params!([const C: usize, B: Params<E, D>, E: Real, D: KitDevice<E>] FrameClassifier<C, B, E, D> {
    module "" => backbone,
    module "fc" => fc,
});

/// The frame-wise CLIP baseline ("SA", space-only): CLIP blocks, mean over frames, `fc`.
pub type FrameBaseline<const C: usize, E, D> = FrameClassifier<C, ResidualAttentionBlock<C, E, D>, E, D>;

impl<const C: usize, E: Real, D: KitDevice<E>> FrameBaseline<C, E, D> {
    /// The baseline with a frozen encoder and a trainable `fc` (std 0.02 normal, zero bias, as the
    /// ST-Adapter code initialises it). An invalid config is an error naming the field.
    pub fn build(cfg: &ClipCfg, num_classes: usize, dev: &D, init: &mut Init) -> Result<Self, ConfigError> {
        crate::input::ensure_count(num_classes, "num_classes", 1 << 20)?;
        let backbone = VisionTransformer::build(cfg, dev, init, None, |_, init| clip_block(cfg, dev, init))?;
        Ok(Self { backbone, fc: head(dev, init, num_classes, 0.02), dropout: 0.5 })
    }
}

/// A trainable classifier `fc` (width → classes) with N(0, std²) weights and a zero bias.
pub fn head<const C: usize, E: Real, D: KitDevice<E>>(
    dev: &D,
    init: &mut Init,
    classes: usize,
    std: f64,
) -> Linear<Const<C>, usize, E, D> {
    Linear {
        weight: param(dev, (classes, Const::<C>), init.normal(classes * C, std), true),
        bias: Some(constant(dev, (classes,), 0.0, true)),
    }
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] Mlp<C, E, D> {
    module "c_fc" => c_fc,
    module "c_proj" => c_proj,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] ResidualAttentionBlock<C, E, D> {
    module "attn" => attn,
    module "ln_1" => ln_1,
    module "mlp" => mlp,
    module "ln_2" => ln_2,
});

crate::impl_params!([E: Real, D: KitDevice<E>, B: Params<E, D>] Transformer<B> {
    module "resblocks" => resblocks,
});

crate::impl_params!([const C: usize, B: Params<E, D>, E: Real, D: KitDevice<E>] VisionTransformer<C, B, E, D> {
    param "class_embedding" => class_embedding,
    param "positional_embedding" => positional_embedding,
    module "temporal_embedding" => temporal_embedding,
    module "conv1" => conv1,
    module "ln_pre" => ln_pre,
    module "transformer" => transformer,
    module "ln_post" => ln_post,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// `patchify` followed by the matmul equals a stride-p, no-bias Conv2d computed by loops.
    #[test]
    fn patch_embedding_as_matmul_equals_the_strided_convolution() {
        let dev = Cpu::default();
        let (b, t, hw, p, c) = (1usize, 2usize, 8usize, 4usize, 5usize);
        let v: Vec<f64> = crate::init::Init::seeded(1).normal(b * 3 * t * hw * hw, 1.0);
        let video: Video<f64, Cpu> = dev.tensor_from_vec(v.clone(), (b, Const::<3>, t, hw, hw));
        let wv = crate::init::Init::seeded(2).normal(c * 3 * p * p, 1.0);
        let w: Param<(usize, usize), f64, Cpu> = Param::new(dev.tensor_from_vec(wv.clone(), (c, 3 * p * p)), false);
        let out = ops::linear(patchify(&video, p), &w, None).as_vec();
        let g = hw / p;
        for ti in 0..t {
            for py in 0..g {
                for px in 0..g {
                    for o in 0..c {
                        let mut s = 0.0;
                        for ch in 0..3 {
                            for ky in 0..p {
                                for kx in 0..p {
                                    s += wv[((o * 3 + ch) * p + ky) * p + kx]
                                        * v[((ch * t + ti) * hw + py * p + ky) * hw + px * p + kx];
                                }
                            }
                        }
                        assert!((out[((ti * g * g) + py * g + px) * c + o] - s).abs() < 1e-12);
                    }
                }
            }
        }
    }
}
