//! The published tables, reproduced: load the published numbers (`fixtures/published`), compute
//! ours from the kit's models, print both with Δ and a mark, and explain every mismatch.
//!
//! One binary per table (`reproductions/*.rs`), each a line calling [`main`] with its table here.

pub mod aim;
pub mod engine;
pub mod measure;
pub mod mst_adapter;
pub mod published;
pub mod st_adapter;

pub use engine::{Args, Format, Report, Spec};

use anyhow::Context as _;

/// How a table is produced.
#[derive(Clone, Copy)]
pub enum Runner {
    /// Published vs ours from a [`Spec`], optionally with measured columns (cost tables).
    Spec(fn() -> Spec, Option<measure::Measure>),
    /// A table of its own shape (ST-Adapter Table 8, the recipe).
    Custom(fn(&Args) -> anyhow::Result<Report>),
}

/// Every reproduction: (binary name, runner), in the papers' order.
pub fn all() -> Vec<(&'static str, Runner)> {
    use Runner::*;
    vec![
        ("table1_k400", Spec(mst_adapter::table1_k400, None)),
        ("mst_table2_ssv2", Spec(mst_adapter::table2_ssv2, None)),
        ("mst_table3_components", Spec(mst_adapter::table3_components, None)),
        ("mst_table4_cls_shift", Spec(mst_adapter::table4_cls_shift, None)),
        ("mst_table5_position", Spec(mst_adapter::table5_position, None)),
        ("mst_table6_layers", Spec(mst_adapter::table6_layers, None)),
        ("st_table1_benchmark", Spec(st_adapter::table1_benchmark, None)),
        ("st_table2_k400", Spec(st_adapter::table2_k400, None)),
        ("st_table3_ssv2", Spec(st_adapter::table3_ssv2, None)),
        ("st_table4_ek100", Spec(st_adapter::table4_ek100, None)),
        ("st_table5_ablations", Spec(st_adapter::table5_ablations, None)),
        ("st_table6_training_cost", Spec(st_adapter::table6_training_cost, Some(measure::Measure::Training))),
        ("st_table7_kernel", Spec(st_adapter::table7_kernel, None)),
        ("st_table8_recipe", Custom(st_adapter::table8_recipe)),
        ("st_table9_foundation_models", Spec(st_adapter::table9_foundation_models, None)),
        ("st_table10_swin", Spec(st_adapter::table10_swin, None)),
        ("st_table11_inference_speed", Spec(st_adapter::table11_inference_speed, Some(measure::Measure::Inference))),
        ("st_table12_ucf_hmdb", Spec(st_adapter::table12_ucf_hmdb, None)),
        ("aim_table1_components", Spec(aim::table1_components, None)),
        ("aim_table2_k400", Spec(aim::table2_k400, None)),
        ("aim_table3_ssv2", Spec(aim::table3_ssv2, None)),
        ("aim_table4_k700", Spec(aim::table4_k700, None)),
        ("aim_table5_diving48", Spec(aim::table5_diving48, None)),
        ("aim_table6_backbones", Spec(aim::table6_backbones, Some(measure::Measure::Training))),
        ("aim_table7_position", Spec(aim::table7_position, None)),
        ("aim_table8_ratio", Spec(aim::table8_ratio, None)),
        ("aim_table9_memory", Spec(aim::table9_memory, Some(measure::Measure::Training))),
        ("aim_table10_evl", Spec(aim::table10_evl, Some(measure::Measure::Training))),
    ]
}

/// The counts-only report of a runner (deterministic: what the book and the snapshots show).
pub fn counts_report(runner: Runner) -> anyhow::Result<Report> {
    let args = Args { counts_only: true, ..Default::default() };
    match runner {
        Runner::Spec(spec, _) => engine::report(&spec(), &args),
        Runner::Custom(f) => f(&args),
    }
}

/// The `main` of the reproduction binary `name` (one of [`all`]).
pub fn run(name: &str) {
    let runner = all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no reproduction named {name}"));
    main(runner)
}

/// Runs a reproduction: parse the arguments, build the report, print it.
pub fn main(runner: Runner) {
    use clap::Parser;
    if measure::child_entry() {
        return;
    }
    let args = Args::parse();
    let run = || -> anyhow::Result<String> {
        // checked before any work: a measured table takes minutes
        let book = if args.write_book { Some(book_src_dir().context("--write-book")?.join("generated")) } else { None };
        let (mut rep, measure) = match runner {
            Runner::Spec(spec, m) => (engine::report(&spec(), &args)?, m),
            Runner::Custom(f) => (f(&args)?, None),
        };
        if let Some(dir) = &book {
            let counts = counts_report(runner)?;
            let path = dir.join(format!("{}.md", counts.binary));
            crate::io::write_atomic(&path, counts.render(Format::Markdown).as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        if let (false, Some(m), Runner::Spec(spec, _)) = (args.counts_only, measure, runner) {
            measure::add_measurements(m, &spec(), &mut rep, args.reps)?;
        }
        Ok(rep.render(args.format))
    };
    match run() {
        Ok(s) => print!("{s}"),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// `book/src` under the working directory, which must be the root of a checkout (it has
/// `book/src/SUMMARY.md`): `--write-book` and `book_assets` write there, never into the checkout
/// the binary was built from.
pub fn book_src_dir() -> anyhow::Result<std::path::PathBuf> {
    let cwd = std::env::current_dir()?;
    let src = cwd.join("book/src");
    if !src.join("SUMMARY.md").is_file() {
        anyhow::bail!(
            "the book's pages are written to book/src/ under the working directory, which must be the root of a video-adapters checkout, but {} has no book/src/SUMMARY.md",
            cwd.display()
        );
    }
    Ok(src)
}

/// The book page listing every published figure the kit does not reproduce, table by table, with
/// the reason recorded in the fixture.
pub fn discrepancies_markdown() -> anyhow::Result<String> {
    let mut s = String::from("# What does not reproduce, and why\n\n");
    s += "Every ✗ of every reproduced table, with the note its fixture records. Generated from the reproductions (`cargo run --release --bin book_assets`); a test keeps this page current.\n\n";
    let mut total = 0;
    for (name, runner) in all() {
        let rep = counts_report(runner)?;
        let mut cells: Vec<(String, String, String)> = Vec::new(); // (note id, row label, cell text)
        for row in &rep.rows {
            for (j, c) in row.cells.iter().enumerate() {
                if let Some(id) = c.strip_prefix("✗ ") {
                    // the quantity is the header 3 columns to the left (pub), see engine::report
                    let col = &rep.header[j + 1 - 3];
                    cells.push((
                        id.to_string(),
                        row.label.clone(),
                        format!("{} {} vs ours {}", col, row.cells[j - 3], row.cells[j - 2]),
                    ));
                }
            }
        }
        if cells.is_empty() {
            continue;
        }
        total += cells.len();
        s += &format!("## [{}]({name}.md)\n\n", rep.title.split(" — ").next().unwrap_or(&rep.title));
        let mut ids: Vec<&String> = Vec::new();
        for c in &cells {
            if !ids.contains(&&c.0) {
                ids.push(&c.0);
            }
        }
        for id in ids {
            let text = rep.notes.iter().find(|(n, _)| n == id).map_or("", |(_, t)| t.as_str());
            s += &format!("**{id}**: {text}\n\n");
            for (_, label, what) in cells.iter().filter(|c| &c.0 == id) {
                s += &format!("- {label}: {what}\n");
            }
            s += "\n";
        }
    }
    s += &format!("{total} cells in all.\n");
    Ok(s)
}
