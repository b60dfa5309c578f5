//! Every published-table fixture parses and is internally consistent (unique row ids, cells only
//! in declared columns, notes pointing at existing rows and columns), and the library embeds
//! exactly the files of `fixtures/published` (so the binaries need no checkout at run time).

use std::path::PathBuf;

use video_adapters::repro::published::{load, tables, Published};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/published")
}

/// Every file parses from disk, and the embedded copy is the same table.
#[test]
fn every_published_table_fixture_parses() {
    let mut on_disk = Vec::new();
    for paper in std::fs::read_dir(dir()).unwrap() {
        let paper = paper.unwrap().path();
        for f in std::fs::read_dir(&paper).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "ron") {
                let t = Published::load(&f).unwrap_or_else(|e| panic!("{e:#}"));
                assert!(!t.rows.is_empty(), "{}: no rows", f.display());
                let (p, name) =
                    (paper.file_name().unwrap().to_string_lossy(), f.file_stem().unwrap().to_string_lossy());
                assert_eq!(load(&p, &name).unwrap(), t, "{}: the embedded copy differs", f.display());
                on_disk.push((p.to_string(), name.to_string()));
            }
        }
    }
    on_disk.sort();
    let embedded: Vec<(String, String)> = tables().into_iter().map(|(p, t)| (p.into(), t.into())).collect();
    assert_eq!(embedded, on_disk);
    assert!(!on_disk.is_empty());
}

/// A table that was not embedded is an error naming the file it would be.
#[test]
fn an_unknown_table_is_named() {
    let e = load("st_adapter", "table99").unwrap_err().to_string();
    assert!(e.contains("fixtures/published/st_adapter/table99.ron") && e.contains("embedded"), "{e}");
}
