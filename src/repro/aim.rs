//! AIM's tables (Yang et al., ICLR 2023): which rows the kit computes, and how.

use super::engine::{row_views, Computed, Ours, Quantity, Spec};
use super::published::Row;
use crate::aim::AimCfg;
use crate::baselines::{Arch, BenchmarkCfg, Tuning};
use crate::clip::Blocks;
use crate::clip::ClipCfg;
use crate::count::Views;
use crate::registry::ModelCfg;

fn computed(published: Option<&'static str>, label: &'static str, quantity: Quantity) -> Computed {
    Computed { published, label, quantity }
}

fn aim(cfg: AimCfg, views: Views) -> Option<Ours> {
    Some(Ours { model: ModelCfg::Aim(AimCfg { frames: views.frames, ..cfg }), views })
}

fn bench(clip: ClipCfg, arch: Arch, tuning: Tuning, classes: usize, views: Views) -> Option<Ours> {
    Some(Ours {
        model: ModelCfg::Benchmark(BenchmarkCfg { clip, arch, tuning, num_classes: classes, frames: views.frames }),
        views,
    })
}

const K400: Views = Views::new(8, 3, 1);

/// Table 1: the components, ImageNet-21K ViT-B/16 on SSv2 (174 classes, 8×1×3).
pub fn table1_components() -> Spec {
    Spec {
        binary: "aim_table1_components",
        paper: "aim",
        file: "table1_components",
        computed: vec![computed(Some("params"), "Param (M)", Quantity::TotalParams), computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable), computed(None, "GFLOPs", Quantity::Gflops)],
        results: vec!["top1", "top5"],
        published_only: vec![],
        ours: |r: &Row| {
            let v = Views::new(8, 1, 3);
            let in21k = ClipCfg::in21k_vit_b16();
            let ssv2 = AimCfg { clip: in21k.clone(), ..AimCfg::vitclip_base_sthv2() };
            match r.id.as_str() {
                "frozen_space_only" => bench(in21k, Arch::Sa, Tuning::LinearProbe, 174, v),
                "finetuned_space_only" => bench(in21k, Arch::Sa, Tuning::Full, 174, v),
                "finetuned_space_time" => bench(in21k, Arch::SaTa, Tuning::Full, 174, v),
                "spatial_adaptation" => aim(AimCfg { temporal: false, joint: false, ..ssv2 }, v),
                "temporal_adaptation" => aim(AimCfg { joint: false, ..ssv2 }, v),
                "joint_adaptation_aim" => aim(ssv2, v),
                "aim_clip" => aim(AimCfg::vitclip_base_sthv2(), v),
                _ => None,
            }
        },
        remarks: vec!["The adaptation rows use SSv2's setting (num_tadapter = 2: temporal adaptation adds two adapters per block); the IN-21K ViT-B/16 has a patch-embedding bias and no ln_pre.".into()],
    }
}

fn sota(binary: &'static str, file: &'static str, ours: fn(&Row) -> Option<Ours>) -> Spec {
    Spec {
        binary,
        paper: "aim",
        file,
        computed: vec![
            computed(Some("gflops"), "GFLOPs", Quantity::Gflops),
            computed(Some("params"), "Param (M)", Quantity::TotalParams),
            computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable),
        ],
        results: vec!["top1", "top5"],
        published_only: vec![],
        ours,
        remarks: vec![],
    }
}

/// Table 2: Kinetics-400.
pub fn table2_k400() -> Spec {
    sota("aim_table2_k400", "table2_k400", |r: &Row| {
        let v = row_views(r)?;
        match r.id.as_str() {
            id if id.starts_with("aim_vit_b16_") => aim(AimCfg::vitclip_base_k400(), v),
            id if id.starts_with("aim_vit_l14_") => aim(AimCfg::vitclip_large_k400(), v),
            _ => None,
        }
    })
}

/// Table 3: Something-Something v2.
pub fn table3_ssv2() -> Spec {
    sota("aim_table3_ssv2", "table3_ssv2", |r: &Row| {
        let v = row_views(r)?;
        match r.id.as_str() {
            id if id.starts_with("aim_vit_b16_") => aim(AimCfg::vitclip_base_sthv2(), v),
            id if id.starts_with("aim_vit_l14_") => aim(AimCfg::vitclip_large_sthv2(), v),
            _ => None,
        }
    })
}

/// Table 4: Kinetics-700 (700 classes).
pub fn table4_k700() -> Spec {
    Spec {
        binary: "aim_table4_k700",
        paper: "aim",
        file: "table4_k700",
        computed: vec![computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable), computed(None, "GFLOPs 8×3×1", Quantity::Gflops)],
        results: vec!["top1"],
        published_only: vec![],
        ours: |r: &Row| match r.id.as_str() {
            "aim_vit_b16" => aim(AimCfg { num_classes: 700, ..AimCfg::vitclip_base_k400() }, K400),
            "aim_vit_l14" => aim(AimCfg { num_classes: 700, ..AimCfg::vitclip_large_k400() }, K400),
            _ => None,
        },
        remarks: vec!["The frame count is not printed: 8 frames assumed (the tunable count depends on it only through temporal_embedding, T·C).".into()],
    }
}

/// Table 5: Diving-48 (48 classes).
pub fn table5_diving48() -> Spec {
    Spec {
        binary: "aim_table5_diving48",
        paper: "aim",
        file: "table5_diving48",
        computed: vec![computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable), computed(None, "GFLOPs 32×1×1", Quantity::Gflops)],
        results: vec!["top1"],
        published_only: vec![],
        ours: |r: &Row| {
            let v = Views::new(32, 1, 1);
            match r.id.as_str() {
                "aim_vit_b16" => aim(AimCfg { num_classes: 48, ..AimCfg::vitclip_base_k400() }, v),
                "aim_vit_l14" => aim(AimCfg { num_classes: 48, ..AimCfg::vitclip_large_k400() }, v),
                _ => None,
            }
        },
        remarks: vec!["32 frames, one temporal clip (the Diving-48 config's num_frames; Appendix A.3: one clip at inference), K400's adapter setting (s = 0.5, num_tadapter = 1).".into()],
    }
}

/// Table 6: other backbones and pre-training (tunable parameters; memory and time measured here).
pub fn table6_backbones() -> Spec {
    Spec {
        binary: "aim_table6_backbones",
        paper: "aim",
        file: "table6_backbones",
        computed: vec![computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable), computed(None, "params (M)", Quantity::TotalParams)],
        results: vec!["top1"],
        published_only: vec!["mem", "time"],
        ours: |r: &Row| {
            let in21k = ClipCfg::in21k_vit_b16();
            match r.id.as_str() {
                "timesformer_vit_b_in21k" => bench(in21k, Arch::SaTa, Tuning::Full, 400, K400),
                "aim_vit_b_in21k" => aim(AimCfg { clip: in21k, ..AimCfg::vitclip_base_k400() }, K400),
                "timesformer_vit_b_clip" => bench(ClipCfg::vit_b16(), Arch::SaTa, Tuning::Full, 400, K400),
                "aim_vit_b_clip" => aim(AimCfg::vitclip_base_k400(), K400),
                _ => None,
            }
        },
        remarks: vec!["Swin-B rows are reference rows (the kit implements ViT backbones). Run without --counts-only to measure one training step's time and peak memory of each ViT row here (ratios to AIM CLIP).".into()],
    }
}

/// Table 7: where the adapters go (ViT-B/16 CLIP, K400).
pub fn table7_position() -> Spec {
    Spec {
        binary: "aim_table7_position",
        paper: "aim",
        file: "table7_position",
        computed: vec![computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable), computed(None, "GFLOPs 8×3×1", Quantity::Gflops)],
        results: vec!["top1"],
        published_only: vec![],
        ours: |r: &Row| {
            let blocks = match r.id.as_str() {
                "bottom6" => Blocks::List((0..6).collect()),
                "top6" => Blocks::List((6..12).collect()),
                "skip" => Blocks::List((0..12).step_by(2).collect()),
                "all" => Blocks::Last(12),
                _ => return None,
            };
            aim(AimCfg { blocks, ..AimCfg::vitclip_base_k400() }, K400)
        },
        remarks: vec!["Blocks without adapters are plain CLIP blocks (no temporal attention either: T-MSA's output passes through T_Adapter). \"Skip\" puts adapters in blocks 1, 3, …, 11 (0-based 0, 2, …, 10).".into()],
    }
}

/// Table 8: the bottleneck ratio.
pub fn table8_ratio() -> Spec {
    Spec {
        binary: "aim_table8_ratio",
        paper: "aim",
        file: "table8_ratio",
        computed: vec![
            computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable),
            computed(None, "GFLOPs 8×3×1", Quantity::Gflops),
        ],
        results: vec!["top1"],
        published_only: vec![],
        ours: |r: &Row| {
            let ratio = match r.id.as_str() {
                "r0_0625" => 0.0625,
                "r0_125" => 0.125,
                "r0_25" => 0.25,
                "r0_5" => 0.5,
                _ => return None,
            };
            aim(AimCfg { mlp_ratio: ratio, ..AimCfg::vitclip_base_k400() }, K400)
        },
        remarks: vec![],
    }
}

/// Table 9: training memory of large backbones (measured here).
pub fn table9_memory() -> Spec {
    Spec {
        binary: "aim_table9_memory",
        paper: "aim",
        file: "table9_memory",
        computed: vec![computed(None, "params (M)", Quantity::TotalParams), computed(None, "tunable (M)", Quantity::Tunable)],
        results: vec![],
        published_only: vec!["mem"],
        ours: |r: &Row| match r.id.as_str() {
            "timesformer_vit_l" => bench(ClipCfg::vit_l14(), Arch::SaTa, Tuning::Full, 400, K400),
            "aim_vit_l" => aim(AimCfg::vitclip_large_k400(), K400),
            _ => None,
        },
        remarks: vec!["Swin-L rows are reference rows. Run without --counts-only to measure the training-step peak memory of the two ViT-L rows here.".into()],
    }
}

/// Table 10: AIM and EVL.
pub fn table10_evl() -> Spec {
    Spec {
        binary: "aim_table10_evl",
        paper: "aim",
        file: "table10_evl",
        computed: vec![computed(Some("tunable_params"), "Tunable (M)", Quantity::Tunable)],
        results: vec!["top1"],
        published_only: vec!["mem", "time"],
        ours: |r: &Row| match r.id.as_str() {
            "aim_vit_b_in21k" => aim(AimCfg { clip: ClipCfg::in21k_vit_b16(), ..AimCfg::vitclip_base_k400() }, K400),
            "aim_vit_b_clip" => aim(AimCfg::vitclip_base_k400(), K400),
            _ => None,
        },
        remarks: vec!["EVL (Lin et al., 2022) is not implemented: reference rows.".into()],
    }
}
