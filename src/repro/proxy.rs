//! The proxy columns: next to a table's published accuracy, what the kit measures for the same
//! method on the embedded CPU benchmark ([`crate::proxy`]), mean ± std over seeds, never mixed
//! with published numbers; and the table's claims, each checked on those results.
//!
//! Which rows and claims each table gets is [`table`]'s list; the runs themselves are cached
//! ([`crate::proxy::bench`]), so rows that share a method and tables that share runs pay once.

use std::collections::BTreeMap;

use super::engine::{Args, Column, Kind, Report, Value};
use crate::proxy::bench::{self, Budget, RunKey, RunResult};
use crate::proxy::claims::{Claim, Metric, Outcome, Stats};
use crate::proxy::synth::Task;
use crate::proxy::Method;

/// A table's proxy: which result columns get a proxy column (fixture key, task), which method
/// each row is, and the claims.
pub struct ProxyTable {
    pub columns: Vec<(&'static str, Task)>,
    pub method: fn(&str) -> Option<Method>,
    pub claims: Vec<Claim>,
}

/// The proxy of the table `binary`, if it has one.
pub fn table(binary: &str) -> Option<ProxyTable> {
    use crate::proxy::claims::{appearance_solved, frame_averaging_blind, ranks_above};
    let front_door = |id: &str| match id {
        "st_adapter_vit_b16" => Some(Method::ST_ADAPTER),
        "aim_vit_l14" => Some(Method::Aim),
        "clip_star_vit_b16" => Some(Method::FullFinetune),
        id if id.starts_with("mst_vit") => Some(Method::MstAdapter),
        _ => None,
    };
    Some(match binary {
        "table1_k400" => ProxyTable {
            columns: vec![("top1", Task::Appearance)],
            method: front_door,
            claims: vec![
                appearance_solved(&[Method::FullFinetune, Method::ST_ADAPTER, Method::Aim, Method::MstAdapter]),
                ranks_above(
                    "MST-Adapter ViT-B/16 is above ST-Adapter ViT-B/16 on Kinetics-400 (82.7 vs 82.5 top-1)",
                    Task::Appearance,
                    Method::MstAdapter,
                    Method::ST_ADAPTER,
                    "the appearance task is solved by every method at this budget (it stands in for a data set where a frozen image model is already strong), so it cannot rank methods that differ by 0.2 points on Kinetics",
                ),
            ],
        },
        "mst_table2_ssv2" => ProxyTable {
            columns: vec![("top1", Task::Motion)],
            method: front_door,
            claims: vec![frame_averaging_blind(
                &[Method::LinearProbe, Method::FullFinetune],
                &[Method::ST_ADAPTER, Method::Aim, Method::MstAdapter],
            )],
        },
        "st_table1_benchmark" => ProxyTable {
            columns: vec![("clip_k400", Task::Appearance), ("clip_ssv2", Task::Motion)],
            method: |id| match id {
                "full_ft_sa" => Some(Method::FullFinetune),
                "linear_probe_sa" => Some(Method::LinearProbe),
                "adapter_sa" => Some(Method::Houlsby),
                "st_adapter_sa" => Some(Method::ST_ADAPTER),
                _ => None,
            },
            claims: vec![
                frame_averaging_blind(
                    &[Method::LinearProbe, Method::FullFinetune, Method::Houlsby],
                    &[Method::ST_ADAPTER],
                ),
                appearance_solved(&[Method::LinearProbe, Method::FullFinetune, Method::Houlsby, Method::ST_ADAPTER]),
            ],
        },
        "st_table7_kernel" => {
            let k = |t, h, w| Method::StAdapter(crate::ops::Kernel3::new(t, h, w));
            ProxyTable {
                columns: vec![("k400", Task::Appearance), ("ssv2", Task::Motion)],
                method: |id| {
                    let k = |t, h, w| Some(Method::StAdapter(crate::ops::Kernel3::new(t, h, w)));
                    match id {
                        "k1x1x1" => k(1, 1, 1),
                        "k1x3x3" => k(1, 3, 3),
                        "k3x1x1" => k(3, 1, 1),
                        "k3x3x3" => k(3, 3, 3),
                        _ => None,
                    }
                },
                claims: vec![
                    Claim {
                        text: "a temporal kernel is far above kernels without temporal extent on the motion task, \
                               3×1×1 ≫ 1×3×3 ≈ 1×1×1 (SSv2: 66.3 vs 46.2, 46.2)"
                            .into(),
                        ..frame_averaging_blind(&[k(1, 3, 3), k(1, 1, 1)], &[k(3, 1, 1), k(3, 3, 3)])
                    },
                    appearance_solved(&[k(1, 1, 1), k(1, 3, 3), k(3, 1, 1), k(3, 3, 3)]),
                ],
            }
        }
        "mst_table4_cls_shift" => ProxyTable {
            columns: vec![("k400_top1", Task::Appearance), ("ssv2_top1", Task::Motion)],
            method: |id| match id {
                "wo_shift" => Some(Method::MstAdapterNoShift),
                "w_shift" => Some(Method::MstAdapter),
                _ => None,
            },
            claims: vec![ranks_above(
                "the [CLS] token shift helps on Something-Something v2 (65.1 → 65.3 top-1)",
                Task::Motion,
                Method::MstAdapter,
                Method::MstAdapterNoShift,
                "the published gain is 0.2 points; the proxy's MST-Adapter varies by several points between seeds at 300 steps, so a gain of that size cannot show",
            )],
        },
        _ => return None,
    })
}

/// The seeds of the proxy runs: `--seeds`, or 1, 2, 3.
pub fn seeds(args: &Args) -> Vec<u64> {
    if args.seeds.is_empty() {
        vec![1, 2, 3]
    } else {
        args.seeds.clone()
    }
}

/// Every run the table needs, in row order (methods once per task).
pub fn keys(t: &ProxyTable, rows: &[String], claims_too: bool, budget: f64, seeds: &[u64]) -> Vec<RunKey> {
    let mut pairs: Vec<(Method, Task)> = Vec::new();
    for &(_, task) in &t.columns {
        for id in rows {
            if let Some(m) = (t.method)(id) {
                if !pairs.contains(&(m, task)) {
                    pairs.push((m, task));
                }
            }
        }
    }
    if claims_too {
        for c in &t.claims {
            for p in c.needs() {
                if !pairs.contains(&p) {
                    pairs.push(p);
                }
            }
        }
    }
    pairs
        .into_iter()
        .flat_map(|(method, task)| {
            let b: Budget = Budget::default_for(task).scaled(budget);
            seeds.iter().map(move |&seed| RunKey { method, task, budget: b, seed })
        })
        .collect()
}

/// Adds the proxy columns and claims of `rep`'s table, running (or reading from the cache) every
/// run they need. Tables without a proxy are left as they are.
pub fn add(rep: &mut Report, args: &Args) -> anyhow::Result<()> {
    let Some(t) = table(&rep.binary) else { return Ok(()) };
    let budget = args.proxy_budget.unwrap_or(1.0);
    anyhow::ensure!(budget.is_finite() && budget > 0.0, "--proxy-budget must be a positive number, is {budget}");
    let seeds = seeds(args);
    let ids: Vec<String> = rep.rows.iter().map(|r| r.id.clone()).collect();
    let keys = keys(&t, &ids, true, budget, &seeds);
    let cache = bench::default_cache_dir();
    let results = bench::run_all(&keys, Some(&cache), true)?;
    fill(rep, &t, &results, &seeds, budget, &cache.display().to_string());
    Ok(())
}

/// Puts `results` into `rep`: a proxy column after each result column's "ours", the claims and a
/// note on what the column is (the layout a snapshot test checks with fixed results).
pub fn fill(rep: &mut Report, t: &ProxyTable, results: &[RunResult], seeds: &[u64], budget: f64, cache: &str) {
    let stats = Stats::new(results);
    for &(key, task) in &t.columns {
        let Some(ours) = rep.columns.iter().position(|c| c.key.as_deref() == Some(key) && c.kind == Kind::Ours) else {
            continue;
        };
        let column = Column { kind: Kind::Proxy, ..rep.columns[ours].clone() };
        let cells: Vec<Value> = rep
            .rows
            .iter()
            .map(|r| match (t.method)(&r.id).and_then(|m| stats.get(m, task, Metric::Top1)) {
                Some(s) => Value::MeanStd { mean: s.0, std: s.1, runs: s.2 },
                None => Value::Blank,
            })
            .collect();
        rep.insert_column(ours + 1, column, cells);
    }
    let tasks: Vec<String> = t
        .columns
        .iter()
        .map(|(key, task)| format!("{key} → the {} task (stands in for {})", task.name(), task.stands_in_for()))
        .collect();
    let seeds_text: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let budgets: BTreeMap<&str, Budget> =
        t.columns.iter().map(|&(_, task)| (task.name(), Budget::default_for(task).scaled(budget))).collect();
    let budget_text: Vec<String> =
        budgets.iter().map(|(task, b)| format!("{task}: {} steps × {} clips, lr {}", b.steps, b.batch, b.lr)).collect();
    rep.notes.push((
        "proxy".into(),
        format!(
            "proxy columns: top-1 (%) on the embedded CPU benchmark, mean ± std over seeds {} — not the paper's data \
             and never comparable with the published figures: {}. Each row's method on one small pre-trained \
             backbone (the CLIP stand-in: ViT width 64, 4 layers, patch 8, 32×32 × {} frames), the kit's own \
             presets, trainer and evaluator; rows that differ only in backbone size or frames share their method's \
             result. Budget {}. Cached in {} (book: \"The embedded CPU benchmark\").",
            seeds_text.join(", "),
            tasks.join("; "),
            bench::GEOMETRY.frames,
            budget_text.join("; "),
            cache
        ),
    ));
    for (i, c) in t.claims.iter().enumerate() {
        let o: Outcome = c.outcome(&stats);
        rep.notes.push((format!("claim {}", i + 1), o.line(&c.text)));
    }
}
