//! The proxy columns' layout and the claim lines (issue 10, "Proxy columns and claim lines appear
//! in every reproduction with accuracy columns; a snapshot test covers their layout, not their
//! values"): the tables are filled with a fixed, made-up result set, so the snapshots change only
//! when the layout does. The values here are NOT measurements.

use video_adapters::proxy::bench::{Budget, RunKey, RunResult};
use video_adapters::proxy::synth::Task;
use video_adapters::repro::engine::Kind;
use video_adapters::repro::{all, counts_report, proxy, Format, Runner};

/// A fixed result for every run a table's proxy needs: top-1 and direction made up from the
/// method's position so that frame-averaging methods sit at 50 % direction and the others above.
fn fake_results(t: &proxy::ProxyTable, ids: &[String], seeds: &[u64]) -> Vec<RunResult> {
    proxy::keys(t, ids, true, 1.0, seeds)
        .into_iter()
        .map(|key: RunKey| {
            let temporal = !matches!(
                key.method,
                video_adapters::proxy::Method::LinearProbe
                    | video_adapters::proxy::Method::FullFinetune
                    | video_adapters::proxy::Method::Houlsby
            );
            let s = key.seed as f64;
            let (top1, direction) = match key.task {
                Task::Motion if temporal => (40.0 + s, Some(75.0 + s)),
                Task::Motion => (18.0 + s / 2.0, Some(50.0)),
                _ => (99.0 + s / 10.0, None),
            };
            RunResult {
                key,
                top1,
                kind: direction.map(|_| 60.0),
                direction,
                tunable: 1000,
                wall_seconds: 1.0,
                cpu_seconds: Some(1.0),
                loss: 0.1,
                curve: vec![],
            }
        })
        .collect()
}

/// Every table with a proxy gets, for each of its proxy result columns, a "proxy" column right
/// after that column's "ours", a cell for every row whose method the kit runs (blank otherwise),
/// a note saying what the column is, and one line per claim, "reproduced" or "NOT reproduced"
/// with its numbers.
#[test]
fn proxy_columns_sit_after_ours_with_a_note_and_claim_lines() {
    let seeds = [1, 2, 3];
    for (name, runner) in all() {
        let Some(t) = proxy::table(name) else { continue };
        let mut rep = counts_report(runner).unwrap();
        let ids: Vec<String> = rep.rows.iter().map(|r| r.id.clone()).collect();
        let results = fake_results(&t, &ids, &seeds);
        proxy::fill(&mut rep, &t, &results, &seeds, 1.0, "<cache>");
        for &(key, _) in &t.columns {
            let j = rep.columns.iter().position(|c| c.key.as_deref() == Some(key) && c.kind == Kind::Proxy);
            let j = j.unwrap_or_else(|| panic!("{name}: no proxy column for {key}"));
            assert_eq!(rep.columns[j - 1].kind, Kind::Ours, "{name}: {key}");
            let filled = rep.rows.iter().filter(|r| (t.method)(&r.id).is_some()).count();
            assert!(filled > 0, "{name}: no row has a proxy method");
        }
        assert!(rep.notes.iter().any(|(id, _)| id == "proxy"), "{name}");
        let claims: Vec<&String> = rep.notes.iter().filter(|(id, _)| id.starts_with("claim")).map(|(_, t)| t).collect();
        assert_eq!(claims.len(), t.claims.len(), "{name}");
        for c in claims {
            assert!(c.contains("reproduced: "), "{name}: {c}");
        }
        insta::assert_snapshot!(format!("{name}_layout"), rep.render(Format::Text));
    }
}

/// The budget flag scales steps only, and never below one step.
#[test]
fn proxy_budget_scales_steps_only() {
    let b = Budget::default_for(Task::Motion);
    let h = b.scaled(0.5);
    assert_eq!((h.steps, h.batch, h.train_clips, h.lr), (b.steps / 2, b.batch, b.train_clips, b.lr));
    assert_eq!(b.scaled(1e-9).steps, 1);
}

/// The cache key changes with every field that decides a run's numbers.
#[test]
fn cache_key_names_method_task_budget_and_seed() {
    use video_adapters::proxy::Method;
    let k =
        RunKey { method: Method::ST_ADAPTER, task: Task::Motion, budget: Budget::default_for(Task::Motion), seed: 1 };
    let h = k.hash("b");
    assert_eq!(h, k.hash("b"));
    for other in [
        RunKey { method: Method::Aim, ..k },
        RunKey { task: Task::Appearance, ..k },
        RunKey { budget: k.budget.scaled(0.5), ..k },
        RunKey { seed: 2, ..k },
    ] {
        assert_ne!(other.hash("b"), h);
    }
    assert_ne!(k.hash("other backbone"), h);
}

/// The claims the committed pages report as NOT reproduced, by (table, claim index from 0); every
/// other claim of every page is reproduced. A change here is a change of results: say why.
const NOT_REPRODUCED: &[(&str, usize)] = &[
    ("table1_k400", 1),
    ("mst_table3_components", 0),
    ("mst_table3_components", 1),
    ("mst_table4_cls_shift", 0),
    ("mst_table5_position", 0),
    ("mst_table6_layers", 0),
    ("mst_table6_layers", 1),
    ("st_table1_benchmark", 2),
    ("st_table5_ablations", 0),
    ("st_table5_ablations", 1),
    ("st_table5_ablations", 2),
    ("aim_table1_components", 0),
    ("aim_table7_position", 1),
    ("aim_table8_ratio", 1),
];

/// The book's proxy pages (`book/src/measured/proxy_*.md`, written by `BOOK=1 scripts/proxy_all`)
/// exist for every table with a proxy and show its proxy columns and one line per claim, each
/// reproduced or NOT reproduced (never "not checked": every run a claim needs was there), the ones
/// not reproduced being exactly [`NOT_REPRODUCED`].
#[test]
fn committed_proxy_outputs_show_their_columns_and_reproduced_claims() {
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/measured");
    for (name, _) in all() {
        let Some(t) = proxy::table(name) else { continue };
        let path = book.join(format!("proxy_{name}.md"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
        assert!(text.contains(" proxy |"), "{name}: no proxy column");
        for (i, c) in t.claims.iter().enumerate() {
            let line = text
                .lines()
                .find(|l| l.contains(&format!("**claim {}**", i + 1)))
                .unwrap_or_else(|| panic!("{name}: claim {} missing", i + 1));
            assert!(line.contains(&c.text.replace('|', "\\|")), "{name}: claim {} is not `{}`", i + 1, c.text);
            let want = !NOT_REPRODUCED.contains(&(name, i));
            assert!(line.contains("— reproduced") || line.contains("— NOT reproduced"), "{name}: {line}");
            assert_eq!(line.contains("— reproduced"), want, "{name}: {line}");
        }
    }
}

/// The result columns a reproduction prints (accuracy), by fixture key; none for the custom tables.
fn result_keys(runner: Runner) -> Vec<&'static str> {
    match runner {
        Runner::Spec(spec, _) => spec().results,
        Runner::Custom(_) => vec![],
    }
}

/// Issue 10, item 5: "every reproduction with accuracy columns shows a proxy column for the rows
/// the kit implements". Every reproduction either has a proxy — each proxy column one of its
/// result columns, at least one row with a method — or an exemption that says why
/// (`proxy::exemption`: no result columns, or no row the kit implements), never both; and
/// `scripts/proxy_all` runs exactly the tables with a proxy.
#[test]
fn every_table_with_result_columns_has_a_proxy_or_a_reasoned_exemption() {
    let mut with_proxy = Vec::new();
    for (name, runner) in all() {
        let results = result_keys(runner);
        let exempt = proxy::exemption(name, !results.is_empty());
        match (proxy::table(name), exempt) {
            (Some(t), None) => {
                for (key, _) in &t.columns {
                    assert!(results.contains(key), "{name}: proxy column {key} is not a result column ({results:?})");
                }
                let rep = counts_report(runner).unwrap();
                let rows = rep.rows.iter().filter(|r| (t.method)(&r.id).is_some()).count();
                assert!(rows > 0, "{name}: no row has a proxy method");
                with_proxy.push(name);
            }
            (None, Some(why)) => assert!(!why.is_empty(), "{name}"),
            (Some(_), Some(why)) => panic!("{name} has a proxy and an exemption ({why})"),
            (None, None) => panic!("{name} has result columns {results:?} but neither a proxy nor an exemption"),
        }
    }
    let script = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/proxy_all"))
        .expect("scripts/proxy_all");
    let list =
        script.split("tables=\"").nth(1).and_then(|r| r.split('"').next()).expect("tables=\"…\" in scripts/proxy_all");
    let listed: Vec<&str> = list.split_whitespace().collect();
    assert_eq!(listed, with_proxy, "scripts/proxy_all's list against the tables with a proxy");
}

/// The exemptions are the rule's: tables without result columns, and ST-Adapter Table 10, whose
/// rows are all Swin-B (no ViT row the kit implements).
#[test]
fn exempt_tables_are_the_ones_without_results_or_implemented_rows() {
    let exempt: Vec<&str> = all()
        .into_iter()
        .filter(|(n, r)| proxy::exemption(n, !result_keys(*r).is_empty()).is_some())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        exempt,
        ["st_table6_training_cost", "st_table8_recipe", "st_table10_swin", "aim_table9_memory"],
        "the tables without a proxy"
    );
    let spec = video_adapters::repro::st_adapter::table10_swin();
    let table = video_adapters::repro::published::load(spec.paper, spec.file).unwrap();
    for row in &table.rows {
        assert!((spec.ours)(row).is_none(), "st_table10_swin implements row {}: it should get a proxy", row.id);
    }
}

/// The methods' serialized forms are part of every cached run's key: the seven methods the first
/// tables used keep theirs (so the cached runs stay valid), and an ablation at the default
/// setting is the plain method (one setting, one name, one cache entry).
#[test]
fn methods_keep_their_cache_names_and_defaults_are_the_plain_methods() {
    use video_adapters::baselines::{Arch, Tuning};
    use video_adapters::mst_adapter::{Placement, Pointwise};
    use video_adapters::proxy::{Layers, Method};
    use video_adapters::st_adapter::Position;
    let json = |m: Method| serde_json::to_string(&m).unwrap();
    assert_eq!(json(Method::ST_ADAPTER), r#"{"StAdapter":{"t":3,"h":1,"w":1}}"#);
    for (m, name) in [
        (Method::LinearProbe, "LinearProbe"),
        (Method::FullFinetune, "FullFinetune"),
        (Method::Houlsby, "Houlsby"),
        (Method::Aim, "Aim"),
        (Method::MstAdapter, "MstAdapter"),
        (Method::MstAdapterNoShift, "MstAdapterNoShift"),
    ] {
        assert_eq!(json(m), format!("\"{name}\""));
    }
    assert_eq!(Method::st(16, &[Position::PreMlp], Layers::ALL), Method::ST_ADAPTER);
    assert_eq!(Method::aim_with(true, true, Layers::ALL, 16), Method::Aim);
    assert_eq!(Method::mst_with(Pointwise::Dense, false, Placement::PostResidual, Layers::ALL), Method::MstAdapter);
    assert_eq!(Method::baseline(Arch::Sa, Tuning::Full), Method::FullFinetune);
    assert_eq!(Method::baseline(Arch::Sa, Tuning::LinearProbe), Method::LinearProbe);
    assert_eq!(Method::baseline(Arch::Sa, Tuning::Adapter { width: 16 }), Method::Houlsby);
    // and the plain methods' configs are what the ablation variants give at the default
    let clip = video_adapters::proxy::backbone();
    let ablated = Method::AimAblation { temporal: true, joint: true, layers: Layers::ALL, hidden: 16 };
    assert_eq!(ablated.cfg(&clip, 12, 4), Method::Aim.cfg(&clip, 12, 4));
    let ablated = Method::MstAblation {
        pointwise: Pointwise::Dense,
        average_fusion: false,
        placement: Placement::PostResidual,
        layers: Layers::ALL,
    };
    assert_eq!(ablated.cfg(&clip, 12, 4), Method::MstAdapter.cfg(&clip, 12, 4));
    let ablated =
        Method::StAblation { width: 16, pre_attn: false, pre_mlp: true, post_mlp: false, layers: Layers::ALL };
    assert_eq!(ablated.cfg(&clip, 12, 4), Method::ST_ADAPTER.cfg(&clip, 12, 4));
}

/// ViT-B/16's groups of four blocks map to the proxy layer at the depth of the group's centre
/// (`proxy::Layers`): blocks 1-4 → layer 1, 5-8 → layer 3, 9-12 → layer 4 (1-based), so the
/// ablations' "shallow < middle < deep" keep their order, one layer each.
#[test]
fn vit_b_block_groups_map_to_one_proxy_layer_each_in_depth_order() {
    use video_adapters::clip::Blocks;
    use video_adapters::proxy::Layers;
    assert_eq!(Layers::group(1, 4), Layers(0b0001));
    assert_eq!(Layers::group(5, 8), Layers(0b0100));
    assert_eq!(Layers::group(9, 12), Layers(0b1000));
    assert_eq!(Layers::group(5, 8).and(Layers::group(9, 12)).blocks(4), Blocks::List(vec![2, 3]));
    assert_eq!(Layers::ALL.blocks(4), Blocks::Last(4));
    assert_eq!(Layers(0b0101).name(), "layers 1, 3");
}
