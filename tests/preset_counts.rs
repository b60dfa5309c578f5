//! Counts of every preset and baseline at the published view settings: total and trainable
//! parameters, multiply-adds per view, GFLOPs (fvcore convention, × views). Each doc comment puts
//! the arithmetic next to the published figure; where they differ it names the reason (or says it
//! is unexplained and what was tried). Published figures are quoted from `fixtures/published`.

use video_adapters::aim::AimCfg;
use video_adapters::baselines::{Arch, BenchmarkCfg, Tuning};
use video_adapters::count::{group, Breakdown, Views};
use video_adapters::mst_adapter::MstAdapterCfg;
use video_adapters::st_adapter::StAdapterCfg;

fn row(name: &str, b: &Breakdown, views: Views) -> String {
    format!(
        "{name:<34} {views:<7} total {:>12}  trainable {:>11}  GMACs/view {:>9.3}  GFLOPs {:>9.2}\n",
        group(b.params()),
        group(b.trainable()),
        b.macs_per_view() as f64 / 1e9,
        b.gflops(views)
    )
}

/// ST-Adapter (width 384, kernel 3×1×1), 8/16/32 frames:
///
/// ```text
/// adapter params   fc1 768·384 + 384 + conv 384·3 + 384 + fc2 384·768 + 768       = 592,512
/// 12×384 (K400)    12 · 592,512 = 7,110,144; + fc 307,600 = 7,417,744 trainable
///                  published Table 1: 7.20M — differs: no width, head or placement we tried gives 7.20
///                  (without the head 7.11, with a 174-way head 7.24, with the 400-way head 7.42)
///                  published Table 11 total: 93.00M; ours 86,107,024 + 7,110,144 = 93.22M (unexplained)
/// adapter MACs     per frame 196·768·384 + 196·384·3 + 196·384·768 = 115,831,296
/// 8×3×1            (140,656,088,832 + 8·12·115,831,296) · 3 = 455.33 GFLOPs   published 455 ✓
///                  16×3×1: 910.65 (911 ✓), 32×3×1: 1821.30 (1821 ✓)
/// 24×384 (SSv2)    8×3×1: 488.69 GFLOPs, published 489 ✓ (Table 3 prints 8×3×1; see its notes)
/// ViT-L/14 24×384  8×3×1: 2062.02 GFLOPs, published 2062 ✓; 16: 4124 ✓; 32: 8248 ✓
/// ```
#[test]
fn st_adapter_presets_at_published_views() {
    let mut s = String::new();
    for (name, cfg) in [
        ("ST-Adapter B/16 12x384", StAdapterCfg::vit_b16_12x384()),
        ("ST-Adapter B/16 24x384", StAdapterCfg::vit_b16_24x384()),
        ("ST-Adapter L/14 24x384", StAdapterCfg::vit_l14_24x384()),
    ] {
        for f in [8, 16, 32] {
            let b = StAdapterCfg { frames: f, ..cfg.clone() }.breakdown();
            s += &row(name, &b, Views::new(f, 3, 1));
        }
    }
    let b = StAdapterCfg::vit_b16_12x384().breakdown();
    assert_eq!((b.trainable(), (b.gflops(Views::new(8, 3, 1)) * 100.0).round()), (7_417_744, 45533.0));
    insta::assert_snapshot!(s);
}

/// AIM (bottleneck 0.25·C, s = 0.5 K400 / 1.0 SSv2):
///
/// ```text
/// adapter          768·192 + 192 + 192·768 + 768 = 295,872; 3 per block (+ T_Adapter_in on SSv2)
/// B/16 K400        12·3·295,872 = 10,651,392 + temporal_embedding 8·768 + ln_post 1,536
///                  + fc_cls 307,600 = 10,966,672 trainable ("11M" ✓); total 96,764,560 ("97" ✓)
/// T-MSA per frame  ln_1 5·197·768 + in_proj 197·768·2304 + 2·8·197·768 + out_proj 197·768² = 467,958,528
/// B/16 K400 8×3×1  606.94 GFLOPs, published 606 ✓ (truncated)
/// 16 and 32 frames 1215.27 and 2436.11 here; published 1214 and 2428 = 2 × 607 and 4 × 607: the
///                  published figures scale the 8-frame count linearly, but T-MSA's QKᵀ and PV grow
///                  as T² (per frame 2·T·L·C), so the true count grows faster (extrapolated, not counted)
/// L/14 K400 8×3×1  2802.75, published 2802 ✓; 16/32 frames: 5610.3 / 11240.1 vs 5604 / 11208 (2×, 4×)
///                  trainable 38,261,136 ("38M" ✓); total 341.4M ("341" ✓)
/// B/16 SSv2 8×1×3  623.67, published 624 ✓; trainable 14,343,342 ("14M" Table 3 / "14.3" Table 1 ✓)
/// L/14 SSv2 8×1×3  2880.36, published 2877: 3.4 GFLOPs (0.1%) more here — unexplained; the B/16
///                  SSv2 − K400 gap matches ours within rounding, the L/14 one (75 vs our 77.6) does not
/// ```
#[test]
fn aim_presets_at_published_views() {
    let mut s = String::new();
    for (name, cfg, v) in [
        ("AIM B/16 K400", AimCfg::vitclip_base_k400(), (3, 1)),
        ("AIM L/14 K400", AimCfg::vitclip_large_k400(), (3, 1)),
        ("AIM B/16 SSv2", AimCfg::vitclip_base_sthv2(), (1, 3)),
        ("AIM L/14 SSv2", AimCfg::vitclip_large_sthv2(), (1, 3)),
    ] {
        for f in [8, 16, 32] {
            let b = AimCfg { frames: f, ..cfg.clone() }.breakdown();
            s += &row(name, &b, Views::new(f, v.0, v.1));
        }
    }
    let b = AimCfg::vitclip_base_k400().breakdown();
    assert_eq!(b.trainable(), 10_966_672);
    insta::assert_snapshot!(s);
}

/// MST-Adapter with our assumptions (tests/mst_assumptions.rs):
///
/// ```text
/// adapter MACs     per frame 196·768·384 + 196·384·(3+5+7) + 196·384·384 + 196·384·768 = 145,635,840
/// B/16 8×3×1       (140,656,088,832 + 8·24·145,635,840) · 3 = 505.85 GFLOPs (the shift costs none)
///                  published 348 GFLOPs: below the frozen ViT-B/16 alone (422 here, 419 published):
///                  impossible for a model that runs that backbone — not reproducible, unexplained
/// L/14 8×3×1       2222.9; published 1116 (and 2232 for 16 frames): the published 8-frame figure
///                  is about half of the backbone's own cost — not reproducible, unexplained
/// parameters       B/16: 18.21M trainable with the head (17.90M adapters: "18M" ✓), total 104.0M ("104" ✓)
///                  L/14: 45.65M (45.24M adapters: "45M" ✓), total 348.8M ("349" ✓)
/// ```
#[test]
fn mst_adapter_presets_at_published_views() {
    let mut s = String::new();
    for (name, cfg, v) in [
        ("MST-Adapter B/16 K400", MstAdapterCfg::vit_b16_k400(), (3, 1)),
        ("MST-Adapter L/14 K400", MstAdapterCfg::vit_l14_k400(), (3, 1)),
        ("MST-Adapter B/16 SSv2", MstAdapterCfg::vit_b16_ssv2(), (1, 3)),
        ("MST-Adapter L/14 SSv2", MstAdapterCfg::vit_l14_ssv2(), (1, 3)),
    ] {
        for f in [8, 16] {
            let b = MstAdapterCfg { frames: f, ..cfg.clone() }.breakdown();
            s += &row(name, &b, Views::new(f, v.0, v.1));
        }
    }
    insta::assert_snapshot!(s);
}

/// ST-Adapter Table 1 baselines (ViT-B/16 CLIP, 400 classes, 8×3×1):
///
/// ```text
/// SA full          86,107,024                                   published 86.11 ✓
/// SA+TA full       + 12 × (LN 1,536 + qkv 1,771,776 + proj 590,592 + temporal_fc 590,592)
///                  + time_embed 8·768 = 121,567,120              published 121.57 ✓
/// SA+TS full       + aggregation head: token 768 + pos 9·768 + block 7,087,872 = 93,202,576
///                  published 93.79: 589,824 = 768² more there (a C×C projection?) — unexplained
/// SA partial       last block 7,087,872 + fc 307,600 = 7,395,472 published 7.40 ✓
/// SA+TA partial    + the last block's TA 2,954,496 + time_embed 6,144 = 10,356,112   published 10.36 ✓
/// SA+TA temporal   12 TA 35,453,952 + 6,144 + fc 307,600 = 35,767,696   published 35.8 ✓
/// prompt tuning    100 tokens: 12·100·768 + fc = 1,229,200       published 1.18: = 12·128·768 =
///                  1,179,648 without the classifier (128 prompts) — a different counting convention
/// attn. pooling    MHA 2,362,368 + fc = 2,669,968                published 2.36 = the MHA without the
///                  classifier — the same convention as prompt tuning
/// linear probe     307,600                                       published 0.31 ✓ (counts the classifier)
/// Houlsby adapter  12 · (768·384 + 384 + 384·768 + 768) + fc = 7,399,312   published 6.77 (fits
///                  width 350 with the classifier, or two adapters of width 183 without) — unexplained
/// ```
#[test]
fn benchmark_baselines_at_published_views() {
    let mut s = String::new();
    for (arch, tuning) in BenchmarkCfg::table1_rows() {
        let cfg = BenchmarkCfg::clip_b16(arch, tuning);
        s += &row(&cfg.name(), &cfg.breakdown(), Views::new(8, 3, 1));
    }
    let ta = BenchmarkCfg::clip_b16(Arch::SaTa, Tuning::Full).breakdown();
    assert_eq!(ta.params(), 121_567_120);
    insta::assert_snapshot!(s);
}
