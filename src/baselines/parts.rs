//! The parts the ST-Adapter Table 1 baselines add to a CLIP ViT: TimeSformer's temporal attention,
//! X-ViT's key/value mixing and temporal aggregation head, VPT prompts, a Houlsby adapter and an
//! attentional pooling head.

use dfdx::prelude::*;

use crate::clip::vit::{residual, ResidualAttentionBlock, Tokens};
use crate::device::{KitDevice, Real};
use crate::ops::attention::MultiheadAttention;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::{self, gelu, linear, Grid, Linear, SeqAxis, Shift};
use crate::param::Param;

// ANCHOR: timesformer
/// TimeSformer's divided space-time attention adds, before each block's spatial attention, an
/// attention over the T frames of every patch position (CLS excluded):
/// `patches += temporal_fc(temporal_attn(temporal_norm1(patches)) over T)`.
#[derive(Clone, Debug)]
pub struct TemporalAttention<const C: usize, E: Dtype, D: Storage<E>> {
    pub temporal_norm1: LayerNorm<Const<C>, E, D>,
    pub temporal_attn: MultiheadAttention<C, E, D>,
    pub temporal_fc: Linear<Const<C>, Const<C>, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> TemporalAttention<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        let (x, tape) = x.split_tape();
        let p = ops::patch_tokens(x.clone().put_tape(tape)); // (B·T, H·W, C)
        let h = self.temporal_attn.forward(self.temporal_norm1.forward(p), SeqAxis::Frames { frames: grid.t });
        ops::add_to_patches(x, self.temporal_fc.forward(h))
    }
}
// ANCHOR_END: timesformer

// ANCHOR: xvit
/// X-ViT's space-time mixing: keys and values of frame t take a quarter of their channels from
/// frame t−1 and a quarter from t+1 (in the packed q;k;v buffer), then spatial attention as usual.
pub fn xvit_attention<const C: usize, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    blk: &ResidualAttentionBlock<C, E, D>,
    x: Tokens<C, E, D, T>,
    grid: Grid,
) -> Tokens<C, E, D, T> {
    let attn = &blk.attn;
    let qkv = linear(blk.ln_1.forward(x), &attn.in_proj_weight, Some(&attn.in_proj_bias)); // (B·T, L, 3C)
    let q4 = C / 4;
    let shifts = [
        Shift { start: C, len: q4, dt: -1 },
        Shift { start: C + q4, len: q4, dt: 1 },
        Shift { start: 2 * C, len: q4, dt: -1 },
        Shift { start: 2 * C + q4, len: q4, dt: 1 },
    ];
    let qkv = ops::temporal_shift(qkv, grid.t, &shifts, false);
    attn.out_proj.forward(ops::self_attention(qkv, attn.heads, SeqAxis::Tokens, Const::<C>))
}

/// X-ViT's temporal aggregation head: a learned token and position embedding in front of the T
/// per-frame CLS features, one transformer block over that sequence, the learned token out.
#[derive(Clone, Debug)]
pub struct TemporalHead<const C: usize, E: Dtype, D: Storage<E>> {
    pub cls: Param<(Const<C>,), E, D>,
    /// (1 + T, C)
    pub pos: Param<(usize, Const<C>), E, D>,
    pub block: ResidualAttentionBlock<C, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> TemporalHead<C, E, D> {
    /// (B·T, C) per-frame features → (B, C).
    pub fn forward<T: Tape<E, D>>(
        &self,
        frames: Tensor<(usize, Const<C>), E, D, T>,
        t: usize,
    ) -> Tensor<(usize, Const<C>), E, D, T> {
        let b = frames.shape().0 / t;
        let seq = frames.reshape_like(&(b, t, Const::<C>)); // (B, T, C): the frames of a video as one sequence
        let x = ops::embed_tokens(seq, &self.cls, &self.pos, None, true); // (B, 1 + T, C)
        let x = residual(x, |x| self.block.attention(x, SeqAxis::Tokens));
        let x = residual(x, |x| self.block.feed_forward(x));
        ops::cls_tokens(x)
    }
}
// ANCHOR_END: xvit

/// Attentional pooling over time: self-attention over the T per-frame features of a video, then
/// their mean (replaces the plain mean before the classifier).
pub fn attention_pool<const C: usize, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    mha: &MultiheadAttention<C, E, D>,
    frames: Tensor<(usize, Const<C>), E, D, T>,
    t: usize,
) -> Tensor<(usize, Const<C>), E, D, T> {
    let b = frames.shape().0 / t;
    let seq = frames.reshape_like(&(b, t, Const::<C>));
    let h = mha.forward(seq, SeqAxis::Tokens); // (B, T, C)
    ops::mean_over_frames(h.reshape_like(&(b * t, Const::<C>)), t)
}

/// A Houlsby bottleneck adapter: `x + fc2(GELU(fc1(x)))` on every token.
#[derive(Clone, Debug)]
pub struct HoulsbyAdapter<const C: usize, E: Dtype, D: Storage<E>> {
    pub fc1: Linear<Const<C>, usize, E, D>,
    pub fc2: Linear<usize, Const<C>, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> HoulsbyAdapter<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>) -> Tokens<C, E, D, T> {
        residual(x, |x| self.fc2.forward(gelu(self.fc1.forward(x))))
    }
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] TemporalAttention<C, E, D> {
    module "temporal_norm1" => temporal_norm1,
    module "temporal_attn" => temporal_attn,
    module "temporal_fc" => temporal_fc,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] TemporalHead<C, E, D> {
    param "cls" => cls,
    param "pos" => pos,
    module "block" => block,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] HoulsbyAdapter<C, E, D> {
    module "fc1" => fc1,
    module "fc2" => fc2,
});
