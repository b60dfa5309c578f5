//! The competitors of ST-Adapter's benchmark (ST-Adapter Table 1) on ViT-B/16, CLIP or
//! ImageNet-21K: three architectures × the fine-tuning protocols the table pairs them with.
//!
//! | architecture | what it adds to the frame-wise ViT |
//! |---|---|
//! | SA (space-only TimeSformer) | nothing: per-frame CLS averaged over T |
//! | SA+TA (TimeSformer) | divided space-time attention: a temporal attention over the frames of every patch position in each block (`temporal_norm1`, `temporal_attn`, `temporal_fc`), a `time_embed` on the patch tokens, one CLS per video |
//! | SA+TS (X-ViT) | keys and values mix channels from the neighbouring frames; a temporal aggregation head |
//!
//! | protocol | trainable set |
//! |---|---|
//! | full fine-tuning | everything |
//! | partial fine-tuning | the last block (with its temporal attention for SA+TA, where only the last block has one), `time_embed`, `fc` |
//! | temporal fine-tuning (SA+TA) | every block's temporal attention, `time_embed`, `fc` |
//! | prompt tuning (VPT-deep) | N learned prompt tokens per block, `fc` |
//! | attentional pooling | an attention over the T frame features replacing the mean, `fc` |
//! | linear probe | `fc` |
//! | Adapter (Houlsby) | one bottleneck adapter (GELU, no conv) per block before the MLP, `fc` |
//!
//! The ST-Adapter paper does not release these baselines' code. Each part follows its original
//! design (TimeSformer, X-ViT, VPT, Houlsby et al.) as far as the ST-Adapter paper describes it;
//! where the published parameter count implies another variant, the reproduction of Table 1 says
//! so (see `fixtures/published/st_adapter/table1_benchmark.ron`, notes).

pub mod parts;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::vit::{
    clip_block, head, maybe, residual, trains, Block, ResidualAttentionBlock, Tokens, Video, VisionTransformer,
};
use crate::clip::ClipCfg;
use crate::context::Ctx;
use crate::count::{
    attention_macs, encoder_lines, layer_norm_macs, layer_norm_params, linear_macs, linear_params, Breakdown,
};
use crate::device::{KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::input::{ensure, ensure_count, ConfigError, Validate};
use crate::ops::attention::MultiheadAttention;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::{self, Grid, Linear, SeqAxis};
use crate::param::{set_trainable, Param};
use crate::registry::validate_head;
use parts::{attention_pool, xvit_attention, HoulsbyAdapter, TemporalAttention, TemporalHead};

/// The video architecture (ST-Adapter Table 1, "Architecture").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// Space-only: frame-wise ViT, mean over T.
    Sa,
    /// TimeSformer's divided space-time attention.
    SaTa,
    /// X-ViT's space-time mixing (temporal shift of keys and values).
    SaTs,
}

/// The fine-tuning protocol (ST-Adapter Table 1, "Fine-tuning Methods").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Tuning {
    Full,
    Partial,
    Temporal,
    Prompt { tokens: usize },
    AttentionalPooling,
    LinearProbe,
    Adapter { width: usize },
}

impl Tuning {
    /// The protocol's name in tables and claims: "partial fine-tuning", "prompt tuning (8 tokens)"
    /// (VPT-deep: that many tokens in every block).
    pub fn name(&self) -> String {
        match self {
            Tuning::Full => "full fine-tuning".to_string(),
            Tuning::Partial => "partial fine-tuning".to_string(),
            Tuning::Temporal => "temporal fine-tuning".to_string(),
            Tuning::Prompt { tokens } => format!("prompt tuning ({tokens} tokens)"),
            Tuning::AttentionalPooling => "attentional pooling".to_string(),
            Tuning::LinearProbe => "linear probe".to_string(),
            Tuning::Adapter { width } => format!("Houlsby adapter (width {width})"),
        }
    }
}

/// A baseline of the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkCfg {
    pub clip: ClipCfg,
    pub arch: Arch,
    pub tuning: Tuning,
    pub num_classes: usize,
    pub frames: usize,
}

impl BenchmarkCfg {
    /// A ViT-B/16 (CLIP) baseline with 400 classes and 8 frames.
    pub fn clip_b16(arch: Arch, tuning: Tuning) -> Self {
        Self { clip: ClipCfg::vit_b16(), arch, tuning, num_classes: 400, frames: 8 }
    }

    /// The combinations ST-Adapter Table 1 prints.
    pub fn table1_rows() -> Vec<(Arch, Tuning)> {
        use Arch::*;
        use Tuning::*;
        vec![
            (Sa, Full),
            (SaTa, Full),
            (SaTs, Full),
            (Sa, Partial),
            (SaTa, Partial),
            (SaTa, Temporal),
            (Sa, Prompt { tokens: 100 }),
            (Sa, AttentionalPooling),
            (Sa, LinearProbe),
            (Sa, Adapter { width: 384 }),
        ]
    }

    /// A short name: "SA+TA, partial fine-tuning".
    pub fn name(&self) -> String {
        let a = match self.arch {
            Arch::Sa => "SA",
            Arch::SaTa => "SA+TA",
            Arch::SaTs => "SA+TS",
        };
        format!("{a}, {}", self.tuning.name())
    }

    /// Which blocks carry TimeSformer's temporal attention: all, or (partial fine-tuning) the last.
    fn has_temporal(&self, i: usize) -> bool {
        self.arch == Arch::SaTa && (self.tuning != Tuning::Partial || i + 1 == self.clip.layers)
    }

    /// Whether the key belongs to the trainable set of this protocol (see the module table).
    pub fn is_trainable(&self, key: &str) -> bool {
        let last = format!("transformer.resblocks.{}.", self.clip.layers - 1);
        let head = key.starts_with("fc.");
        match self.tuning {
            Tuning::Full => true,
            Tuning::Partial => head || key.starts_with(&last) || key == "temporal_embedding",
            Tuning::Temporal => head || key.contains(".temporal_") || key == "temporal_embedding",
            Tuning::Prompt { .. } => head || key.ends_with(".prompt"),
            Tuning::AttentionalPooling => head || key.starts_with("attn_pool."),
            Tuning::LinearProbe => head,
            Tuning::Adapter { .. } => head || key.contains(".adapter."),
        }
    }

    /// Whether the protocol applies to the architecture, as in ST-Adapter Table 1.
    fn pairing_ok(&self) -> bool {
        matches!(
            (self.arch, self.tuning),
            (_, Tuning::Full)
                | (Arch::Sa | Arch::SaTa, Tuning::Partial)
                | (Arch::SaTa, Tuning::Temporal)
                | (
                    Arch::Sa,
                    Tuning::Prompt { .. } | Tuning::AttentionalPooling | Tuning::LinearProbe | Tuning::Adapter { .. },
                )
        )
    }
}

impl Validate for BenchmarkCfg {
    /// The encoder, the head, and that the protocol applies to the architecture, as in ST-Adapter
    /// Table 1.
    fn validate(&self) -> Result<(), ConfigError> {
        self.clip.validate().map_err(|e| e.within("clip"))?;
        validate_head(self.num_classes, self.frames)?;
        match self.tuning {
            Tuning::Prompt { tokens } => ensure_count(tokens, "tuning.Prompt.tokens", 1024)?,
            Tuning::Adapter { width } => ensure_count(width, "tuning.Adapter.width", 1 << 14)?,
            _ => {}
        }
        ensure(self.pairing_ok(), "tuning", || {
            format!("{:?} does not apply to {:?} (ST-Adapter Table 1 pairs them differently)", self.tuning, self.arch)
        })
    }
}

/// A CLIP block with the baseline's additions.
#[derive(Clone, Debug)]
pub struct BenchBlock<const C: usize, E: Dtype, D: Storage<E>> {
    pub clip: ResidualAttentionBlock<C, E, D>,
    pub temporal: Option<TemporalAttention<C, E, D>>,
    /// X-ViT's key/value mixing in the spatial attention.
    pub mix_kv: bool,
    /// VPT-deep prompts of this block (N, C), after CLS.
    pub prompt: Option<Param<(usize, Const<C>), E, D>>,
    /// How many prompt tokens the incoming stream carries (the previous block's).
    pub prompts_in: usize,
    pub adapter: Option<HoulsbyAdapter<C, E, D>>,
}

/// The block's five stages, the absent parts being identities: VPT prompts set, TimeSformer's
/// temporal attention, the spatial attention residual (X-ViT's mixed keys and values; TimeSformer's
/// averaged CLS), a Houlsby adapter, the MLP residual.
impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for BenchBlock<C, E, D> {
    fn stages(&self) -> usize {
        5
    }

    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        match i {
            0 => maybe(self.prompt.as_ref(), x, |p, x| ops::set_prompts(x, self.prompts_in, p)),
            1 => maybe(self.temporal.as_ref(), x, |ta, x| ta.forward(x, grid)),
            2 if self.mix_kv => residual(x, |x| xvit_attention(&self.clip, x, grid)),
            // TimeSformer's CLS is one per video: the frames' CLS residuals are averaged
            2 if self.temporal.is_some() => {
                residual(x, |x| ops::average_cls(self.clip.attention(x, SeqAxis::Tokens), grid.t))
            }
            2 => self.clip.stage(0, x, grid, ctx),
            3 => maybe(self.adapter.as_ref(), x, |a, x| a.forward(x)),
            _ => self.clip.stage(1, x, grid, ctx),
        }
    }

    fn stage_trains(&self, i: usize) -> bool {
        match i {
            0 => trains(&self.prompt),
            1 => trains(&self.temporal),
            2 => self.clip.stage_trains(0),
            3 => trains(&self.adapter),
            _ => self.clip.stage_trains(1),
        }
    }
}

/// A benchmark model: the encoder with [`BenchBlock`]s and its head.
#[derive(Clone, Debug)]
pub struct Benchmark<const C: usize, E: Dtype, D: Storage<E>> {
    pub backbone: VisionTransformer<C, BenchBlock<C, E, D>, E, D>,
    pub temporal_head: Option<TemporalHead<C, E, D>>,
    pub attn_pool: Option<MultiheadAttention<C, E, D>>,
    pub fc: Linear<Const<C>, usize, E, D>,
    pub dropout: f64,
}

impl<const C: usize, E: Real, D: KitDevice<E>> Benchmark<C, E, D> {
    /// Logits (B, classes).
    pub fn forward<T: Tape<E, D>>(&self, video: &Video<E, D>, ctx: &mut Ctx) -> Tensor<(usize, usize), E, D, T> {
        let (x, grid) = self.backbone.forward::<T>(video, ctx);
        let cls = ops::cls_tokens(x); // (B·T, C)
        let x = match (&self.temporal_head, &self.attn_pool) {
            (Some(h), _) => h.forward(self.backbone.ln_post.forward(cls), grid.t),
            (_, Some(pool)) => attention_pool(pool, self.backbone.ln_post.forward(cls), grid.t),
            _ => self.backbone.ln_post.forward(ops::mean_over_frames(cls, grid.t)),
        };
        ctx.tap("pre_logits", &x);
        let x = ops::dropout(x, self.dropout, ctx);
        let logits = self.fc.forward(x);
        ctx.tap("logits", &logits);
        logits
    }
}

impl BenchmarkCfg {
    /// Builds the model with the protocol's trainable set.
    /// An invalid config is an error naming the field.
    pub fn build<const C: usize, E: Real, D: KitDevice<E>>(
        &self,
        dev: &D,
        init: &mut Init,
    ) -> Result<Benchmark<C, E, D>, ConfigError> {
        self.validate()?;
        let clip = &self.clip;
        let prompts = match self.tuning {
            Tuning::Prompt { tokens } => tokens,
            _ => 0,
        };
        let time_embed = (self.arch == Arch::SaTa).then_some(self.frames);
        let mut backbone = VisionTransformer::build(clip, dev, init, time_embed, |i, init| {
            let ln = || LayerNorm {
                weight: constant(dev, (Const::<C>,), 1.0, false),
                bias: constant(dev, (Const::<C>,), 0.0, false),
                eps: 1e-5,
            };
            let temporal = self.has_temporal(i).then(|| TemporalAttention {
                temporal_norm1: ln(),
                temporal_attn: mha(dev, init, clip.heads),
                // TimeSformer starts temporal_fc at zero: the block starts as the image block
                temporal_fc: Linear {
                    weight: constant(dev, (Const::<C>, Const::<C>), 0.0, false),
                    bias: Some(constant(dev, (Const::<C>,), 0.0, false)),
                },
            });
            let adapter = matches!(self.tuning, Tuning::Adapter { .. }).then(|| {
                let Tuning::Adapter { width } = self.tuning else { unreachable!() };
                HoulsbyAdapter {
                    fc1: Linear {
                        weight: param(dev, (width, Const::<C>), init.torch_linear(width, C), false),
                        bias: Some(constant(dev, (width,), 0.0, false)),
                    },
                    fc2: Linear {
                        weight: constant(dev, (Const::<C>, width), 0.0, false),
                        bias: Some(constant(dev, (Const::<C>,), 0.0, false)),
                    },
                }
            });
            BenchBlock {
                clip: clip_block(clip, dev, init),
                temporal,
                mix_kv: self.arch == Arch::SaTs,
                prompt: (prompts > 0).then(|| {
                    param(
                        dev,
                        (prompts, Const::<C>),
                        init.uniform(prompts * C, (6.0 / (prompts + C) as f64).sqrt()),
                        false,
                    )
                }),
                prompts_in: if i == 0 { 0 } else { prompts },
                adapter,
            }
        })?;
        backbone.temporal_on_cls = false;
        let temporal_head = (self.arch == Arch::SaTs).then(|| TemporalHead {
            cls: param(dev, (Const::<C>,), init.normal(C, 0.02), false),
            pos: param(dev, (1 + self.frames, Const::<C>), init.normal((1 + self.frames) * C, 0.02), false),
            block: clip_block(&ClipCfg { mlp_act: crate::clip::MlpAct::Gelu, ..clip.clone() }, dev, init),
        });
        let attn_pool = (self.tuning == Tuning::AttentionalPooling).then(|| mha(dev, init, clip.heads));
        let mut m =
            Benchmark { backbone, temporal_head, attn_pool, fc: head(dev, init, self.num_classes, 0.02), dropout: 0.5 };
        set_trainable(&mut m, |k| self.is_trainable(k));
        Ok(m)
    }

    /// Parameters and multiply-adds per view, line by line.
    pub fn breakdown(&self) -> Breakdown {
        let (c, t, l, n) =
            (self.clip.width as u64, self.frames as u64, self.clip.tokens() as u64, self.clip.layers as u64);
        let hw = l - 1;
        let mut b = Breakdown::new(format!("{} {}", self.clip.name(), self.name()), self.frames);
        let full = self.tuning == Tuning::Full;
        // the encoder, split so that partial fine-tuning's last block is its own line
        let partial = self.tuning == Tuning::Partial;
        let mut enc = Breakdown::new("", self.frames);
        encoder_lines(&mut enc, &ClipCfg { layers: 1, ..self.clip.clone() }, self.frames, false, "");
        let block_params: u64 =
            enc.lines.iter().filter(|l| l.keys.iter().any(|k| k.starts_with("transformer."))).map(|l| l.params).sum();
        let block_macs: u64 =
            enc.lines.iter().filter(|l| l.keys.iter().any(|k| k.starts_with("transformer."))).map(|l| l.macs).sum();
        for line in enc.lines.iter().filter(|l| !l.keys.iter().any(|k| k.starts_with("transformer."))) {
            let keys: Vec<&str> = line.keys.iter().map(|k| k.as_str()).collect();
            b.line(&line.name, &keys, line.params, full, line.macs);
        }
        let frozen_blocks = if partial { n - 1 } else { n };
        b.line(
            &format!("{frozen_blocks} × CLIP block"),
            &[
                "transformer.resblocks.*.attn.",
                "transformer.resblocks.*.ln_1.",
                "transformer.resblocks.*.mlp.",
                "transformer.resblocks.*.ln_2.",
            ],
            frozen_blocks * block_params,
            full,
            frozen_blocks * block_macs,
        );
        if partial {
            // the last block's CLIP part lines up under its own key pattern
            let last = n - 1;
            b.lines.last_mut().unwrap().keys = (0..last)
                .flat_map(|i| ["attn.", "ln_1.", "mlp.", "ln_2."].map(|p| format!("transformer.resblocks.{i}.{p}")))
                .collect();
            b.line(
                "last CLIP block (trained)",
                &[
                    &format!("transformer.resblocks.{last}.attn."),
                    &format!("transformer.resblocks.{last}.ln_1."),
                    &format!("transformer.resblocks.{last}.mlp."),
                    &format!("transformer.resblocks.{last}.ln_2."),
                ],
                block_params,
                true,
                block_macs,
            );
        }
        if self.arch == Arch::SaTa {
            let blocks = (0..self.clip.layers).filter(|&i| self.has_temporal(i)).count() as u64;
            let ta_params = layer_norm_params(c) + linear_params(c, 3 * c) + linear_params(c, c) + linear_params(c, c);
            // per frame: LN and projections on the H·W patches; attention over T: 2·T·H·W·C
            let ta_macs = layer_norm_macs(hw, c)
                + linear_macs(hw, c, 3 * c)
                + 2 * t * hw * c
                + linear_macs(hw, c, c)
                + linear_macs(hw, c, c);
            b.line(
                &format!("{blocks} × temporal attention (TimeSformer)"),
                &[
                    "transformer.resblocks.*.temporal_norm1.",
                    "transformer.resblocks.*.temporal_attn.",
                    "transformer.resblocks.*.temporal_fc.",
                ],
                blocks * ta_params,
                true,
                blocks * t * ta_macs,
            );
            b.line("time_embed (patch tokens)", &["temporal_embedding"], t * c, true, 0);
        }
        if let Tuning::Prompt { tokens } = self.tuning {
            let p = tokens as u64;
            // every block sees L + N tokens: the extra cost of N tokens through attention and MLP
            let extra = n
                * t
                * (linear_macs(p, c, 3 * c) + attention_macs(1, l + p, c) - attention_macs(1, l, c)
                    + linear_macs(p, c, c)
                    + 2 * linear_macs(p, c, 4 * c)
                    + 2 * layer_norm_macs(p, c));
            b.line(
                &format!("{n} × {p} prompt tokens (VPT-deep)"),
                &["transformer.resblocks.*.prompt"],
                n * p * c,
                true,
                extra,
            );
        }
        if let Tuning::Adapter { width } = self.tuning {
            let w = width as u64;
            b.line(
                &format!("{n} × Houlsby adapter (width {w})"),
                &["transformer.resblocks.*.adapter."],
                n * (linear_params(c, w) + linear_params(w, c)),
                true,
                n * t * 2 * linear_macs(l, c, w),
            );
        }
        match (self.arch, self.tuning) {
            (Arch::SaTs, _) => {
                b.line(
                    "ln_post (every frame's CLS)",
                    &["ln_post."],
                    layer_norm_params(c),
                    full,
                    t * layer_norm_macs(1, c),
                );
                let s = 1 + t;
                let blk = linear_params(c, 3 * c)
                    + linear_params(c, c)
                    + linear_params(c, 4 * c)
                    + linear_params(4 * c, c)
                    + 2 * layer_norm_params(c);
                let blk_macs = linear_macs(s, c, 3 * c)
                    + attention_macs(1, s, c)
                    + linear_macs(s, c, c)
                    + 2 * linear_macs(s, c, 4 * c)
                    + 2 * layer_norm_macs(s, c);
                b.line("temporal aggregation head (X-ViT)", &["temporal_head."], c + s * c + blk, true, blk_macs);
            }
            (_, Tuning::AttentionalPooling) => {
                b.line(
                    "ln_post (every frame's CLS)",
                    &["ln_post."],
                    layer_norm_params(c),
                    false,
                    t * layer_norm_macs(1, c),
                );
                b.line(
                    "attentional pooling over T",
                    &["attn_pool."],
                    linear_params(c, 3 * c) + linear_params(c, c),
                    true,
                    linear_macs(t, c, 3 * c) + attention_macs(1, t, c) + linear_macs(t, c, c),
                );
            }
            _ => {
                b.line(
                    "ln_post (after the mean over T)",
                    &["ln_post."],
                    layer_norm_params(c),
                    full,
                    layer_norm_macs(1, c),
                );
            }
        }
        b.line(
            "fc (classifier)",
            &["fc"],
            linear_params(c, self.num_classes as u64),
            true,
            linear_macs(1, c, self.num_classes as u64),
        );
        b
    }
}

fn mha<const C: usize, E: Real, D: KitDevice<E>>(
    dev: &D,
    init: &mut Init,
    heads: usize,
) -> MultiheadAttention<C, E, D> {
    MultiheadAttention {
        in_proj_weight: param(
            dev,
            (3 * C, Const::<C>),
            init.uniform(3 * C * C, (6.0 / (4.0 * C as f64)).sqrt()),
            false,
        ),
        in_proj_bias: constant(dev, (3 * C,), 0.0, false),
        out_proj: Linear {
            weight: param(dev, (Const::<C>, Const::<C>), init.torch_linear(C, C), false),
            bias: Some(constant(dev, (Const::<C>,), 0.0, false)),
        },
        heads,
    }
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] BenchBlock<C, E, D> {
    module "" => clip,
    module "" => temporal,
    module "prompt" => prompt,
    module "adapter" => adapter,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] Benchmark<C, E, D> {
    module "" => backbone,
    module "temporal_head" => temporal_head,
    module "attn_pool" => attn_pool,
    module "fc" => fc,
});
