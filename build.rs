//! Embeds the published tables (`fixtures/published/<paper>/<table>.ron`) in the library, so the
//! reproduction binaries run from anywhere (a moved checkout, `cargo install`): writes
//! `$OUT_DIR/published.rs` with one `include_str!` per file.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("fixtures/published");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for paper in std::fs::read_dir(&root).expect("fixtures/published is readable") {
        let paper = paper.expect("a directory entry").path();
        if !paper.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&paper).expect("a paper's folder is readable") {
            let f = f.expect("a directory entry").path();
            if f.extension().is_some_and(|e| e == "ron") {
                let name = |p: &Path| p.file_stem().and_then(|s| s.to_str()).expect("UTF-8 file names").to_string();
                files.push((name(&paper), name(&f), f));
            }
        }
    }
    files.sort();
    let mut out = String::from("/// (paper, table, RON text) of every file in fixtures/published, sorted.\n");
    out += "pub const FILES: &[(&str, &str, &str)] = &[\n";
    for (paper, table, path) in &files {
        writeln!(out, "    ({paper:?}, {table:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out += "];\n";
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("published.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
