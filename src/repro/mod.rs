//! The published tables, reproduced: load the published numbers (`fixtures/published`), compute
//! ours from the kit's models, print both with Δ and a mark, and explain every mismatch.
//!
//! One binary per table (`reproductions/*.rs`), each a line calling [`main`] with its table here.

pub mod aim;
pub mod engine;
pub mod measure;
pub mod mst_adapter;
pub mod proxy;
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
    main(name, runner)
}

/// The published table a reproduction binary reproduces, as (paper folder, file) under
/// `fixtures/published/`: `st_table6_training_cost` is `st_adapter/table6_training_cost`; the
/// front door `table1_k400` is MST-Adapter's Table 1.
pub fn published_of(binary: &str) -> (&'static str, &str) {
    for (prefix, paper) in [("st_", "st_adapter"), ("aim_", "aim"), ("mst_", "mst_adapter")] {
        if let Some(file) = binary.strip_prefix(prefix) {
            return (paper, file);
        }
    }
    ("mst_adapter", binary)
}

/// What `--help` opens with for the binary `name`: the paper, the table and its caption.
pub fn help_title(name: &str) -> anyhow::Result<String> {
    let (paper, file) = published_of(name);
    let t = published::load(paper, file)?;
    Ok(format!("{} Table {} — {}", t.paper, t.table, t.caption))
}

/// Runs the reproduction `name`: parse the arguments (`--help` naming the table it reproduces),
/// build the report, print it.
fn main(name: &str, runner: Runner) {
    use clap::{CommandFactory, FromArgMatches};
    crate::device::tune_host_allocator();
    if measure::child_entry() {
        return;
    }
    let mut cmd = Args::command();
    if let Ok(title) = help_title(name) {
        cmd = cmd.about(title.clone()).long_about(format!("{title}\n\n{}", engine::ABOUT));
    }
    let args = Args::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    let run = || -> anyhow::Result<String> {
        // checked before any work: a measured table takes minutes
        let book = if args.write_book { Some(book_src_dir().context("--write-book")?.join("generated")) } else { None };
        let (mut rep, measure) = match runner {
            Runner::Spec(spec, m) => (engine::report(&spec(), &args)?, m),
            Runner::Custom(f) => {
                anyhow::ensure!(
                    args.results.is_none(),
                    "--results: this table has no accuracy columns; it takes no results files"
                );
                (f(&args)?, None)
            }
        };
        if let Some(dir) = &book {
            let counts = counts_report(runner)?;
            let path = dir.join(format!("{}.md", counts.binary));
            crate::io::write_atomic(&path, counts.book_page().as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        check_device(&args, measure.is_some())?;
        if let (false, Some(m), Runner::Spec(spec, _)) = (args.counts_only || args.no_measure, measure, runner) {
            measure::add_measurements(m, &spec(), &mut rep, args.reps, args.device)?;
        }
        if !args.counts_only && !args.no_proxy {
            proxy::add(&mut rep, &args)?;
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

/// `--device` other than `cpu` where nothing is measured (a table without measured columns, or
/// `--counts-only` / `--no-measure`) is refused: a flag that would be ignored.
pub fn check_device(args: &Args, measured_table: bool) -> anyhow::Result<()> {
    if args.device != crate::device::DeviceArg::Cpu {
        anyhow::ensure!(measured_table, "--device: this table has no measured columns (only the cost tables do)");
        anyhow::ensure!(
            !(args.counts_only || args.no_measure),
            "--device with --counts-only or --no-measure: nothing is measured"
        );
    }
    Ok(())
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

/// A ✗ cell: the table it is in, the row, the quantity, the printed and the computed figure.
struct Discrepancy {
    binary: &'static str,
    table: String,
    row: String,
    quantity: String,
    published: String,
    ours: String,
}

/// A cause: the notes (ids, with the text each table records) that explain a set of ✗ cells. Notes
/// whose texts contain a shorter note's whole text are the same cause told with a table-specific
/// addition ("AIM's own figure, copied." before it): the shortest text is stated once, the
/// additions with their tables.
struct Cause {
    ids: Vec<String>,
    core: String,
    /// (tables, the text beyond the core), for tables whose note says more.
    additions: Vec<(Vec<String>, String)>,
    cells: Vec<Discrepancy>,
}

fn causes() -> anyhow::Result<(Vec<Cause>, usize)> {
    let mut found: Vec<(String, String, Discrepancy)> = Vec::new(); // (note id, note text, cell)
    let mut tables = 0;
    for (name, runner) in all() {
        let rep = counts_report(runner)?;
        let before = found.len();
        for row in &rep.rows {
            for (column, cell) in rep.columns.iter().zip(&row.cells) {
                let engine::Value::Mark(engine::Mark::Mismatch(id)) = cell else { continue };
                let id = id.clone().unwrap_or_else(|| "?".into());
                let q = column.quantity.as_deref().unwrap_or_default();
                let text = |kind| rep.cell(row, q, &kind).map(engine::Value::text).unwrap_or_default();
                let note = rep.notes.iter().find(|(n, _)| *n == id).map_or(String::new(), |(_, t)| t.clone());
                found.push((
                    id,
                    note,
                    Discrepancy {
                        binary: name,
                        table: rep.table.clone(),
                        row: row.label.clone(),
                        quantity: q.to_string(),
                        published: text(engine::Kind::Published),
                        ours: text(engine::Kind::Ours),
                    },
                ));
            }
        }
        tables += usize::from(found.len() > before);
    }
    // the distinct texts, shortest first: each joins the cause of the first shorter text it contains
    let mut texts: Vec<String> = Vec::new();
    for (_, t, _) in &found {
        if !texts.contains(t) {
            texts.push(t.clone());
        }
    }
    texts.sort_by_key(|t| t.len());
    let core_of = |t: &String| texts.iter().find(|c| t.contains(c.as_str())).unwrap_or(t).clone();
    let mut causes: Vec<Cause> = Vec::new();
    for (id, text, cell) in found {
        let core = core_of(&text);
        let i = match causes.iter().position(|c| c.core == core) {
            Some(i) => i,
            None => {
                causes.push(Cause { ids: Vec::new(), core: core.clone(), additions: Vec::new(), cells: Vec::new() });
                causes.len() - 1
            }
        };
        let c = &mut causes[i];
        if !c.ids.contains(&id) {
            c.ids.push(id);
        }
        let extra = text.replacen(&core, " ", 1).split_whitespace().collect::<Vec<_>>().join(" ");
        if !extra.is_empty() {
            match c.additions.iter_mut().find(|(_, e)| *e == extra) {
                Some((tables, _)) if !tables.contains(&cell.table) => tables.push(cell.table.clone()),
                Some(_) => {}
                None => c.additions.push((vec![cell.table.clone()], extra)),
            }
        }
        c.cells.push(cell);
    }
    Ok((causes, tables))
}

/// The book page listing every published figure the kit does not reproduce, grouped by cause:
/// each cause stated once, then the cells it explains.
pub fn discrepancies_markdown() -> anyhow::Result<String> {
    let (causes, tables) = causes()?;
    let total: usize = causes.iter().map(|c| c.cells.len()).sum();
    let mut s = String::from("# What does not reproduce, and why\n\n");
    s += &format!(
        "Every ✗ of every reproduced table, grouped by its cause: {total} cells in {tables} tables, {} causes. Each cause is stated once, as the fixtures record it, then the cells it explains. Generated from the reproductions (`cargo run --release --bin book_assets`); a test keeps this page current.\n\n",
        causes.len()
    );
    for c in &causes {
        let anchors: String =
            c.ids.iter().map(|id| format!("<a id=\"{}\"></a>", engine::anchor("cause", id))).collect();
        s += &format!("## {}\n\n{anchors}{}\n\n", c.ids.join(" / "), c.core);
        for (tables, extra) in &c.additions {
            s += &format!("*{} add{}:* {extra}\n\n", tables.join(", "), if tables.len() == 1 { "s" } else { "" });
        }
        s += "| table | row | quantity | pub | ours |\n|---|---|---|---:|---:|\n";
        for d in &c.cells {
            s += &format!(
                "| [{}]({}.md) | {} | {} | {} | {} |\n",
                d.table,
                d.binary,
                d.row.replace('|', "\\|"),
                d.quantity,
                d.published,
                d.ours
            );
        }
        s += "\n";
    }
    Ok(s)
}

/// The summary on the tables page: for each table its marks (✓, ✗, ref) and the causes of its ✗,
/// with links (relative to book/src/tables.md, which includes it).
pub fn tables_summary_markdown() -> anyhow::Result<String> {
    let mut s = String::from("| table | rows | ✓ | ✗ | ref | causes of the ✗ |\n|---|---:|---:|---:|---:|---|\n");
    let mut total = (0, 0, 0, 0);
    for (name, runner) in all() {
        let rep = counts_report(runner)?;
        let (ok, bad, reference) = rep.marks();
        let mut ids: Vec<String> = Vec::new();
        for c in rep.rows.iter().flat_map(|r| &r.cells) {
            if let engine::Value::Mark(engine::Mark::Mismatch(Some(id))) = c {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        let causes: Vec<String> = ids
            .iter()
            .map(|id| format!("[{id}](generated/discrepancies.md#{})", engine::anchor("cause", id)))
            .collect();
        s += &format!(
            "| [{}](generated/{name}.md) | {} | {ok} | {bad} | {reference} | {} |\n",
            rep.table,
            rep.rows.len(),
            causes.join(", ")
        );
        total = (total.0 + rep.rows.len(), total.1 + ok, total.2 + bad, total.3 + reference);
    }
    s += &format!("| **all** | {} | {} | {} | {} | |\n", total.0, total.1, total.2, total.3);
    Ok(s)
}

/// The measured tables as committed (`book/src/measured/<binary>.md`, written by
/// scripts/measure_tables.sh), read back into reports.
pub fn measured_reports() -> anyhow::Result<Vec<Report>> {
    let dir = book_src_dir()?.join("measured");
    let mut out = Vec::new();
    for (name, runner) in all() {
        if !matches!(runner, Runner::Spec(_, Some(_))) {
            continue;
        }
        let path = dir.join(format!("{name}.md"));
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        out.push(Report::from_markdown(name, &text)?);
    }
    Ok(out)
}

/// The Performance chapter's measured tables, from the committed runs, in the book's current table
/// form: a note that several tables carry word for word is stated once, before them, with the
/// tables it belongs to; each table then has its own notes.
pub fn measured_markdown() -> anyhow::Result<String> {
    let reports = measured_reports()?;
    let mut shared: Vec<(&String, &String, Vec<&String>)> = Vec::new(); // (id, text, tables)
    for rep in &reports {
        for (id, text) in &rep.notes {
            match shared.iter_mut().find(|(i, t, _)| *i == id && *t == text) {
                Some(n) => n.2.push(&rep.table),
                None => shared.push((id, text, vec![&rep.table])),
            }
        }
    }
    shared.retain(|n| n.2.len() > 1);
    let mut s = String::from("Notes that several of these tables share, stated once:\n\n");
    for (id, text, tables) in &shared {
        let names: Vec<&str> = tables.iter().map(|t| t.as_str()).collect();
        s += &format!("- **{id}** ({}): {text}\n", names.join(", "));
    }
    for rep in &reports {
        s += &format!("\n### {}\n\n", rep.table);
        s += &rep.book_table();
        for (id, text) in &rep.notes {
            if !shared.iter().any(|(i, t, _)| *i == id && *t == text) {
                let anchor = if rep.cites(id) {
                    format!("<a id=\"{}\"></a>", engine::anchor("note", id))
                } else {
                    String::new()
                };
                s += &format!("- {anchor}**{id}**: {text}\n");
            }
        }
    }
    Ok(s)
}
