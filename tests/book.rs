//! The book cannot fall out of date: every `{{#include}}` names an existing file (and anchor),
//! every Rust listing is an include (no hand-copied code), every relative link resolves, the
//! generated figures and pages are what the code writes now, and the measured outputs cover every
//! row of their tables.

use std::path::{Path, PathBuf};

fn book() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("book/src")
}

fn pages() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&book(), &mut v);
    v.sort();
    v
}

/// `{{#include path[:anchor|:lines]}}` directives of a page: (path, selector).
fn includes(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{#include ") {
        let after = &rest[i + 11..];
        let end = after.find("}}").expect("unclosed include");
        let spec = after[..end].trim();
        let (path, sel) = match spec.split_once(':') {
            Some((p, s)) => (p.to_string(), Some(s.to_string())),
            None => (spec.to_string(), None),
        };
        out.push((path, sel));
        rest = &after[end..];
    }
    out
}

#[test]
fn every_include_and_anchor_exists() {
    let mut n = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (path, sel) in includes(&text) {
            let target = page.parent().unwrap().join(&path);
            assert!(target.is_file(), "{}: include of missing file {path}", page.display());
            if let Some(sel) = sel.filter(|s| !s.chars().next().unwrap().is_ascii_digit()) {
                let src = std::fs::read_to_string(&target).unwrap();
                assert!(
                    src.contains(&format!("ANCHOR: {sel}\n")) && src.contains(&format!("ANCHOR_END: {sel}")),
                    "{}: anchor `{sel}` not in {path}",
                    page.display()
                );
            }
            n += 1;
        }
    }
    assert!(n > 20);
}

#[test]
fn rust_listings_are_includes_only() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut in_rust = false;
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("```") {
                in_rust = !in_rust && line.starts_with("```rust");
                continue;
            }
            if in_rust {
                assert!(
                    line.trim().is_empty() || line.trim().starts_with("{{#include "),
                    "{}:{}: a Rust listing must be an {{{{#include}}}} of the source, not a copy",
                    page.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn every_relative_link_resolves() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap();
            let link = &after[..end];
            rest = &after[end..];
            if link.is_empty() || link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let file = link.split('#').next().unwrap();
            assert!(page.parent().unwrap().join(file).is_file(), "{}: link to missing {link}", page.display());
        }
    }
    // the summary reaches every reproduction page
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    for (name, _) in video_adapters::repro::all() {
        assert!(summary.contains(&format!("(generated/{name}.md)")), "SUMMARY.md has no page for {name}");
    }
}

#[test]
fn generated_figures_and_discrepancies_are_current() {
    for (name, svg) in video_adapters::figures::all().unwrap() {
        let have = std::fs::read_to_string(book().join("figures").join(&name)).unwrap_or_default();
        assert!(have == svg, "book/src/figures/{name} is stale: cargo run --release --bin book_assets");
    }
    let have = std::fs::read_to_string(book().join("generated/discrepancies.md")).unwrap_or_default();
    assert!(
        have == video_adapters::repro::discrepancies_markdown().unwrap(),
        "discrepancies.md is stale: cargo run --release --bin book_assets"
    );
}

/// The committed measurements (scripts/measure_tables.sh) list every row of their table, and their
/// measured columns are filled for every row the kit implements.
#[test]
fn measured_outputs_cover_their_tables() {
    use video_adapters::repro::{all, counts_report, measure::Measure, Runner};
    let measured: Vec<_> = all()
        .into_iter()
        .filter_map(|(name, runner)| match runner {
            Runner::Spec(_, Some(kind)) => Some((name, kind, runner)),
            _ => None,
        })
        .collect();
    // ST-Adapter Tables 6 and 11, AIM Tables 6, 9 and 10
    assert_eq!(measured.len(), 5, "measured tables: {:?}", measured.iter().map(|m| m.0).collect::<Vec<_>>());
    for (name, kind, runner) in measured {
        let path = book().join("measured").join(format!("{name}.md"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: ./scripts/measure_tables.sh", path.display()));
        let rep = counts_report(runner).unwrap();
        for row in &rep.rows {
            assert!(text.contains(&row.label.replace('|', "\\|")), "{name}: row {} missing", row.label);
        }
        assert!(text.contains("Measured here, in this run"), "{name}: no measurement note");
        if kind == Measure::Training {
            assert!(
                text.contains("weights + optimizer MB (counted)"),
                "{name}: no counted training state: ./scripts/measure_tables.sh"
            );
        }
    }
    let bench = std::fs::read_to_string(book().join("measured/bench_block.md"))
        .expect("book/src/measured/bench_block.md: ./scripts/measure_tables.sh");
    for row in [
        "dfdx stock ops, all weights trained",
        "ours, all weights trained",
        "ours, frozen weights (input gradient only)",
        "ours, forward only",
    ] {
        assert!(bench.contains(row), "bench_block.md: row {row} missing");
    }
}
