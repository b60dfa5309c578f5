//! Parameters and FLOPs, in the convention the papers' tables use.
//!
//! **FLOPs are fvcore counts**: one multiply-add is one "FLOP". Counted: linear layers (bias not
//! counted), convolutions including depthwise, the two attention matmuls QKᵀ and PV, LayerNorm at
//! 5 per element. Not counted: elementwise adds and multiplies, activations, softmax, means. The
//! tables' "GFLOPs" are per-view counts times the number of views (frames × clips × crops);
//! [`Breakdown::gflops`] gives that, [`Breakdown::true_gflops`] twice it (2 FLOPs per multiply-add).
//!
//! Each model states its own cost as a [`Breakdown`] computed from its config (no tensors built),
//! line by line; tests check every line's parameter count against the parameters of the built
//! module, walked by key ([`check_against_module`]).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::clip::{ClipCfg, MlpAct};
use crate::param::ParamInfo;

/// Frames per clip × temporal clips × spatial crops, e.g. 8×3×1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Views {
    pub frames: usize,
    pub clips: usize,
    pub crops: usize,
}

impl Views {
    pub const fn new(frames: usize, clips: usize, crops: usize) -> Self {
        Self { frames, clips, crops }
    }
    /// Views per video: clips × crops.
    pub fn views(&self) -> usize {
        self.clips * self.crops
    }
}

impl std::fmt::Display for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.frames, self.clips, self.crops)
    }
}

impl std::str::FromStr for Views {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p: Vec<usize> = s
            .split(['x', '×'])
            .map(|v| v.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("views `{s}` is not FxCxS"))?;
        match p[..] {
            [f, c, s] => Ok(Views::new(f, c, s)),
            _ => Err(format!("views `{s}` is not FxCxS")),
        }
    }
}

/// One line of a cost breakdown: a group of parameters (named by a key pattern, `*` standing for a
/// block index) and the multiply-adds of one view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub name: String,
    /// Key patterns of the parameters this line holds, e.g. `transformer.resblocks.*.attn.`.
    pub keys: Vec<String>,
    pub params: u64,
    pub trainable: u64,
    /// Multiply-adds of one view (T frames).
    pub macs: u64,
}

/// A model's parameters and multiply-adds per view, line by line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub model: String,
    pub frames: usize,
    pub lines: Vec<Line>,
}

impl Breakdown {
    pub fn new(model: impl Into<String>, frames: usize) -> Self {
        Self { model: model.into(), frames, lines: Vec::new() }
    }

    /// Adds a line. `trainable` is all or nothing for the line's parameters.
    pub fn line(&mut self, name: &str, keys: &[&str], params: u64, trainable: bool, macs: u64) -> &mut Self {
        self.lines.push(Line {
            name: name.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            params,
            trainable: if trainable { params } else { 0 },
            macs,
        });
        self
    }

    pub fn params(&self) -> u64 {
        self.lines.iter().map(|l| l.params).sum()
    }
    pub fn trainable(&self) -> u64 {
        self.lines.iter().map(|l| l.trainable).sum()
    }
    /// Multiply-adds of one view.
    pub fn macs_per_view(&self) -> u64 {
        self.lines.iter().map(|l| l.macs).sum()
    }
    /// The tables' GFLOPs: fvcore multiply-adds per view × views, in units of 10⁹.
    pub fn gflops(&self, views: Views) -> f64 {
        assert_eq!(
            views.frames, self.frames,
            "breakdown counted for {} frames, views say {}",
            self.frames, views.frames
        );
        self.macs_per_view() as f64 * views.views() as f64 / 1e9
    }
    /// True FLOPs (2 per multiply-add) × views, in units of 10⁹.
    pub fn true_gflops(&self, views: Views) -> f64 {
        2.0 * self.gflops(views)
    }

    /// A printable table: module | params | trainable | GMACs per view | share of MACs.
    pub fn table(&self) -> String {
        let total = self.macs_per_view().max(1) as f64;
        let w = self.lines.iter().map(|l| l.name.chars().count()).max().unwrap_or(0).max(6);
        let mut s = String::new();
        writeln!(s, "{} ({} frames per view)", self.model, self.frames).unwrap();
        writeln!(s, "{:<w$} {:>12} {:>12} {:>11} {:>7}", "module", "params", "trainable", "GMACs/view", "share")
            .unwrap();
        for l in &self.lines {
            writeln!(
                s,
                "{:<w$} {:>12} {:>12} {:>11.3} {:>6.2}%",
                l.name,
                group(l.params),
                group(l.trainable),
                l.macs as f64 / 1e9,
                100.0 * l.macs as f64 / total
            )
            .unwrap();
        }
        writeln!(
            s,
            "{:<w$} {:>12} {:>12} {:>11.3} {:>6.2}%",
            "total",
            group(self.params()),
            group(self.trainable()),
            self.macs_per_view() as f64 / 1e9,
            100.0
        )
        .unwrap();
        s
    }
}

/// 86_192_640 → "86,192,640".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether `key` falls under `pattern` (`*` matches one block index).
fn matches(pattern: &str, key: &str) -> bool {
    let mut k = key;
    let mut parts = pattern.split('*').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        if !first {
            let digits = k.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            k = &k[digits..];
        }
        first = false;
        if parts.peek().is_none() {
            // last part: a prefix (pattern ending in '.') or the exact rest
            return if part.ends_with('.') || part.is_empty() {
                k.starts_with(part)
            } else {
                k == part || k.starts_with(&format!("{part}."))
            };
        }
        match k.strip_prefix(part) {
            Some(rest) => k = rest,
            None => return false,
        }
    }
    true
}

/// Checks a breakdown against the parameters of the built module: every parameter falls under
/// exactly one line's patterns, and every line's total and trainable counts equal the module's.
/// Returns a description of every difference.
pub fn check_against_module(b: &Breakdown, params: &[ParamInfo]) -> Result<(), Vec<String>> {
    let mut seen = vec![(0u64, 0u64); b.lines.len()];
    let mut errors = Vec::new();
    for p in params {
        let hits: Vec<usize> =
            (0..b.lines.len()).filter(|&i| b.lines[i].keys.iter().any(|pat| matches(pat, &p.key))).collect();
        match hits[..] {
            [i] => {
                seen[i].0 += p.numel as u64;
                if p.trainable {
                    seen[i].1 += p.numel as u64;
                }
            }
            [] => errors.push(format!("parameter `{}` is on no line", p.key)),
            _ => errors.push(format!(
                "parameter `{}` is on several lines: {:?}",
                p.key,
                hits.iter().map(|&i| &b.lines[i].name).collect::<Vec<_>>()
            )),
        }
    }
    for (l, (n, t)) in b.lines.iter().zip(seen) {
        if l.params != n || l.trainable != t {
            errors.push(format!(
                "line `{}`: analytic {} params ({} trainable), module {} ({} trainable)",
                l.name, l.params, l.trainable, n, t
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// ---- fvcore unit costs -------------------------------------------------------------------------

// ANCHOR: fvcore
/// A linear layer on `rows` rows: rows·in·out (the bias is not counted).
pub const fn linear_macs(rows: u64, d_in: u64, d_out: u64) -> u64 {
    rows * d_in * d_out
}
/// LayerNorm with affine parameters: 5 per element.
pub const fn layer_norm_macs(rows: u64, d: u64) -> u64 {
    5 * rows * d
}
/// Self-attention matmuls QKᵀ and PV on `seqs` sequences of length `len`, width `d`: 2·seqs·len²·d.
pub const fn attention_macs(seqs: u64, len: u64, d: u64) -> u64 {
    2 * seqs * len * len * d
}
/// A depthwise convolution: one multiply-add per output element per kernel tap.
pub const fn dwconv_macs(out_elems: u64, taps: u64) -> u64 {
    out_elems * taps
}

/// Parameters of a LayerNorm of width d: γ and β.
pub const fn layer_norm_params(d: u64) -> u64 {
    2 * d
}
// ANCHOR_END: fvcore
/// Parameters of a linear layer with bias.
pub const fn linear_params(d_in: u64, d_out: u64) -> u64 {
    d_in * d_out + d_out
}

/// The frozen (or not) CLIP encoder's lines for `frames` frames per view: embedding, the blocks'
/// attention, MLP and LayerNorms, and `ln_pre`. `ln_post` and heads are the model's. `trainable`
/// marks the encoder's parameters trained (full fine-tuning) or frozen.
pub fn encoder_lines(b: &mut Breakdown, clip: &ClipCfg, frames: usize, trainable: bool, prefix: &str) {
    let k = |s: &str| format!("{prefix}{s}");
    let (c, l, p, t, n) =
        (clip.width as u64, clip.tokens() as u64, clip.patch_size as u64, frames as u64, clip.layers as u64);
    let patches = l - 1;
    let conv_params = c * 3 * p * p + if clip.patch_bias { c } else { 0 };
    b.line("conv1 (patch embedding)", &[&k("conv1.")], conv_params, trainable, t * linear_macs(patches, 3 * p * p, c));
    b.line(
        "class + positional embedding",
        &[&k("class_embedding"), &k("positional_embedding")],
        c + l * c,
        trainable,
        0,
    );
    if clip.ln_pre {
        b.line("ln_pre", &[&k("ln_pre.")], layer_norm_params(c), trainable, t * layer_norm_macs(l, c));
    }
    let attn_params = linear_params(c, 3 * c) + linear_params(c, c);
    let attn_macs = linear_macs(l, c, 3 * c) + attention_macs(1, l, c) + linear_macs(l, c, c);
    b.line(
        &format!("{n} × attention (in_proj, QKᵀ, PV, out_proj)"),
        &[&k("transformer.resblocks.*.attn.")],
        n * attn_params,
        trainable,
        n * t * attn_macs,
    );
    let f = clip.mlp_width() as u64;
    let act = match clip.mlp_act {
        MlpAct::QuickGelu => "QuickGELU",
        MlpAct::Gelu => "GELU",
    };
    b.line(
        &format!("{n} × MLP (c_fc, {act}, c_proj)"),
        &[&k("transformer.resblocks.*.mlp.")],
        n * (linear_params(c, f) + linear_params(f, c)),
        trainable,
        n * t * (linear_macs(l, c, f) + linear_macs(l, f, c)),
    );
    b.line(
        &format!("{n} × ln_1, ln_2"),
        &[&k("transformer.resblocks.*.ln_1."), &k("transformer.resblocks.*.ln_2.")],
        n * 2 * layer_norm_params(c),
        trainable,
        n * t * 2 * layer_norm_macs(l, c),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns_match_block_indices_and_prefixes() {
        assert!(matches("transformer.resblocks.*.attn.", "transformer.resblocks.11.attn.in_proj_weight"));
        assert!(!matches("transformer.resblocks.*.attn.", "transformer.resblocks.x.attn.in_proj_weight"));
        assert!(matches("class_embedding", "class_embedding"));
        assert!(!matches("class_embedding", "class_embedding_extra"));
        assert!(matches("conv1.", "conv1.weight"));
        assert!(matches("fc", "fc.weight"));
        assert!(!matches("fc", "fc_cls.weight"));
    }

    #[test]
    fn views_parse_and_print() {
        let v: Views = "16x3x1".parse().unwrap();
        assert_eq!((v.frames, v.views(), v.to_string()), (16, 3, "16x3x1".to_string()));
        assert!("16x3".parse::<Views>().is_err());
    }

    #[test]
    fn numbers_are_grouped_in_thousands() {
        assert_eq!(group(86_192_640), "86,192,640");
        assert_eq!(group(640), "640");
    }
}
