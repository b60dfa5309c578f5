//! The frozen image backbone: OpenAI CLIP's ViT visual encoder, applied frame by frame.
//!
//! - [`vit`]: the encoder (patch embedding as a matmul, CLIP's pre-LN blocks), generic over the
//!   block type so each paper plugs in its own block; the frame-wise baseline classifier.
//! - [`weights`]: loading safetensors checkpoints by official key, strictly, with clear errors.

pub mod vit;
pub mod weights;

use serde::{Deserialize, Serialize};

use crate::input::{ensure, ensure_count, ConfigError, Validate};

pub use vit::{Block, ClipBlock, FrameBaseline, Mlp, ResidualAttentionBlock, Transformer, Video, VisionTransformer};

/// The activation inside the transformer MLP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MlpAct {
    /// CLIP's `x·σ(1.702x)`.
    #[default]
    QuickGelu,
    /// Exact GELU (ImageNet-21K ViTs).
    Gelu,
}

/// Shape of a ViT image encoder. Presets: [`ClipCfg::vit_b16`], [`ClipCfg::vit_l14`],
/// [`ClipCfg::tiny`]; [`ClipCfg::in21k_vit_b16`] for the ImageNet-21K rows of the tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipCfg {
    pub input_resolution: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// CLIP has a LayerNorm before the transformer (`ln_pre`); ImageNet ViTs do not.
    #[serde(default = "yes")]
    pub ln_pre: bool,
    /// CLIP's patch embedding `conv1` has no bias; timm's ImageNet ViT `patch_embed.proj` has one.
    #[serde(default)]
    pub patch_bias: bool,
    #[serde(default)]
    pub mlp_act: MlpAct,
}

fn yes() -> bool {
    true
}

impl ClipCfg {
    /// OpenAI CLIP ViT-B/16 at 224 px: width 768, 12 layers, 12 heads, 14×14 patches.
    pub fn vit_b16() -> Self {
        Self {
            input_resolution: 224,
            patch_size: 16,
            width: 768,
            layers: 12,
            heads: 12,
            ln_pre: true,
            patch_bias: false,
            mlp_act: MlpAct::QuickGelu,
        }
    }

    /// OpenAI CLIP ViT-L/14 at 224 px: width 1024, 24 layers, 16 heads, 16×16 patches.
    pub fn vit_l14() -> Self {
        Self {
            input_resolution: 224,
            patch_size: 14,
            width: 1024,
            layers: 24,
            heads: 16,
            ln_pre: true,
            patch_bias: false,
            mlp_act: MlpAct::QuickGelu,
        }
    }

    /// The tiny backbone of the parity fixtures (`fixtures/parity`): 32 px, patch 8 (4×4 grid), width 64, 2 layers, 4 heads.
    pub fn tiny() -> Self {
        Self {
            input_resolution: 32,
            patch_size: 8,
            width: 64,
            layers: 2,
            heads: 4,
            ln_pre: true,
            patch_bias: false,
            mlp_act: MlpAct::QuickGelu,
        }
    }

    /// An ImageNet-21K ViT-B/16 (timm `vit_base_patch16_224_in21k`): the same transformer, with a
    /// patch-embedding bias, no `ln_pre`, exact GELU. Used for the IN-21K rows of the tables.
    pub fn in21k_vit_b16() -> Self {
        Self { ln_pre: false, patch_bias: true, mlp_act: MlpAct::Gelu, ..Self::vit_b16() }
    }

    /// Patches per side: input_resolution / patch_size.
    pub fn grid(&self) -> usize {
        self.input_resolution / self.patch_size
    }

    /// Tokens per frame: 1 (CLS) + grid².
    pub fn tokens(&self) -> usize {
        1 + self.grid() * self.grid()
    }

    /// MLP hidden width: 4 × width.
    pub fn mlp_width(&self) -> usize {
        4 * self.width
    }

    /// A short name for tables: "ViT-B/16", "ViT-L/14", or the raw shape.
    pub fn name(&self) -> String {
        match (self.width, self.layers, self.patch_size) {
            (768, 12, 16) => "ViT-B/16".into(),
            (1024, 24, 14) => "ViT-L/14".into(),
            (w, l, p) => format!("ViT(w{w},l{l},p{p})"),
        }
    }

    /// The most patches per side the kit builds (4097 tokens per frame: 1024 px at patch 16).
    pub const MAX_GRID: usize = 64;
}

impl Validate for ClipCfg {
    /// Checks the arithmetic the encoder relies on (the patch divides the resolution, the heads
    /// divide the width) and sane sizes; the error names the field.
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_count(self.patch_size, "patch_size", 1 << 12)?;
        ensure_count(self.input_resolution, "input_resolution", Self::MAX_GRID * self.patch_size)?;
        ensure(self.input_resolution.is_multiple_of(self.patch_size), "input_resolution", || {
            format!(
                "{} is not a multiple of patch_size {} (the frames are cut into whole patches)",
                self.input_resolution, self.patch_size
            )
        })?;
        ensure_count(self.width, "width", 1 << 14)?;
        ensure_count(self.heads, "heads", self.width)?;
        ensure(self.width.is_multiple_of(self.heads), "heads", || {
            format!(
                "width {} is not a multiple of heads {} (each head takes width / heads channels)",
                self.width, self.heads
            )
        })?;
        ensure_count(self.layers, "layers", 256)
    }
}

/// Which blocks of the encoder carry a method's additions (adapters, temporal attention …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Blocks {
    /// The last n blocks: the official `adapter_layers` (`i >= layers - adapter_layers`).
    Last(usize),
    /// These blocks (0-based), for Table 5b's groups.
    List(Vec<usize>),
}

impl Blocks {
    pub fn contains(&self, i: usize, layers: usize) -> bool {
        match self {
            Blocks::Last(n) => i + n >= layers,
            Blocks::List(v) => v.contains(&i),
        }
    }

    /// Every block named exists in a `layers`-block encoder, once: `Last(5)` or `List([7])` on a
    /// 2-layer encoder is an error, not a model without additions. The error names `field`.
    pub fn validate(&self, layers: usize, field: &str) -> Result<(), ConfigError> {
        match self {
            Blocks::Last(n) => ensure(*n <= layers, field, || {
                format!("Last({n}) asks for the last {n} blocks, but the encoder has {layers} (`clip.layers`)")
            }),
            Blocks::List(v) => {
                if let Some(i) = v.iter().find(|i| **i >= layers) {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "List names block {i}, but the encoder has blocks 0 to {} (`clip.layers` = {layers})",
                            layers.saturating_sub(1)
                        ),
                    ));
                }
                match v.iter().enumerate().find(|(j, i)| v[..*j].contains(i)) {
                    Some((_, i)) => Err(ConfigError::new(field, format!("List names block {i} twice"))),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Runs `$body` with the const width `$C` equal to the runtime `$width`, for the widths the kit
/// compiles in (64 tiny, 768 B/16, 1024 L/14); an `Err` names any other width.
#[macro_export]
macro_rules! with_width {
    ($width:expr, |$C:ident| $body:expr) => {{
        match $width {
            64 => {
                const $C: usize = 64;
                Ok($body)
            }
            768 => {
                const $C: usize = 768;
                Ok($body)
            }
            1024 => {
                const $C: usize = 1024;
                Ok($body)
            }
            w => Err(anyhow::anyhow!("width {w} is not compiled in (the kit instantiates widths 64, 768 and 1024)")),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ViT-B/16 at 224: 224/16 = 14 patches per side, 1 + 14² = 197 tokens; ViT-L/14: 1 + 16² = 257.
    #[test]
    fn patch_embedding_makes_197_tokens_per_frame() {
        assert_eq!(ClipCfg::vit_b16().tokens(), 197);
        assert_eq!(ClipCfg::vit_l14().tokens(), 257);
        assert_eq!(ClipCfg::tiny().tokens(), 17);
    }
}
