//! Every published-table fixture parses and is internally consistent (unique row ids, cells only
//! in declared columns, notes pointing at existing rows).

use video_adapters::repro::published::{dir, Published};

#[test]
fn every_published_table_fixture_parses() {
    let mut n = 0;
    for paper in std::fs::read_dir(dir()).unwrap() {
        let paper = paper.unwrap().path();
        for f in std::fs::read_dir(&paper).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "ron") {
                let t = Published::load(&f).unwrap_or_else(|e| panic!("{e:#}"));
                assert!(!t.rows.is_empty(), "{}: no rows", f.display());
                n += 1;
            }
        }
    }
    assert!(n > 0);
}
