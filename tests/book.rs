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

/// A page's text with its markdown includes expanded (as mdBook does), so that links in an
/// included file are read relative to the page that includes it.
fn expanded(page: &Path) -> String {
    let text = std::fs::read_to_string(page).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("{{#include ") {
        out += &rest[..i];
        let after = &rest[i + 11..];
        let end = after.find("}}").unwrap();
        let spec = after[..end].trim();
        let (path, sel) = spec.split_once(':').map_or((spec, None), |(p, s)| (p, Some(s)));
        if path.ends_with(".md") {
            let target = std::fs::read_to_string(page.parent().unwrap().join(path)).unwrap();
            match sel {
                Some(a) if !a.starts_with(|c: char| c.is_ascii_digit()) => {
                    let start =
                        target.find(&format!("ANCHOR: {a} ")).or(target.find(&format!("ANCHOR: {a}\n"))).unwrap();
                    let stop = target.find(&format!("ANCHOR_END: {a}")).unwrap();
                    out += &target[start..stop];
                }
                _ => out += &target,
            }
        }
        rest = &after[end + 2..];
    }
    out + rest
}

/// Markdown files that pages include rather than link (their links are checked in the pages).
fn partials() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for page in pages() {
        for (path, _) in includes(&std::fs::read_to_string(&page).unwrap()) {
            if path.ends_with(".md") {
                v.push(page.parent().unwrap().join(path).canonicalize().unwrap());
            }
        }
    }
    v
}

/// The fragment ids a rendered page will have: explicit `id="…"` and mdBook's heading ids
/// (lowercase, spaces as dashes, other punctuation dropped).
fn fragment_ids(text: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        text.split("id=\"").skip(1).filter_map(|t| t.split('"').next()).map(str::to_string).collect();
    for line in text.lines().filter(|l| l.starts_with('#')) {
        let h = line.trim_start_matches('#').trim();
        ids.push(
            h.to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect(),
        );
    }
    ids
}

/// Every relative link (markdown or HTML) of every page reaches an existing file, and its
/// fragment (`#note-…`, `#cause-…`, a heading) an existing id.
#[test]
fn every_relative_link_resolves() {
    let partials = partials();
    let mut fragments = 0;
    for page in pages().into_iter().filter(|p| !partials.contains(&p.canonicalize().unwrap())) {
        let text = expanded(&page);
        let mut links: Vec<&str> = Vec::new();
        for (open, close) in [("](", ')'), ("href=\"", '"')] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(open) {
                let after = &rest[i + open.len()..];
                let end = after.find(close).unwrap();
                links.push(&after[..end]);
                rest = &after[end..];
            }
        }
        for link in links {
            if link.is_empty() || link.starts_with("http") {
                continue;
            }
            let (file, frag) = link.split_once('#').map_or((link, None), |(f, x)| (f, Some(x)));
            let target = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            assert!(target.is_file(), "{}: link to missing {link}", page.display());
            if let (Some(frag), true) = (frag, target.extension().is_some_and(|x| x == "md")) {
                let ids = fragment_ids(&expanded(&target));
                assert!(ids.iter().any(|i| i == frag), "{}: link {link}: no id `{frag}` there", page.display());
                fragments += 1;
            }
        }
    }
    assert!(fragments > 50, "only {fragments} fragment links checked");
    // the summary reaches every reproduction page
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    for (name, _) in video_adapters::repro::all() {
        assert!(summary.contains(&format!("(generated/{name}.md)")), "SUMMARY.md has no page for {name}");
    }
}

/// Every ✗ on a table page is a link to the note that explains it (issue 13).
#[test]
fn every_mismatch_mark_links_to_its_note() {
    for (name, _) in video_adapters::repro::all() {
        let text = std::fs::read_to_string(book().join(format!("generated/{name}.md"))).unwrap();
        let linked = text.matches("[✗ ").count();
        let runner = video_adapters::repro::all().into_iter().find(|(n, _)| *n == name).unwrap().1;
        let mismatches = video_adapters::repro::counts_report(runner).unwrap().marks().1;
        assert_eq!(linked, mismatches, "{name}: {mismatches} ✗ but {linked} links to notes");
    }
}

#[test]
fn generated_figures_and_discrepancies_are_current() {
    for (name, svg) in video_adapters::figures::all().unwrap() {
        let have = std::fs::read_to_string(book().join("figures").join(&name)).unwrap_or_default();
        assert!(have == svg, "book/src/figures/{name} is stale: cargo run --release --bin book_assets");
    }
    for (file, want) in [
        ("generated/discrepancies.md", video_adapters::repro::discrepancies_markdown().unwrap()),
        ("generated/tables_summary.md", video_adapters::repro::tables_summary_markdown().unwrap()),
        ("generated/measured_tables.md", video_adapters::repro::measured_markdown().unwrap()),
        ("measured/proxy_claims.md", video_adapters::repro::proxy::claims_markdown(&book().join("measured")).unwrap()),
    ] {
        let have = std::fs::read_to_string(book().join(file)).unwrap_or_default();
        assert!(have == want, "book/src/{file} is stale: cargo run --release --bin book_assets");
    }
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
}

/// The committed benchmark run (`bench --save`, issue 12) has a row for every target of the issue,
/// both sides measured, and its Markdown page is the rendering of its JSON figures.
#[test]
fn the_committed_benchmark_run_covers_every_target() {
    let report = video_adapters::bench::Report::load(&book().join("measured/bench.json")).unwrap();
    let md = std::fs::read_to_string(book().join("measured/bench.md")).unwrap();
    assert!(md == report.markdown(), "book/src/measured/bench.md is not bench.json rendered: bench --render");
    assert!(report.torch.is_some(), "the committed run has no PyTorch side");
    let ratios = report.ratios();
    for row in [
        "ViT-B/16 block forward (8 × 197 tokens)",
        "ViT-B/16 block forward+backward, all weights trained",
        "ST-Adapter training step",
        "AIM training step",
        "MST-Adapter training step",
        "ST-Adapter evaluation",
        "AIM evaluation",
        "MST-Adapter evaluation",
        "Small preset training step",
        "ST-Adapter training step, peak memory",
    ] {
        assert!(ratios.iter().any(|(label, r, _)| label.starts_with(row) && r.is_finite()), "no ratio for {row}");
    }
    assert!(md.contains("÷ full fine-tuning") && md.contains("share of peak"), "own full step or GEMM peak missing");
}

/// Every display equation stands alone in an HTML block (`<div class="equation">` on the line
/// before, `</div>` after): markdown then leaves the TeX that KaTeX keeps in the MathML untouched
/// (inside a paragraph, `_i(V_` became emphasis and broke the equation out of its `<math>`).
#[test]
fn display_equations_are_html_blocks() {
    let mut n = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains("$$")) {
            assert!(
                line.starts_with("$$ ") && line.ends_with(" $$") && i > 0 && i + 1 < lines.len(),
                "{}:{}: a display equation is one line `$$ … $$`",
                page.display(),
                i + 1
            );
            assert!(
                lines[i - 1] == "<div class=\"equation\">" && lines[i + 1] == "</div>",
                "{}:{}: wrap the equation in <div class=\"equation\"> … </div>",
                page.display(),
                i + 1
            );
            n += 1;
        }
    }
    assert!(n >= 8, "ST-Adapter Eq. 2, AIM Eqs. 3-5, MST-Adapter Eqs. 6-9: found {n}");
}

/// The committed proxy runs (`proxy -- runs`, issue 10) hold exactly one run of every charted
/// method for every seed, on the motion task at the default budget, with the current benchmark
/// version and a full loss curve each; the two proxy figures are checked to be this file rendered
/// by `generated_figures_and_discrepancies_are_current`.
#[test]
fn the_committed_proxy_runs_cover_every_charted_method_with_its_curve() {
    use video_adapters::proxy::bench::{BENCH_VERSION, CURVE_EVERY};
    use video_adapters::proxy::runs::{keys, Runs};
    let runs = Runs::load(&book().join("measured/proxy_runs.json")).unwrap();
    let stale = "book/src/measured/proxy_runs.json is stale: cargo run --release --bin proxy -- runs";
    assert_eq!(runs.bench_version, BENCH_VERSION, "{stale}");
    let want = keys();
    assert_eq!(runs.runs.len(), want.len(), "{stale}");
    for key in &want {
        let found: Vec<_> = runs.runs.iter().filter(|r| r.key == *key).collect();
        assert_eq!(found.len(), 1, "{} seed {}: {} runs. {stale}", key.method.name(), key.seed, found.len());
        let curve = &found[0].curve;
        assert_eq!(curve.len(), key.budget.steps.div_ceil(CURVE_EVERY), "{} seed {}", key.method.name(), key.seed);
        assert!(curve.iter().all(|v| v.is_finite() && *v > 0.0), "{} seed {}", key.method.name(), key.seed);
    }
}

/// The appendix's kernel count is the kit's: the number of kernels listed in
/// `ops::cuda::SOURCES` (itself checked against the `.cu` files' definitions).
#[test]
fn the_appendix_counts_the_cuda_kernels_there_are() {
    let n: usize = video_adapters::ops::cuda::SOURCES.iter().map(|s| s.kernels.len()).sum();
    let text = std::fs::read_to_string(book().join("appendix.md")).unwrap();
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(&format!("`src/ops/cuda/*.cu` ({n} kernels")), "book/src/appendix.md should say {n} kernels");
}
