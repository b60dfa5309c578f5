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
use crate::device::{host, tensor, KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::ops::attention::MultiheadAttention;
use crate::ops::{self, gelu, layer_norm::LayerNorm, promote, quick_gelu, Grid, Linear, SeqAxis};
use crate::param::{param_list, Param, Params, Walk, WalkMut};

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
        self.attn.forward(self.ln_1.forward(x), axis)
    }

    /// `mlp(ln_2(x))`.
    pub fn feed_forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        self.mlp.forward(self.ln_2.forward(x))
    }
}

impl<const C: usize, E: Real, D: KitDevice<E>> Mlp<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        let h = self.c_fc.forward(x); // (B·T, L, 4C)
        let h = match self.act {
            MlpAct::QuickGelu => quick_gelu(h),
            MlpAct::Gelu => gelu(h),
        };
        self.c_proj.forward(h)
    }
}
// ANCHOR_END: clip_block

// ANCHOR: block_trait
/// A transformer block of a video model: CLIP's own, or one with a paper's adapters.
pub trait Block<const C: usize, E: Real, D: KitDevice<E>>: Params<E, D> {
    /// The block on a token stream that is traced throughout (or untraced throughout).
    fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T>;

    /// The first block with trainable parameters, entered untraced: the stream is promoted to the
    /// traced tape at the block's first trainable parameter. The default promotes on entry; blocks
    /// whose first trainable parameter comes later (an adapter before the MLP) override it so that
    /// the frozen part before it runs untraced.
    fn forward_entering<T: Tape<E, D>>(&self, x: Tokens<C, E, D>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        self.forward(promote(x), grid, ctx)
    }

    fn has_trainable(&self) -> bool {
        param_list(self).iter().any(|p| p.trainable)
    }
}
// ANCHOR_END: block_trait

/// The plain CLIP block is a [`Block`] (the frame-wise baseline's).
pub type ClipBlock<const C: usize, E, D> = ResidualAttentionBlock<C, E, D>;

impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for ResidualAttentionBlock<C, E, D> {
    fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, _grid: Grid, _ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        let x = residual(x, |x| self.attention(x, SeqAxis::Tokens));
        residual(x, |x| self.feed_forward(x))
    }
}

/// `x + f(x)`: the residual connection (x is read twice; both gradients add up).
pub fn residual<const C: usize, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tokens<C, E, D, T>,
    f: impl FnOnce(Tokens<C, E, D, T>) -> Tokens<C, E, D, T>,
) -> Tokens<C, E, D, T> {
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
    /// All encoder parameters start frozen; `block(i, init)` builds block i.
    pub fn build(
        cfg: &ClipCfg,
        dev: &D,
        init: &mut Init,
        temporal_frames: Option<usize>,
        mut block: impl FnMut(usize, &mut Init) -> B,
    ) -> Self {
        assert_eq!(cfg.width, C, "ClipCfg width {} built as width {C}", cfg.width);
        cfg.validate().expect("invalid ClipCfg");
        let (p, l) = (cfg.patch_size, cfg.tokens());
        let scale = (C as f64).powf(-0.5);
        let conv_in = 3 * p * p;
        Self {
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
        }
    }

    // ANCHOR: encoder_forward
    /// The frame tokens after the last block: (B·T, L, C), and the video's grid.
    ///
    /// With `T = OwnedTape` (training) the stream stays untraced up to the first trainable
    /// parameter: frozen embeddings and frozen leading blocks record nothing for the backward pass.
    pub fn forward<T: Tape<E, D>>(&self, video: &Video<E, D>, ctx: &mut Ctx) -> (Tokens<C, E, D, T>, Grid) {
        let (b, _, t, h, w) = *video.shape();
        let p = self.cfg.patch_size;
        assert!(h % p == 0 && w % p == 0, "frame size {h}x{w} is not a multiple of patch size {p}");
        let grid = Grid { b, t, h: h / p, w: w / p };
        let patches = patchify(video, p); // (B·T, H·W, 3·p·p)

        let embed_trains = self.conv1.weight.trainable
            || self.class_embedding.trainable
            || self.positional_embedding.trainable
            || self.temporal_embedding.as_ref().is_some_and(|t| t.trainable)
            || self.ln_pre.as_ref().is_some_and(|l| l.weight.trainable || l.bias.trainable);
        let blocks = &self.transformer.resblocks;
        if T::OWNS_TAPE && embed_trains {
            let mut x = self.embed(promote::<_, E, D, NoneTape, T>(patches), ctx);
            for (i, blk) in blocks.iter().enumerate() {
                x = blk.forward(x, grid, ctx);
                ctx.tap(&format!("block{i}_out"), &x);
            }
            return (x, grid);
        }
        // untraced up to the first block with a trainable parameter
        let first = if T::OWNS_TAPE { blocks.iter().position(|b| b.has_trainable()) } else { None };
        let mut x0 = self.embed(patches, ctx);
        let stop = first.unwrap_or(blocks.len());
        for (i, blk) in blocks[..stop].iter().enumerate() {
            x0 = blk.forward(x0, grid, ctx);
            ctx.tap(&format!("block{i}_out"), &x0);
        }
        let Some(first) = first else { return (promote(x0), grid) };
        let mut x = blocks[first].forward_entering::<T>(x0, grid, ctx);
        ctx.tap(&format!("block{first}_out"), &x);
        for (i, blk) in blocks.iter().enumerate().skip(first + 1) {
            x = blk.forward(x, grid, ctx);
            ctx.tap(&format!("block{i}_out"), &x);
        }
        (x, grid)
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
        let x = match &self.ln_pre {
            Some(ln) => ln.forward(x),
            None => x,
        };
        ctx.tap("embed_out", &x);
        x
    }
}
// ANCHOR_END: vit_forward

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
        let x = match ctx.drop_factors(x.shape().0 * C, self.dropout) {
            Some(f) => ops::elementwise::mask(x, f, 1),
            None => x,
        };
        let logits = self.fc.forward(x);
        ctx.tap("logits", &logits);
        logits
    }
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
    /// ST-Adapter code initialises it).
    pub fn build(cfg: &ClipCfg, num_classes: usize, dev: &D, init: &mut Init) -> Self {
        let backbone = VisionTransformer::build(cfg, dev, init, None, |_, init| clip_block(cfg, dev, init));
        Self { backbone, fc: head(dev, init, num_classes, 0.02), dropout: 0.5 }
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

impl<const C: usize, B: Params<E, D>, E: Real, D: KitDevice<E>> Params<E, D> for VisionTransformer<C, B, E, D> {
    fn walk<W: Walk<E, D>>(&self, w: &mut W) {
        w.param("class_embedding", &self.class_embedding);
        w.param("positional_embedding", &self.positional_embedding);
        if let Some(t) = &self.temporal_embedding {
            w.param("temporal_embedding", t);
        }
        w.module("conv1", &self.conv1);
        w.module("ln_pre", &self.ln_pre);
        w.module("transformer", &self.transformer);
        w.module("ln_post", &self.ln_post);
    }
    fn walk_mut<W: WalkMut<E, D>>(&mut self, w: &mut W) {
        w.param("class_embedding", &mut self.class_embedding);
        w.param("positional_embedding", &mut self.positional_embedding);
        if let Some(t) = &mut self.temporal_embedding {
            w.param("temporal_embedding", t);
        }
        w.module("conv1", &mut self.conv1);
        w.module("ln_pre", &mut self.ln_pre);
        w.module("transformer", &mut self.transformer);
        w.module("ln_post", &mut self.ln_post);
    }
}

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
