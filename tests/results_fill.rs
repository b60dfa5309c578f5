//! `--results DIR`: the records `evaluate --out` writes fill exactly the accuracy cells they
//! evaluate, and every unusable folder or file is an error that names it.
//!
//! A record fills a cell when its model config equals the row's model with the column's data set
//! classifier (400 classes for K400), its views equal the row's views and its data set is the
//! column's. The records here are written by hand with invented metrics: what is tested is the
//! matching, not an accuracy.

use std::path::{Path, PathBuf};

/// A fresh folder under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va_results_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

use video_adapters::data::Manifest;
use video_adapters::eval::Metrics;
use video_adapters::repro::engine::{expected_eval, report, Kind, Metric, Value};
use video_adapters::repro::{self, Args, Runner, Spec};
use video_adapters::results::EvalRecord;

fn spec(name: &str) -> Spec {
    match repro::all().into_iter().find(|(n, _)| *n == name).expect("table").1 {
        Runner::Spec(s, _) => s(),
        Runner::Custom(_) => panic!("{name} is custom"),
    }
}

/// A record for (row, key) of `spec`, with top-1 `top1`.
fn record(spec: &Spec, row_id: &str, key: &str, top1: f64) -> EvalRecord {
    let table = repro::published::load(spec.paper, spec.file).unwrap();
    let row = table.rows.iter().find(|r| r.id == row_id).expect("row");
    let (model, views, dataset, metric) = expected_eval(spec, row, key).expect("a result cell");
    assert_eq!(metric, Metric::Top1);
    EvalRecord {
        format: 1,
        model,
        views,
        pipeline: "st_k400_test".into(),
        backbone: None,
        checkpoint: None,
        recipe: None,
        init: None,
        dataset: Manifest {
            dataset: dataset.into(),
            source: "hand-written for the test".into(),
            listed: 10,
            found: 10,
            unreadable: 0,
            list_sha256: "0".repeat(64),
        },
        metrics: Metrics { top1, top5: 99.0, mean_class_accuracy: top1, videos: 10 },
        clips_per_s: 1.0,
        written_by: "tests/results_fill.rs".into(),
    }
}

fn args(dir: &Path) -> Args {
    Args { counts_only: true, results: Some(dir.to_path_buf()), ..Default::default() }
}

/// The "ours" value of result column `key` in row `row_id`.
fn ours(rep: &video_adapters::repro::Report, row_id: &str, key: &str) -> Option<f64> {
    let row = rep.rows.iter().find(|r| r.id == row_id).unwrap();
    let col = rep.columns.iter().position(|c| c.kind == Kind::Ours && c.key.as_deref() == Some(key)).unwrap();
    match &row.cells[col] {
        Value::Fixed { value, .. } => *value,
        other => panic!("{other:?}"),
    }
}

/// The first row of ST-Adapter Table 1 with a model (not a reference row) and its first result key.
fn a_cell(spec: &Spec) -> (String, String) {
    let table = repro::published::load(spec.paper, spec.file).unwrap();
    for row in &table.rows {
        for key in &spec.results {
            if expected_eval(spec, row, key).is_some() {
                return (row.id.clone(), key.to_string());
            }
        }
    }
    panic!("no result cell");
}

#[test]
fn a_record_fills_its_cell_and_no_other() {
    let spec = spec("table1_k400");
    let (row, key) = a_cell(&spec);
    let dir = scratch("d1");
    record(&spec, &row, &key, 12.5).save(&dir.join("one.ron")).unwrap();
    let rep = report(&spec, &args(&dir)).unwrap();
    assert_eq!(ours(&rep, &row, &key), Some(12.5));
    // the record fills its row's cells on its data set (top-1, and top-5 where the table prints
    // it), and no cell of any other row
    let filled: Vec<&str> = rep
        .rows
        .iter()
        .flat_map(|r| r.cells.iter().zip(&rep.columns).map(move |(v, c)| (r.id.as_str(), v, c)))
        .filter(|(_, v, c)| c.kind == Kind::Ours && matches!(v, Value::Fixed { value: Some(_), .. }))
        .map(|(id, _, _)| id)
        .collect();
    assert!(!filled.is_empty() && filled.iter().all(|id| *id == row), "{filled:?}");
    let note = &rep.notes.iter().find(|(id, _)| id == "results").unwrap().1;
    assert!(note.contains("one.ron"), "{note}");
}

#[test]
fn without_results_every_ours_accuracy_is_blank() {
    let spec = spec("table1_k400");
    let (row, key) = a_cell(&spec);
    let rep = report(&spec, &Args { counts_only: true, ..Default::default() }).unwrap();
    assert_eq!(ours(&rep, &row, &key), None);
}

fn error(spec: &Spec, dir: &Path) -> String {
    format!("{:#}", report(spec, &args(dir)).expect_err("must fail"))
}

#[test]
fn unusable_folders_and_files_are_errors_naming_them() {
    let spec = spec("table1_k400");
    let (row, key) = a_cell(&spec);

    // a missing folder
    let missing = Path::new("/nonexistent/results");
    assert!(error(&spec, missing).contains("/nonexistent/results"));

    // an empty folder
    let empty = scratch("d2");
    assert!(error(&spec, &empty).contains("no results file"));

    // a file that is not a record
    let bad = scratch("d3");
    std::fs::write(bad.join("broken.ron"), "(format: 1, model: oops)").unwrap();
    assert!(error(&spec, &bad).contains("broken.ron"));

    // out-of-range and non-finite metrics
    for v in [f64::NAN, 101.0, -1.0] {
        let dir = scratch("d4");
        record(&spec, &row, &key, v).save(&dir.join("wild.ron")).unwrap();
        let e = error(&spec, &dir);
        assert!(e.contains("wild.ron") && e.contains("top1"), "{e}");
    }

    // two records for one cell
    let twice = scratch("d5");
    record(&spec, &row, &key, 10.0).save(&twice.join("a.ron")).unwrap();
    record(&spec, &row, &key, 11.0).save(&twice.join("b.ron")).unwrap();
    let e = error(&spec, &twice);
    assert!(e.contains("a.ron") && e.contains("b.ron"), "{e}");

    // a record of another data set (so of no cell of this table)
    let other = scratch("d6");
    let mut r = record(&spec, &row, &key, 10.0);
    r.dataset.dataset = "ucf101".into();
    r.save(&other.join("ucf.ron")).unwrap();
    let e = error(&spec, &other);
    assert!(e.contains("no record evaluates a row") && e.contains("ucf.ron"), "{e}");

    // a record at other views
    let views = scratch("d7");
    let mut r = record(&spec, &row, &key, 10.0);
    r.views.clips += 1;
    r.save(&views.join("views.ron")).unwrap();
    assert!(error(&spec, &views).contains("views.ron"));
}

#[test]
fn a_table_without_accuracy_columns_refuses_results() {
    let spec = spec("st_table6_training_cost");
    let dir = scratch("d8");
    let s = spec_for_results_error(&spec, &dir);
    assert!(s.contains("no result column"), "{s}");
}

fn spec_for_results_error(spec: &Spec, dir: &Path) -> String {
    let any = self::spec("table1_k400");
    let (row, key) = a_cell(&any);
    record(&any, &row, &key, 10.0).save(&dir.join("r.ron")).unwrap();
    error(spec, dir)
}
