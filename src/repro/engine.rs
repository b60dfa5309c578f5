//! The table runner every reproduction shares: load the published table, compute ours for every
//! row the kit implements, put them side by side with Δ and a mark, explain every mismatch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::published::{Cell, Row};
use crate::count::{Breakdown, Views};
use crate::registry::ModelCfg;

/// What a computed column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// All parameters, in millions.
    TotalParams,
    /// Trainable parameters (classifier included), in millions.
    Tunable,
    /// Trainable parameters without the classifier, in millions (some tables count this way).
    TunableNoHead,
    /// The tables' GFLOPs: fvcore multiply-adds per view × views, in 10⁹.
    Gflops,
}

impl Quantity {
    fn of(&self, b: &Breakdown, views: Views) -> f64 {
        match self {
            Quantity::TotalParams => b.params() as f64 / 1e6,
            Quantity::Tunable => b.trainable() as f64 / 1e6,
            Quantity::TunableNoHead => {
                let head: u64 = b
                    .lines
                    .iter()
                    .filter(|l| l.keys.iter().any(|k| k == "fc" || k == "cls_head.fc_cls."))
                    .map(|l| l.trainable)
                    .sum();
                (b.trainable() - head) as f64 / 1e6
            }
            Quantity::Gflops => b.gflops(views),
        }
    }
}

/// A column we compute: compared with a published column, or shown alone (`published: None`).
#[derive(Clone, Debug)]
pub struct Computed {
    pub published: Option<&'static str>,
    pub label: &'static str,
    pub quantity: Quantity,
}

/// How a published row is computed by the kit.
#[derive(Clone, Debug)]
pub struct Ours {
    pub model: ModelCfg,
    pub views: Views,
}

/// A table's reproduction: which published file, which columns we compute, how rows map to models.
pub struct Spec {
    /// The binary's name, e.g. "st_table2_k400".
    pub binary: &'static str,
    /// `fixtures/published/<paper>/<file>.ron`.
    pub paper: &'static str,
    pub file: &'static str,
    pub computed: Vec<Computed>,
    /// Published accuracy (or other result) columns, shown with an "ours" slot.
    pub results: Vec<&'static str>,
    /// Published columns shown as printed, without an "ours" slot (the cost tables' time and
    /// memory: measured here as ratios instead, see `measure`).
    pub published_only: Vec<&'static str>,
    /// Our model for a row; `None` marks a reference row (a system the kit does not implement).
    pub ours: fn(&Row) -> Option<Ours>,
    /// Extra remarks printed under the table.
    pub remarks: Vec<String>,
}

/// Command-line options shared by all reproduction binaries.
#[derive(clap::Parser, Debug, Clone, Default)]
#[command(version, about = "Reproduce one published table: published | ours | Δ | mark, and the notes that explain every mismatch.", long_about = ABOUT)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Only the architecture columns (parameters, GFLOPs): no measurements; fast and deterministic.
    #[arg(long)]
    pub counts_only: bool,
    /// Also write the markdown (counts only) to book/src/generated/<binary>.md under the working
    /// directory, which must be the root of a video-adapters checkout.
    #[arg(long)]
    pub write_book: bool,
    /// A folder with result files (`<binary>.ron`) written by the kit's training and evaluation on
    /// real data; their numbers fill the "ours" result columns.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Timed repetitions per model for the measured cost tables (after one warm-up): 1 to 100.
    #[arg(long, default_value_t = 3, value_parser = crate::input::count(1..=100))]
    pub reps: usize,
}

const ABOUT: &str = "Reproduce one published table side by side with what this kit computes.

Columns, for each quantity the kit computes (parameters in millions, GFLOPs):
  pub    the number printed in the paper (fixtures/published/…, with provenance)
  ours   computed now from our modules' configs (parameters: every tensor of the built module;
         GFLOPs: fvcore multiply-adds per view × views; see src/count.rs)
  Δ      ours − pub
  mark   ✓ ours rounds (or truncates) to the printed figure; ✗ id: it does not, and the note `id`
         below the table says why; ref: a system this kit does not implement (shown, not computed)
Result columns (accuracy): the published figure, and ours when --results gives a results file
written by the kit's evaluation on real data (not available on this machine: shown as —).";

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    #[default]
    Text,
    Markdown,
    Csv,
    Ron,
}

/// One row of the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutRow {
    pub id: String,
    pub label: String,
    pub group: Option<String>,
    pub cells: Vec<String>,
}

/// A reproduced table, ready to print.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub binary: String,
    pub title: String,
    pub source: String,
    pub header: Vec<String>,
    pub rows: Vec<OutRow>,
    /// (note id, text) for every note a mark cites, then remarks.
    pub notes: Vec<(String, String)>,
    /// Counts of marks: (✓, ✗, ref).
    pub marks: (usize, usize, usize),
}

/// Results written by the kit's evaluation: row id → column key → value.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub provenance: String,
    pub rows: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Decimal places of a printed number, read from its shortest form (fixtures keep no trailing
/// zeros, so 7.20 reads as 7.2 and is compared at one decimal).
fn decimals(v: f64) -> usize {
    let s = format!("{v}");
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

// ANCHOR: marks
/// Whether `ours` prints as `published` at its precision (at least `min_decimals`), rounded or
/// truncated.
pub fn matches(ours: f64, published: f64, min_decimals: usize) -> bool {
    let d = decimals(published).max(min_decimals) as i32;
    let scale = 10f64.powi(d);
    let rounded = (ours * scale).round() / scale;
    let truncated = (ours * scale + 1e-9).floor() / scale;
    (rounded - published).abs() < 0.5 / scale * 1e-6 || (truncated - published).abs() < 0.5 / scale * 1e-6
}
// ANCHOR_END: marks

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell_text(c: Option<&Cell>) -> String {
    match c {
        Some(Cell::Num(v)) => format!("{v}"),
        Some(Cell::Text(t)) => t.clone(),
        Some(Cell::Missing) | None => "—".into(),
    }
}

/// Builds the report of a spec.
pub fn report(spec: &Spec, args: &Args) -> anyhow::Result<Report> {
    let table = super::published::load(spec.paper, spec.file)?;
    let results = match &args.results {
        Some(dir) => {
            let path = dir.join(format!("{}.ron", spec.binary));
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Some(ron::from_str::<Results>(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
            } else {
                None
            }
        }
        None => None,
    };
    let mut header = vec!["row".to_string()];
    let views_col = table.column("views").map(|_| "views").or(table.column("frames").map(|_| "frames"));
    if views_col.is_some() {
        header.push("views".into());
    }
    for c in &spec.computed {
        match c.published {
            Some(_) => {
                header.extend([format!("{} pub", c.label), format!("{} ours", c.label), "Δ".into(), "mark".into()])
            }
            None => header.push(format!("{} ours", c.label)),
        }
    }
    for r in &spec.results {
        let label = table.column(r).map_or(r.to_string(), |c| c.label.clone());
        header.extend([format!("{label} pub"), format!("{label} ours")]);
    }
    for r in &spec.published_only {
        header.push(table.column(r).map_or(r.to_string(), |c| format!("{} pub", c.label)));
    }

    let mut cited: Vec<String> = Vec::new();
    let mut marks = (0, 0, 0);
    let mut rows = Vec::new();
    for row in &table.rows {
        let ours = (spec.ours)(row);
        let breakdown = ours.as_ref().map(|o| o.model.breakdown());
        let mut cells = Vec::new();
        if let Some(v) = views_col {
            cells.push(cell_text(row.cells.get(v)));
        }
        for c in &spec.computed {
            let value = match (&ours, &breakdown) {
                (Some(o), Some(b)) => Some(c.quantity.of(b, o.views)),
                _ => None,
            };
            let published = c.published.and_then(|k| match row.cells.get(k) {
                Some(Cell::Num(v)) => Some(*v),
                _ => None,
            });
            match c.published {
                None => cells.push(value.map_or("".into(), fmt_num)),
                Some(key) => {
                    cells.push(cell_text(row.cells.get(key)));
                    match (value, published) {
                        (None, _) => {
                            cells.extend(["".into(), "".into(), "ref".into()]);
                            marks.2 += 1;
                        }
                        (Some(v), None) => cells.extend([fmt_num(v), "".into(), "".into()]),
                        (Some(v), Some(p)) => {
                            cells.push(fmt_num(v));
                            cells.push(format!("{:+.2}", v - p));
                            if matches(v, p, table.column(key).and_then(|c| c.decimals).unwrap_or(0)) {
                                cells.push("✓".into());
                                marks.0 += 1;
                            } else {
                                let id = table.explanation(&row.id, key).map_or("?".to_string(), |n| n.id.clone());
                                if !cited.contains(&id) {
                                    cited.push(id.clone());
                                }
                                cells.push(format!("✗ {id}"));
                                marks.1 += 1;
                            }
                        }
                    }
                }
            }
        }
        for r in &spec.results {
            cells.push(cell_text(row.cells.get(*r)));
            cells.push(
                results
                    .as_ref()
                    .and_then(|res| res.rows.get(&row.id))
                    .and_then(|m| m.get(*r))
                    .map_or("—".into(), |v| format!("{v:.1}")),
            );
        }
        for r in &spec.published_only {
            cells.push(cell_text(row.cells.get(*r)));
        }
        rows.push(OutRow { id: row.id.clone(), label: row.label.clone(), group: row.group.clone(), cells });
    }
    let mut notes: Vec<(String, String)> = cited
        .iter()
        .map(|id| {
            (
                id.clone(),
                table
                    .note(id)
                    .map_or("NO EXPLANATION RECORDED (a bug: every ✗ needs a note in the fixture)".into(), |n| {
                        n.text.clone()
                    }),
            )
        })
        .collect();
    if !spec.results.is_empty() {
        let text = match &results {
            Some(r) => format!("result columns \"ours\": {}", r.provenance),
            None => "result columns \"ours\": filled by `--results DIR` from a results file the kit's evaluation on real data writes; no such results exist on this machine (no GPU, no datasets). A separately labelled proxy column from the embedded CPU benchmark is planned.".into(),
        };
        notes.push(("results".into(), text));
    }
    for (i, r) in spec.remarks.iter().enumerate() {
        notes.push((format!("remark {}", i + 1), r.clone()));
    }
    Ok(Report {
        binary: spec.binary.into(),
        title: format!("{} Table {} — {}", table.paper, table.table, table.caption),
        source: format!("{} ({})", table.source, table.citation),
        header,
        rows,
        notes,
        marks,
    })
}

impl Report {
    /// Renders in the chosen format.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Markdown => self.markdown(),
            Format::Csv => self.csv(),
            Format::Ron => {
                ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::new()).expect("reports serialise") + "\n"
            }
        }
    }

    fn table_cells(&self) -> Vec<Vec<String>> {
        let mut out = vec![self.header.clone()];
        for r in &self.rows {
            let mut line = vec![r.label.clone()];
            line.extend(r.cells.iter().cloned());
            out.push(line);
        }
        out
    }

    fn text(&self) -> String {
        let cells = self.table_cells();
        let n = cells[0].len();
        // two header lines: the quantity over its (pub, ours, Δ, mark) cells, then the sub-labels
        let mut groups: Vec<String> = Vec::new();
        let mut subs: Vec<String> = Vec::new();
        for (j, h) in cells[0].iter().enumerate() {
            let (g, sub) = if let Some(g) = h.strip_suffix(" pub") {
                (g.to_string(), "pub".to_string())
            } else if let Some(g) = h.strip_suffix(" ours") {
                (g.to_string(), "ours".to_string())
            } else if (h == "Δ" || h == "mark") && j > 0 {
                (groups[j - 1].clone(), h.clone())
            } else {
                (String::new(), h.clone())
            };
            groups.push(g);
            subs.push(sub);
        }
        let mut width: Vec<usize> = (0..n)
            .map(|j| {
                cells.iter().skip(1).map(|r| r[j].chars().count()).chain([subs[j].chars().count()]).max().unwrap_or(0)
            })
            .collect();
        // the spans (first, last column) of the group labels
        let mut spans = Vec::new();
        let mut j = 0;
        while j < n {
            let mut k = j;
            while k + 1 < n && !groups[j].is_empty() && groups[k + 1] == groups[j] {
                k += 1;
            }
            spans.push((j, k));
            j = k + 1;
        }
        // widen the last column of a span until its group label fits
        for &(j, k) in &spans {
            let span: usize = width[j..=k].iter().sum::<usize>() + 2 * (k - j);
            let need = groups[j].chars().count();
            if need > span {
                width[k] += need - span;
            }
        }
        let line = |parts: Vec<String>| parts.join("  ").trim_end().to_string();
        let pad = |c: &str, w: usize, left: bool| {
            let p = w.saturating_sub(c.chars().count());
            if left {
                format!("{c}{}", " ".repeat(p))
            } else {
                format!("{}{c}", " ".repeat(p))
            }
        };
        let mut s = String::new();
        for l in wrap(&self.title, 100) {
            writeln!(s, "{l}").unwrap();
        }
        for l in wrap(&format!("source: {}", self.source), 100) {
            writeln!(s, "{l}").unwrap();
        }
        writeln!(s).unwrap();
        // group line
        let g: Vec<String> = spans
            .iter()
            .map(|&(j, k)| pad(&groups[j], width[j..=k].iter().sum::<usize>() + 2 * (k - j), true))
            .collect();
        writeln!(s, "{}", line(g)).unwrap();
        writeln!(s, "{}", line((0..n).map(|j| pad(&subs[j], width[j], j == 0)).collect())).unwrap();
        writeln!(s, "{}", "-".repeat(width.iter().sum::<usize>() + 2 * (n - 1))).unwrap();
        let mut group: Option<&String> = None;
        for (i, row) in cells.iter().enumerate().skip(1) {
            let rg = self.rows[i - 1].group.as_ref();
            if let Some(g) = rg.filter(|_| rg != group) {
                writeln!(s, "[{g}]").unwrap();
            }
            group = rg;
            writeln!(s, "{}", line(row.iter().enumerate().map(|(j, c)| pad(c, width[j], j == 0)).collect())).unwrap();
        }
        writeln!(s, "\nmarks: {} ✓, {} ✗, {} ref", self.marks.0, self.marks.1, self.marks.2).unwrap();
        for (id, text) in &self.notes {
            writeln!(s).unwrap();
            for l in wrap(&format!("[{id}] {text}"), 100) {
                writeln!(s, "{l}").unwrap();
            }
        }
        s
    }

    fn markdown(&self) -> String {
        let cells = self.table_cells();
        let esc = |c: &str| c.replace('|', "\\|");
        let mut s = format!("### {}\n\n*Source: {}.*\n\n", esc(&self.title), esc(&self.source));
        writeln!(s, "| {} |", cells[0].iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")).unwrap();
        writeln!(
            s,
            "|{}|",
            cells[0].iter().enumerate().map(|(j, _)| if j == 0 { "---" } else { "---:" }).collect::<Vec<_>>().join("|")
        )
        .unwrap();
        let mut group: Option<&String> = None;
        for (i, line) in cells.iter().enumerate().skip(1) {
            let g = self.rows[i - 1].group.as_ref();
            if let Some(name) = g.filter(|_| g != group) {
                writeln!(s, "| *{}* |{}", esc(name), " |".repeat(line.len() - 1)).unwrap();
            }
            group = g;
            writeln!(s, "| {} |", line.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")).unwrap();
        }
        writeln!(s, "\nMarks: {} ✓, {} ✗, {} ref.\n", self.marks.0, self.marks.1, self.marks.2).unwrap();
        for (id, text) in &self.notes {
            writeln!(s, "- **{}**: {}", esc(id), text).unwrap();
        }
        s
    }

    fn csv(&self) -> String {
        let q = |c: &str| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.to_string()
            }
        };
        let mut s = String::new();
        let mut header = vec!["id".to_string(), "group".to_string()];
        header.extend(self.header.iter().cloned());
        writeln!(s, "{}", header.iter().map(|c| q(c)).collect::<Vec<_>>().join(",")).unwrap();
        for r in &self.rows {
            let mut line = vec![r.id.clone(), r.group.clone().unwrap_or_default(), r.label.clone()];
            line.extend(r.cells.iter().cloned());
            writeln!(s, "{}", line.iter().map(|c| q(c)).collect::<Vec<_>>().join(",")).unwrap();
        }
        s
    }
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// The row's views from its "views" or "frames" cell ("16x3x1", "8×3×1", "16 × 3 × 10").
pub fn row_views(row: &Row) -> Option<Views> {
    let text = match row.cells.get("views").or(row.cells.get("frames"))? {
        Cell::Text(t) => t.clone(),
        _ => return None,
    };
    text.replace(' ', "").parse().ok()
}

/// `book/src/generated` in this checkout.
pub fn book_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("book/src/generated")
}

/// Checks a published table against the spec without printing (for tests): every ✗ is explained.
pub fn unexplained(rep: &Report) -> Vec<String> {
    rep.rows.iter().flat_map(|r| r.cells.iter().filter(|c| c.as_str() == "✗ ?").map(move |_| r.id.clone())).collect()
}
