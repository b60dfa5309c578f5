//! ST-Adapter's tables (Pan et al., NeurIPS 2022): which rows the kit computes, and how.

use super::engine::{row_views, Computed, Ours, Quantity, Spec};
use super::published::Row;
use crate::baselines::{Arch, BenchmarkCfg, Tuning};
use crate::clip::Blocks;
use crate::clip::ClipCfg;
use crate::count::Views;
use crate::ops::Kernel3;
use crate::registry::{BaselineCfg, ModelCfg};
use crate::st_adapter::{Position, StAdapterCfg};

fn computed(published: Option<&'static str>, label: &'static str, quantity: Quantity) -> Computed {
    Computed { published, label, quantity }
}

fn st(cfg: StAdapterCfg, views: Views) -> Option<Ours> {
    Some(Ours { model: ModelCfg::StAdapter(StAdapterCfg { frames: views.frames, ..cfg }), views })
}

fn baseline(clip: ClipCfg, classes: usize, views: Views) -> Option<Ours> {
    Some(Ours {
        model: ModelCfg::ClipBaseline(BaselineCfg { clip, num_classes: classes, frames: views.frames }),
        views,
    })
}

fn bench(clip: ClipCfg, arch: Arch, tuning: Tuning, classes: usize, views: Views) -> Option<Ours> {
    Some(Ours {
        model: ModelCfg::Benchmark(BenchmarkCfg { clip, arch, tuning, num_classes: classes, frames: views.frames }),
        views,
    })
}

const V8X3: Views = Views::new(8, 3, 1);

/// The ablations' default: one adapter of width 384 before MHSA in every block (Section 4.3).
fn ablation() -> StAdapterCfg {
    StAdapterCfg { positions: vec![Position::PreAttn], ..StAdapterCfg::vit_b16_12x384() }
}

/// Table 1: the benchmark of fine-tuning protocols (ViT-B/16, 8 frames, 3 views).
pub fn table1_benchmark() -> Spec {
    Spec {
        binary: "st_table1_benchmark",
        paper: "st_adapter",
        file: "table1_benchmark",
        computed: vec![computed(Some("params"), "Fine-tuned Params (M)", Quantity::Tunable), computed(None, "without fc (M)", Quantity::TunableNoHead)],
        results: vec!["clip_k400", "clip_ssv2", "in21k_k400", "in21k_ssv2"],
        published_only: vec![],
        ours: |r: &Row| {
            let b = |arch, tuning| bench(ClipCfg::vit_b16(), arch, tuning, 400, V8X3);
            match r.id.as_str() {
                "full_ft_sa" => b(Arch::Sa, Tuning::Full),
                "full_ft_sa_ta" => b(Arch::SaTa, Tuning::Full),
                "full_ft_sa_ts" => b(Arch::SaTs, Tuning::Full),
                "partial_ft_sa" => b(Arch::Sa, Tuning::Partial),
                "partial_ft_sa_ta" => b(Arch::SaTa, Tuning::Partial),
                "temporal_ft_sa_ta" => b(Arch::SaTa, Tuning::Temporal),
                "prompt_tuning_sa" => b(Arch::Sa, Tuning::Prompt { tokens: 100 }),
                "attentional_pooling_sa" => b(Arch::Sa, Tuning::AttentionalPooling),
                "linear_probe_sa" => b(Arch::Sa, Tuning::LinearProbe),
                "adapter_sa" => b(Arch::Sa, Tuning::Adapter { width: 384 }),
                "st_adapter_sa" => st(StAdapterCfg::vit_b16_12x384(), V8X3),
                _ => None,
            }
        },
        remarks: vec!["Counts use the 400-way Kinetics classifier (the table prints one count for both datasets; a 174-way SSv2 head has 173,794 fewer parameters). Our baselines: src/baselines/.".into()],
    }
}

/// Table 2: Kinetics-400, state of the art.
pub fn table2_k400() -> Spec {
    Spec {
        binary: "st_table2_k400",
        paper: "st_adapter",
        file: "table2_k400",
        computed: vec![
            computed(Some("gflops"), "GFLOPs", Quantity::Gflops),
            computed(None, "params (M)", Quantity::TotalParams),
            computed(None, "tunable (M)", Quantity::Tunable),
        ],
        results: vec!["top1", "top5"],
        published_only: vec![],
        ours: |r: &Row| {
            let v = row_views(r)?;
            match r.id.as_str() {
                "vit_b_no_adapter" => baseline(ClipCfg::vit_b16(), 400, v),
                "vit_l_no_adapter" => baseline(ClipCfg::vit_l14(), 400, v),
                id if id.starts_with("st_vit_b16_") => st(StAdapterCfg::vit_b16_12x384(), v),
                id if id.starts_with("st_vit_l_") => st(StAdapterCfg::vit_l14_24x384(), v),
                _ => None,
            }
        },
        remarks: vec![
            "\"w/o ST-Adapter\" rows are the frame-wise CLIP model (its GFLOPs do not depend on what is trained)."
                .into(),
        ],
    }
}

/// Table 3: Something-Something v2.
pub fn table3_ssv2() -> Spec {
    Spec {
        binary: "st_table3_ssv2",
        paper: "st_adapter",
        file: "table3_ssv2",
        computed: vec![
            computed(Some("gflops"), "GFLOPs", Quantity::Gflops),
            computed(None, "params (M)", Quantity::TotalParams),
            computed(None, "tunable (M)", Quantity::Tunable),
        ],
        results: vec!["top1", "top5"],
        published_only: vec![],
        ours: |r: &Row| {
            let v = row_views(r)?;
            match r.id.as_str() {
                "vit_b_no_adapter" => baseline(ClipCfg::vit_b16(), 174, v),
                "vit_l_no_adapter" => baseline(ClipCfg::vit_l14(), 174, v),
                // 2 adapters per block for ViT-B (caption, Table 8), 1 for ViT-L (Table 8)
                id if id.starts_with("st_vit_b16_") => st(StAdapterCfg::vit_b16_24x384(), v),
                id if id.starts_with("st_vit_l_") => {
                    st(StAdapterCfg { num_classes: 174, ..StAdapterCfg::vit_l14_24x384() }, v)
                }
                _ => None,
            }
        },
        remarks: vec![],
    }
}

/// Table 4: Epic-Kitchens-100 (verb and noun heads).
pub fn table4_ek100() -> Spec {
    Spec {
        binary: "st_table4_ek100",
        paper: "st_adapter",
        file: "table4_ek100",
        computed: vec![computed(None, "params (M)", Quantity::TotalParams), computed(None, "tunable (M)", Quantity::Tunable), computed(None, "GFLOPs", Quantity::Gflops)],
        results: vec!["verb", "noun"],
        published_only: vec![],
        ours: |r: &Row| {
            // two classifiers, 97 verbs and 300 nouns: as many parameters as one 397-way fc
            let v = row_views(r)?;
            match r.id.as_str() {
                "vit_b16_no_adapter" => bench(ClipCfg::vit_b16(), Arch::Sa, Tuning::Full, 397, v),
                "st_vit_b16_8x3x1" => st(StAdapterCfg { num_classes: 397, ..StAdapterCfg::vit_b16_12x384() }, v),
                _ => None,
            }
        },
        remarks: vec!["EK100 has a verb head (97 classes) and a noun head (300): counted as one 397-way classifier (same parameters and multiply-adds). The adapter placement for EK100 is not given; K400's (one per block) is assumed.".into()],
    }
}

/// Table 5: ablations (width, blocks, position), ViT-B/16, 8×3×1.
pub fn table5_ablations() -> Spec {
    Spec {
        binary: "st_table5_ablations",
        paper: "st_adapter",
        file: "table5_ablations",
        computed: vec![computed(None, "tunable (M)", Quantity::Tunable), computed(None, "GFLOPs", Quantity::Gflops)],
        results: vec!["k400", "ssv2"],
        published_only: vec![],
        ours: |r: &Row| {
            let a = ablation();
            let cfg = match r.id.as_str() {
                "a_w64" => StAdapterCfg { adapter_width: 64, ..a },
                "a_w128" => StAdapterCfg { adapter_width: 128, ..a },
                "a_w256" => StAdapterCfg { adapter_width: 256, ..a },
                "a_w384" => a,
                "a_w768" => StAdapterCfg { adapter_width: 768, ..a },
                "b_1_4" => StAdapterCfg { blocks: Blocks::List((0..4).collect()), ..a },
                "b_5_8" => StAdapterCfg { blocks: Blocks::List((4..8).collect()), ..a },
                "b_9_12" => StAdapterCfg { blocks: Blocks::List((8..12).collect()), ..a },
                "b_5_12" => StAdapterCfg { blocks: Blocks::List((4..12).collect()), ..a },
                "b_1_12" => a,
                "c_before_mhsa" => a,
                "c_after_mhsa" => StAdapterCfg { positions: vec![Position::PreMlp], ..a },
                "c_after_ffn" => StAdapterCfg { positions: vec![Position::PostMlp], ..a },
                "c_before_after_mhsa" => StAdapterCfg { positions: vec![Position::PreAttn, Position::PreMlp], ..a },
                _ => return None,
            };
            st(cfg, V8X3)
        },
        remarks: vec!["Every variant computed from the ablation default (one adapter of width 384 before MHSA in each block, Section 4.3), 400-way classifier. \"after FFN\" is not in the official code; it is our `adapter_post_mlp`.".into()],
    }
}

/// Table 6: training cost (GPU-hours and peak memory), measured here as ratios.
pub fn table6_training_cost() -> Spec {
    Spec {
        binary: "st_table6_training_cost",
        paper: "st_adapter",
        file: "table6_training_cost",
        computed: vec![computed(None, "params (M)", Quantity::TotalParams), computed(None, "tunable (M)", Quantity::Tunable)],
        results: vec![],
        published_only: vec!["gpu_hours", "gpu_hours_rel", "peak_mem", "peak_mem_rel"],
        ours: |r: &Row| match r.id.as_str() {
            "timesformer_full_ft" => bench(ClipCfg::vit_b16(), Arch::SaTa, Tuning::Full, 400, V8X3),
            "vit_b16_full_ft" => bench(ClipCfg::vit_b16(), Arch::Sa, Tuning::Full, 400, V8X3),
            "st_vit_b16" => st(StAdapterCfg::vit_b16_12x384(), V8X3),
            _ => None,
        },
        remarks: vec!["Published: 8 frames, 16 samples per GPU on 8 V100s. Run without --counts-only to measure one training step of each model here (CPU, same run, ratios to the ST-Adapter row).".into()],
    }
}

/// Table 7: the depthwise kernel's shape.
pub fn table7_kernel() -> Spec {
    Spec {
        binary: "st_table7_kernel",
        paper: "st_adapter",
        file: "table7_kernel",
        computed: vec![computed(None, "tunable (M)", Quantity::Tunable), computed(None, "GFLOPs", Quantity::Gflops)],
        results: vec!["k400", "ssv2"],
        published_only: vec![],
        ours: |r: &Row| {
            let k = match r.id.as_str() {
                "k1x1x1" => Kernel3::new(1, 1, 1),
                "k1x3x3" => Kernel3::new(1, 3, 3),
                "k3x1x1" => Kernel3::new(3, 1, 1),
                "k3x3x3" => Kernel3::new(3, 3, 3),
                _ => return None,
            };
            st(StAdapterCfg { kernel: k, ..ablation() }, V8X3)
        },
        remarks: vec![
            "Computed from the ablation default (one adapter of width 384 before MHSA per block), 400-way classifier."
                .into(),
        ],
    }
}

/// Table 9: other foundation models (CLIP, SWAG).
pub fn table9_foundation_models() -> Spec {
    Spec {
        binary: "st_table9_foundation_models",
        paper: "st_adapter",
        file: "table9_foundation_models",
        computed: vec![computed(None, "params (M)", Quantity::TotalParams), computed(None, "tunable (M)", Quantity::Tunable)],
        results: vec!["k400", "ssv2"],
        published_only: vec![],
        ours: |r: &Row| {
            let swag = ClipCfg::in21k_vit_b16();
            match r.id.as_str() {
                "vit_b_full_ft_clip" => bench(ClipCfg::vit_b16(), Arch::Sa, Tuning::Full, 400, V8X3),
                "st_vit_b_clip" => st(StAdapterCfg::vit_b16_12x384(), V8X3),
                "vit_b_full_ft_swag" => bench(swag, Arch::Sa, Tuning::Full, 400, V8X3),
                "st_vit_b_swag" => st(StAdapterCfg { clip: swag, ..StAdapterCfg::vit_b16_12x384() }, V8X3),
                _ => None,
            }
        },
        remarks: vec!["SWAG's ViT-B/16 is counted with the ImageNet-ViT shape (patch-embedding bias, no ln_pre, GELU), like the IN-21K model.".into()],
    }
}

/// Table 10: Swin-B (not implemented: reference rows).
pub fn table10_swin() -> Spec {
    Spec {
        binary: "st_table10_swin",
        paper: "st_adapter",
        file: "table10_swin",
        computed: vec![],
        results: vec!["k400", "ssv2"],
        published_only: vec![],
        ours: |_| None,
        remarks: vec!["The kit implements ViT backbones only: Swin rows are reference rows.".into()],
    }
}

/// Table 11: inference speed; total parameters computed, latency and throughput measured here.
pub fn table11_inference_speed() -> Spec {
    Spec {
        binary: "st_table11_inference_speed",
        paper: "st_adapter",
        file: "table11_inference_speed",
        computed: vec![computed(Some("params_total"), "Params (M)", Quantity::TotalParams), computed(None, "GFLOPs 8×3×1", Quantity::Gflops)],
        results: vec!["k400"],
        published_only: vec!["latency_ms", "throughput"],
        ours: |r: &Row| match r.id.as_str() {
            "timesformer" => bench(ClipCfg::vit_b16(), Arch::SaTa, Tuning::Full, 400, V8X3),
            "vit_b16" => baseline(ClipCfg::vit_b16(), 400, V8X3),
            "st_vit_b16" => st(StAdapterCfg::vit_b16_12x384(), V8X3),
            _ => None,
        },
        remarks: vec!["Published: latency at batch 1, throughput at batch 32 (GPU). Run without --counts-only to measure both here, side by side, as ratios to the ViT-B/16 row.".into()],
    }
}

/// Table 12: UCF-101 and HMDB-51.
pub fn table12_ucf_hmdb() -> Spec {
    Spec {
        binary: "st_table12_ucf_hmdb",
        paper: "st_adapter",
        file: "table12_ucf_hmdb",
        computed: vec![computed(None, "params (M)", Quantity::TotalParams), computed(None, "tunable (M)", Quantity::Tunable), computed(None, "GFLOPs 8×2×3", Quantity::Gflops)],
        results: vec!["ucf101", "hmdb51"],
        published_only: vec![],
        ours: |r: &Row| {
            let v = Views::new(8, 2, 3);
            let l336 = ClipCfg { input_resolution: 336, ..ClipCfg::vit_l14() };
            match r.id.as_str() {
                "st_vit_b16" => st(StAdapterCfg { num_classes: 101, ..StAdapterCfg::vit_b16_12x384() }, v),
                "st_vit_l14" => st(StAdapterCfg { num_classes: 101, ..StAdapterCfg::vit_l14_24x384() }, v),
                "st_vit_l14_336" => st(StAdapterCfg { num_classes: 101, clip: l336, ..StAdapterCfg::vit_l14_24x384() }, v),
                _ => None,
            }
        },
        remarks: vec!["Counted with a 101-way (UCF-101) classifier, 8 frames (the frame count is not given; the K400 models are reused at a temporal stride of 8), 2 temporal × 3 spatial views.".into()],
    }
}

/// Table 8: the default recipe, field by field: the model fields from our model presets, the
/// training fields from our recipe presets (src/recipe.rs).
pub fn table8_recipe(_args: &super::engine::Args) -> anyhow::Result<super::engine::Report> {
    use super::engine::{Column, Kind, Mark, OutRow, Report, Value};
    use crate::recipe::Recipe;
    use crate::video::{Sampling, TrainPipeline};
    let table = super::published::load("st_adapter", "table8_recipe")?;
    let settings: [(&str, StAdapterCfg, Recipe); 4] = [
        ("k400_vit_b", StAdapterCfg::vit_b16_12x384(), Recipe::st_k400_vit_b()),
        ("k400_vit_l", StAdapterCfg::vit_l14_24x384(), Recipe::st_k400_vit_l()),
        ("ssv2_vit_b", StAdapterCfg::vit_b16_24x384(), Recipe::st_ssv2_vit_b()),
        ("ssv2_vit_l", StAdapterCfg { num_classes: 174, ..StAdapterCfg::vit_l14_24x384() }, Recipe::st_ssv2_vit_l()),
    ];
    let ours = |row: &str, m: &StAdapterCfg, r: &Recipe| -> String {
        let mark = |b: bool| if b { "✓" } else { "✗" }.to_string();
        let TrainPipeline::St { size, jitter, mirror, rand_augment, sampling } = r.train else {
            return "—".into();
        };
        match row {
            "num_adapters_per_block" => (m.num_adapters() / m.clip.layers).to_string(),
            "bottleneck_width" => m.adapter_width.to_string(),
            "kernel_shape" => format!("{} × {} × {} (kT × kH × kW)", m.kernel.t, m.kernel.h, m.kernel.w),
            "optimizer" => {
                format!("AdamW, learning rate={:e}, weight decay={:e}", r.optimizer.lr, r.optimizer.weight_decay)
            }
            "batch_size" => r.batch_size.to_string(),
            "training_steps" => format!("{}k", r.steps / 1000),
            "training_resize" => match jitter {
                Some((lo, hi)) => {
                    let side = |f: f64| crate::video::sample::py_round(size as f64 * f);
                    format!("ShortSideJitter {} - {}", side(lo), side(hi))
                }
                None => "RandomResizedCrop".into(),
            },
            "crop_size" => size.to_string(),
            // the dense rate spans 128 frames whatever the clip length (8 × 16 = 16 × 8 = 32 × 4)
            "frame_sampling_rate" => match sampling {
                Sampling::StDense { frames, rate, .. } => {
                    [8, 16, 32].map(|f| format!("{} (for {f} frames per view)", frames * rate / f)).join(" ")
                }
                _ => "dynamic, evenly covering the whole video".into(),
            },
            "mirror" => mark(mirror),
            "randaugment" => mark(rand_augment),
            "num_testing_views" => {
                let (t, s) = r.test_views();
                format!("{t} temporal × {s} spatial")
            }
            _ => "—".into(),
        }
    };
    let norm = |s: &str| s.replace(' ', "").replace("5e-4", "0.0005").replace("1e-2", "0.01").replace("5e-4", "0.0005");
    let mut columns = Vec::new();
    for (key, _, _) in &settings {
        let label = table.column(key).map_or(key.to_string(), |c| c.label.clone());
        for kind in [Kind::Published, Kind::Ours, Kind::Mark] {
            columns.push(Column::new(Some(&label), kind));
        }
    }
    let mut rows = Vec::new();
    for row in &table.rows {
        let mut cells = Vec::new();
        for (key, m, r) in &settings {
            let published = Value::Printed(row.cells.get(*key).cloned());
            let o = ours(&row.id, m, r);
            let mark = if norm(&published.text()) == norm(&o) { Mark::Match } else { Mark::Mismatch(None) };
            cells.extend([published, Value::Text(o), Value::Mark(mark)]);
        }
        rows.push(OutRow { id: row.id.clone(), label: row.label.clone(), group: None, cells });
    }
    Ok(Report {
        binary: "st_table8_recipe".into(),
        table: format!("{} Table {}", table.paper, table.table),
        caption: table.caption.clone(),
        source: format!("{} ({})", table.source, table.citation),
        row_header: "setting".into(),
        columns,
        rows,
        notes: vec![("ours".into(), "Model fields from our presets (src/st_adapter.rs); training fields from our recipe presets (src/recipe.rs), which training runs read.".into())],
    })
}
