//! MST-Adapter has no code: what each open choice does to the tunable-parameter count, against
//! the paper's 18M (ViT-B/16) and 45M (ViT-L/14), "+4M" for the 1×1×1 conv and "+72" for the
//! learned fusion (MST-Adapter Tables 1–6 and Section 4.3).

use video_adapters::count::group;
use video_adapters::mst_adapter::{Fusion, MstAdapterCfg, Pointwise};
use video_adapters::ops::Kernel3;

/// Tunable parameters of the adapters alone (no classifier) and with the 400-way classifier.
fn counts(cfg: &MstAdapterCfg) -> (u64, u64) {
    let adapters = cfg.num_adapters() as u64 * cfg.adapter_params();
    (adapters, cfg.breakdown().trainable())
}

/// Our defaults (W = 384, branches 3×1×1 + 5×1×1 + 7×1×1, dense 1×1×1, learned fusion):
///
/// ```text
/// one ViT-B/16 adapter   down 768·384 + 384 = 295,296     branches 384·(3 + 5 + 7) + 3·384 = 6,912
///                        fusion 3    1×1×1 384·384 + 384 = 147,840    up 384·768 + 768 = 295,680
///                        = 745,731;  × 24 adapters = 17,897,544  (+ fc 307,600 = 18,205,144)
/// one ViT-L/14 adapter   393,600 + 6,912 + 3 + 147,840 + 394,240 = 942,595;  × 48 = 45,244,560
///                        (+ fc 1024·400 + 400 = 410,000 → 45,654,560)
/// ```
/// The paper prints 18M and 45M: the adapters alone, rounded (17.90 → 18, 45.24 → 45). With the
/// classifier ViT-L would print 46. The totals agree: 85,799,424 + 17,897,544 + 307,600 = 104.0M
/// ("104") and 303,179,776 + 45,244,560 + 410,000 = 348.8M ("349").
/// The dense 1×1×1 conv adds 24 × 147,840 = 3,548,160 ("+4M", rounded), a depthwise one
/// 24 × 768 = 18,432; learned fusion adds 24 × 3 = 72 ("+72 parameters").
#[test]
fn mst_defaults_give_the_published_18m_and_45m_adapter_parameters() {
    let (b16, b16_total) = counts(&MstAdapterCfg::vit_b16_k400());
    let (l14, l14_total) = counts(&MstAdapterCfg::vit_l14_k400());
    assert_eq!((b16, b16_total), (17_897_544, 18_205_144));
    assert_eq!((l14, l14_total), (45_244_560, 45_654_560));
    assert_eq!((millions(b16), millions(l14)), (18, 45));
    let b = MstAdapterCfg::vit_b16_k400();
    let dense = counts(&b).0 - counts(&MstAdapterCfg { pointwise: Pointwise::None, ..b.clone() }).0;
    let dw = counts(&MstAdapterCfg { pointwise: Pointwise::Depthwise, ..b.clone() }).0
        - counts(&MstAdapterCfg { pointwise: Pointwise::None, ..b.clone() }).0;
    let fusion = counts(&b).0 - counts(&MstAdapterCfg { fusion: Fusion::Average, ..b.clone() }).0;
    assert_eq!((dense, dw, fusion), (3_548_160, 18_432, 72));
    assert_eq!(millions(dense), 4);
}

/// Rounded to whole millions, as the paper prints counts.
fn millions(n: u64) -> u64 {
    (n + 500_000) / 1_000_000
}

/// The table of alternatives (reviewed snapshot): which assumptions are compatible with 18M / 45M.
#[test]
fn mst_assumption_table() {
    let k = |t, h, w| Kernel3::new(t, h, w);
    let branch_sets = [
        ("3x1x1+5x1x1+7x1x1", vec![k(3, 1, 1), k(5, 1, 1), k(7, 1, 1)]),
        ("3x1x1+1x3x3+3x3x3", vec![k(3, 1, 1), k(1, 3, 3), k(3, 3, 3)]),
        ("1x1x1+3x3x3+5x5x5", vec![k(1, 1, 1), k(3, 3, 3), k(5, 5, 5)]),
        ("3x3x3+5x5x5+7x7x7", vec![k(3, 3, 3), k(5, 5, 5), k(7, 7, 7)]),
        ("1x3x3+3x3x3+5x5x5", vec![k(1, 3, 3), k(3, 3, 3), k(5, 5, 5)]),
    ];
    let mut s = String::from(
        "W    1x1x1      branches             B/16 adapters  (M)    L/14 adapters  (M)   18/45 rounded  truncated\n",
    );
    for w in [192, 256, 384, 512] {
        for pw in [Pointwise::Dense, Pointwise::Depthwise, Pointwise::None] {
            for (name, br) in &branch_sets {
                let b = MstAdapterCfg {
                    adapter_width: w,
                    pointwise: pw,
                    branches: br.clone(),
                    ..MstAdapterCfg::vit_b16_k400()
                };
                let l = MstAdapterCfg {
                    adapter_width: w,
                    pointwise: pw,
                    branches: br.clone(),
                    ..MstAdapterCfg::vit_l14_k400()
                };
                let (cb, cl) = (counts(&b).0, counts(&l).0);
                let rounded = millions(cb) == 18 && millions(cl) == 45;
                let truncated = cb / 1_000_000 == 18 && cl / 1_000_000 == 45;
                s += &format!(
                    "{w:<4} {:<10} {name:<20} {:>13} {:>5.2} {:>13} {:>6.2}   {:<13}  {}\n",
                    format!("{pw:?}"),
                    group(cb),
                    cb as f64 / 1e6,
                    group(cl),
                    cl as f64 / 1e6,
                    if rounded { "yes" } else { "" },
                    if truncated { "yes" } else { "" }
                );
            }
        }
    }
    insta::assert_snapshot!(s);
}
