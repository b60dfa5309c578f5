//! Data-parallel training over NCCL, on paper: what the papers' 8-GPU recipes would exchange per
//! step if the kit ran them on 8 GPUs (not implemented; no GPU was lent to the project).
//!
//! In data-parallel training every GPU holds the whole model, runs the forward and backward pass on
//! its share of the batch, and the GPUs then sum their gradients (an NCCL all-reduce; cudarc 0.9 has
//! bindings, feature `nccl`) so that every replica applies the same AdamW update. With a frozen
//! backbone only the **trainable** parameters have gradients (`ops::frozen_linear` never makes one
//! for a frozen weight), so only those are all-reduced: the adapters, and AIM's temporal embedding,
//! `ln_post` and head. The frozen encoder is loaded once per GPU and never exchanged.
//!
//! Cost of a ring all-reduce of S bytes over N GPUs: each GPU sends (and receives)
//! 2·(N − 1)/N · S bytes; at a bus bandwidth of B bytes/s that takes 2·(N − 1)/N · S / B seconds
//! (NCCL's "bus bandwidth" convention). Gradients in f32: S = 4 bytes × trainable parameters. The
//! bandwidths below are assumptions, round numbers for a PCIe-class and an NVLink-class link.

use std::fmt::Write as _;

use crate::registry::{presets, ModelCfg};

/// The presets of the papers' 8-GPU recipes (ViT-B/16 and ViT-L/14, Kinetics-400), and the frame-wise
/// baselines for contrast (fully fine-tuned, every parameter would be all-reduced).
pub const PRESETS: [&str; 8] = [
    "st_adapter_vit_b16_12x384",
    "aim_vitclip_base_k400",
    "mst_adapter_vit_b16_k400",
    "clip_baseline_vit_b16",
    "st_adapter_vit_l14_24x384",
    "aim_vitclip_large_k400",
    "mst_adapter_vit_l14_k400",
    "clip_baseline_vit_l14",
];

/// Assumed bus bandwidths (GB/s): a PCIe-class and an NVLink-class link.
pub const BANDWIDTHS_GBPS: [f64; 2] = [10.0, 100.0];

// ANCHOR: ring
/// Bytes each GPU sends per step to all-reduce `params` f32 gradients over `gpus` GPUs (ring).
pub fn ring_bytes(params: u64, gpus: usize) -> f64 {
    2.0 * (gpus as f64 - 1.0) / gpus as f64 * 4.0 * params as f64
}
// ANCHOR_END: ring

/// The all-reduced parameters of a preset: its trainable ones; every parameter for the baselines
/// (full fine-tuning).
fn reduced(name: &str, cfg: &ModelCfg) -> u64 {
    let b = cfg.breakdown();
    if name.starts_with("clip_baseline") {
        b.params()
    } else {
        b.trainable()
    }
}

/// The table of the book's data-parallel section: per preset, the parameters all-reduced, the bytes
/// each GPU sends per step, and the time at each assumed bandwidth.
pub fn table(gpus: usize) -> String {
    let all = presets();
    let mut s = format!(
        "{gpus} GPUs, ring all-reduce of f32 gradients, per optimizer step\n\n\
         | preset | all-reduced params | MB sent per GPU |{}\n|---|---:|---:|{}\n",
        BANDWIDTHS_GBPS.iter().map(|b| format!(" ms at {b} GB/s |")).collect::<String>(),
        BANDWIDTHS_GBPS.iter().map(|_| "---:|").collect::<String>()
    );
    for name in PRESETS {
        let cfg = &all.iter().find(|(n, _)| n == name).expect("a preset of the kit").1;
        let p = reduced(name, cfg);
        let bytes = ring_bytes(p, gpus);
        let full = if name.starts_with("clip_baseline") { " (full fine-tuning)" } else { "" };
        write!(s, "| {name}{full} | {} | {:.1} |", crate::count::group(p), bytes / 1e6).unwrap();
        for b in BANDWIDTHS_GBPS {
            write!(s, " {:.2} |", bytes / (b * 1e9) * 1e3).unwrap();
        }
        s.push('\n');
    }
    s
}
