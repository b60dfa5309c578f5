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
    /// A folder of results files (`*.ron`) written by `evaluate --out`: every record that evaluates
    /// a row of this table (its exact model config, views and data set) fills that row's "ours"
    /// accuracy cells. Unusable files and folders are errors.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Timed repetitions per model for the measured cost tables (after one warm-up): 1 to 100.
    #[arg(long, default_value_t = 3, value_parser = crate::input::count(1..=100))]
    pub reps: usize,
    /// Where the measured cost columns run (cost tables only): `cpu`, `cuda` or `cuda:N` (a build
    /// with `--features cuda` and a GPU), measured as `bench --device` does.
    #[arg(long, default_value = "cpu", value_parser = crate::device::DeviceArg::parse)]
    pub device: crate::device::DeviceArg,
    /// Skip the embedded CPU benchmark (the "proxy" columns and the claims under the table).
    #[arg(long)]
    pub no_proxy: bool,
    /// Skip the measured columns (time, memory) of the cost tables, keeping the proxy
    /// (`scripts/proxy_all` runs every table's proxy this way).
    #[arg(long)]
    pub no_measure: bool,
    /// Scale the proxy runs' training steps (1: the default budgets; 0.3: a quick look).
    #[arg(long)]
    pub proxy_budget: Option<f64>,
    /// Seeds of the proxy runs, comma-separated (default 1,2,3).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
}

pub(crate) const ABOUT: &str = "Reproduce one published table side by side with what this kit computes.

Columns, for each quantity the kit computes (parameters in millions, GFLOPs):
  pub    the number printed in the paper (fixtures/published/…, with provenance)
  ours   computed now from our modules' configs (parameters: every tensor of the built module;
         GFLOPs: fvcore multiply-adds per view × views; see src/count.rs)
  Δ      ours − pub
  mark   ✓ ours rounds (or truncates) to the printed figure; ✗ id: it does not, and the note `id`
         below the table says why; ref: a system this kit does not implement (shown, not computed)
Result columns (accuracy): the published figure, and ours when --results DIR holds a record
written by `evaluate` for the row's model, views and data set (otherwise —).";

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    #[default]
    Text,
    Markdown,
    Csv,
    Ron,
}

// ANCHOR: typed_cells
/// What a column of a report holds. A report is built as rows of typed cells ([`Value`]) under
/// typed columns and only rendered to text, markdown, CSV or RON at the end, so nothing finds a
/// column by its position or its printed header: a renderer or a reader asks for the column of a
/// given quantity and kind ([`Report::column`], [`Report::cell`]).
///
/// A new kind of column (say, a proxy accuracy measured on the embedded benchmark: neither the
/// published figure nor "ours") is a new variant here with its sub-label in [`Kind::label`];
/// columns that share a `quantity` are printed under one group label whatever their kinds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// The views (or frames) a row is counted at, as printed.
    Views,
    /// The figure the paper prints.
    Published,
    /// What the kit computes (counts) or its evaluation produced (results).
    Ours,
    /// ours − published.
    Delta,
    /// ✓, ✗ with the note that explains it, or ref.
    Mark,
    /// Measured on this machine, or derived from the paper's figures next to a measurement; the
    /// string is the column's own header ("step s (here)", "time ÷ … (pub)").
    Measured(String),
    /// The same method on the embedded CPU benchmark (`repro::proxy`): a stand-in task, never
    /// comparable with the published figure.
    Proxy,
}

impl Kind {
    /// The sub-label printed under the quantity.
    pub fn label(&self) -> &str {
        match self {
            Kind::Views => "views",
            Kind::Published => "pub",
            Kind::Ours => "ours",
            Kind::Delta => "Δ",
            Kind::Mark => "mark",
            Kind::Measured(h) => h,
            Kind::Proxy => "proxy",
        }
    }
}

/// A column of a report: a kind, and the quantity it belongs to ("Params (M)"), if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub quantity: Option<String>,
    pub kind: Kind,
    /// The fixture's column key the column shows or is compared with ("gflops"), if any.
    pub key: Option<String>,
}

impl Column {
    pub fn new(quantity: Option<&str>, kind: Kind) -> Self {
        Column { quantity: quantity.map(str::to_string), kind, key: None }
    }

    /// The same column, tied to the fixture's column `key`.
    pub fn key(self, key: &str) -> Self {
        Column { key: Some(key.to_string()), ..self }
    }

    /// The one-line header ("Params (M) pub", "Δ", "views").
    pub fn header(&self) -> String {
        match (&self.quantity, &self.kind) {
            (Some(q), Kind::Published | Kind::Ours | Kind::Proxy) => format!("{q} {}", self.kind.label()),
            _ => self.kind.label().to_string(),
        }
    }
}

/// The mark of a computed cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mark {
    /// Ours rounds (or truncates) to the printed figure.
    Match,
    /// It does not; the note (by id) says why. `None`: no note recorded (a bug, see [`unexplained`]).
    Mismatch(Option<String>),
    /// A system the kit does not implement: shown, not computed.
    Reference,
}

/// A typed cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Nothing to show (a reference row's "ours" and Δ).
    Blank,
    /// As printed in the paper (a missing cell prints "—").
    Printed(Option<Cell>),
    /// A count computed by the kit (millions, GFLOPs): two decimals, one from 100 on.
    Count(f64),
    /// ours − published, signed, two decimals.
    Delta(f64),
    Mark(Mark),
    /// A number at fixed decimals ("—" when absent).
    Fixed {
        value: Option<f64>,
        decimals: usize,
    },
    /// Text the kit produces (ST-Adapter Table 8's settings).
    Text(String),
    /// Mean ± standard deviation over `runs` runs (the proxy columns), one decimal.
    MeanStd {
        mean: f64,
        std: f64,
        runs: usize,
    },
}

impl Value {
    /// The number this cell shows, if any.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Printed(Some(Cell::Num(v))) | Value::Count(v) | Value::Delta(v) => Some(*v),
            Value::Fixed { value, .. } => *value,
            Value::MeanStd { mean, .. } => Some(*mean),
            _ => None,
        }
    }

    /// The cell as plain text (text and CSV output).
    pub fn text(&self) -> String {
        match self {
            Value::Blank => String::new(),
            Value::Printed(c) => cell_text(c.as_ref()),
            Value::Count(v) => fmt_num(*v),
            Value::Delta(v) => format!("{v:+.2}"),
            Value::Mark(Mark::Match) => "✓".into(),
            Value::Mark(Mark::Mismatch(id)) => format!("✗ {}", id.as_deref().unwrap_or("?")),
            Value::Mark(Mark::Reference) => "ref".into(),
            Value::Fixed { value: Some(v), decimals } => format!("{v:.decimals$}"),
            Value::Fixed { value: None, .. } => "—".into(),
            Value::Text(t) => t.clone(),
            Value::MeanStd { mean, std, .. } => format!("{mean:.1} ± {std:.1}"),
        }
    }
}

/// One row of a report: the published row's id, label and group, and one cell per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutRow {
    pub id: String,
    pub label: String,
    pub group: Option<String>,
    pub cells: Vec<Value>,
}

/// A reproduced table, ready to render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub binary: String,
    /// "MST-Adapter Table 1".
    pub table: String,
    /// The caption, verbatim.
    pub caption: String,
    pub source: String,
    /// The header of the row-label column ("row", "setting").
    pub row_header: String,
    pub columns: Vec<Column>,
    pub rows: Vec<OutRow>,
    /// (note id, text) for every note a mark cites, then remarks.
    pub notes: Vec<(String, String)>,
}
// ANCHOR_END: typed_cells

/// A report as flat strings: the shape of the RON output.
#[derive(Serialize)]
struct Flat {
    binary: String,
    title: String,
    source: String,
    header: Vec<String>,
    rows: Vec<FlatRow>,
    notes: Vec<(String, String)>,
    marks: (usize, usize, usize),
}

#[derive(Serialize)]
struct FlatRow {
    id: String,
    label: String,
    group: Option<String>,
    cells: Vec<String>,
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

// ANCHOR: result_columns
/// What a result column measures: the data set, the metric, and whether the row's model is taken
/// with the ImageNet-21K backbone (ST-Adapter Table 1's IN-21K columns). `None`: a column the kit's
/// evaluation does not produce (EK100's verb/noun heads; UCF-101/HMDB-51's 3-split means).
pub fn result_column(binary: &str, key: &str) -> Option<(&'static str, Metric, bool)> {
    let table_dataset = || -> Option<&'static str> {
        Some(match binary {
            b if b.contains("k400") => "k400",
            b if b.contains("ssv2") => "ssv2",
            b if b.contains("k700") => "k700",
            b if b.contains("diving48") => "diving48",
            // AIM Table 1 is on SSv2; Tables 6, 7, 8 and 10 on K400 (see their fixtures' notes)
            "aim_table1_components" => "ssv2",
            "aim_table6_backbones" | "aim_table7_position" | "aim_table8_ratio" | "aim_table10_evl" => "k400",
            _ => return None,
        })
    };
    Some(match key {
        "top1" => (table_dataset()?, Metric::Top1, false),
        "top5" => (table_dataset()?, Metric::Top5, false),
        "k400" | "k400_top1" | "clip_k400" => ("k400", Metric::Top1, false),
        "ssv2" | "ssv2_top1" | "clip_ssv2" => ("ssv2", Metric::Top1, false),
        "in21k_k400" => ("k400", Metric::Top1, true),
        "in21k_ssv2" => ("ssv2", Metric::Top1, true),
        _ => return None,
    })
}
// ANCHOR_END: result_columns

/// Classes of the data sets the tables report.
pub fn dataset_classes(dataset: &str) -> Option<usize> {
    Some(match dataset {
        "k400" => 400,
        "ssv2" => 174,
        "k700" => 700,
        "diving48" => 48,
        _ => return None,
    })
}

/// A metric of an evaluation record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Top1,
    Top5,
}

/// The evaluation that fills the result cell (row, column): the row's model with the data set's
/// classifier (and backbone), at the row's views, on the column's data set.
pub fn expected_eval(spec: &Spec, row: &Row, key: &str) -> Option<(ModelCfg, Views, &'static str, Metric)> {
    let ours = (spec.ours)(row)?;
    let (dataset, metric, in21k) = result_column(spec.binary, key)?;
    let mut model = ours.model.with_num_classes(dataset_classes(dataset)?);
    if in21k {
        model = model.with_clip(crate::clip::ClipCfg::in21k_vit_b16());
    }
    Some((model, ours.views, dataset, metric))
}

/// The records of `--results DIR` and the cells they fill.
struct Filled {
    dir: PathBuf,
    /// (row id, column key) → (value, file).
    cells: BTreeMap<(String, String), (f64, PathBuf)>,
    /// Files whose record fills no cell of this table.
    unused: Vec<PathBuf>,
}

/// Reads `--results DIR` and matches every record to the cells it fills. Fails loudly, naming the
/// files: a missing or empty folder, a file that is not a valid record (non-finite or
/// out-of-range numbers), a table without result columns, two records for one cell, or a folder of
/// which no record fills any cell of this table.
fn fill_results(spec: &Spec, table: &super::published::Published, args: &Args) -> anyhow::Result<Option<Filled>> {
    let Some(dir) = &args.results else { return Ok(None) };
    let records = crate::results::read_dir(dir)?;
    if spec.results.iter().all(|k| result_column(spec.binary, k).is_none()) {
        anyhow::bail!(
            "--results: {} has no result column the kit's evaluation produces ({})",
            spec.binary,
            if spec.results.is_empty() { "no accuracy columns".to_string() } else { spec.results.join(", ") }
        );
    }
    let mut cells: BTreeMap<(String, String), (f64, PathBuf)> = BTreeMap::new();
    let mut used = vec![false; records.len()];
    for row in &table.rows {
        for key in &spec.results {
            let Some((model, views, dataset, metric)) = expected_eval(spec, row, key) else { continue };
            for (i, (path, r)) in records.iter().enumerate() {
                if r.model != model || r.views != views || r.dataset.dataset != dataset {
                    continue;
                }
                let value = match metric {
                    Metric::Top1 => r.metrics.top1,
                    Metric::Top5 => r.metrics.top5,
                };
                if let Some((_, other)) = cells.get(&(row.id.clone(), key.to_string())) {
                    if other != path {
                        anyhow::bail!(
                            "--results: {} and {} both evaluate row `{}` ({dataset}, {views}): keep one",
                            other.display(),
                            path.display(),
                            row.id
                        );
                    }
                }
                cells.insert((row.id.clone(), key.to_string()), (value, path.clone()));
                used[i] = true;
            }
        }
    }
    let unused: Vec<PathBuf> = records.iter().zip(&used).filter(|(_, u)| !**u).map(|((p, _), _)| p.clone()).collect();
    if cells.is_empty() {
        let what: Vec<String> = records
            .iter()
            .map(|(p, r)| {
                format!("{}: {} on {} at {}", p.display(), r.model.breakdown().model, r.dataset.dataset, r.views)
            })
            .collect();
        anyhow::bail!(
            "--results {}: no record evaluates a row of {} (a record must name the row's exact model config, \
             views and data set):\n  {}",
            dir.display(),
            spec.binary,
            what.join("\n  ")
        );
    }
    Ok(Some(Filled { dir: dir.clone(), cells, unused }))
}

/// Builds the report of a spec.
pub fn report(spec: &Spec, args: &Args) -> anyhow::Result<Report> {
    let table = super::published::load(spec.paper, spec.file)?;
    let results = fill_results(spec, &table, args)?;
    let views_key = table.column("views").map(|_| "views").or(table.column("frames").map(|_| "frames"));
    let mut columns = Vec::new();
    if views_key.is_some() {
        columns.push(Column::new(None, Kind::Views));
    }
    for c in &spec.computed {
        let col = |kind| {
            let col = Column::new(Some(c.label), kind);
            match c.published {
                Some(k) => col.key(k),
                None => col,
            }
        };
        if c.published.is_some() {
            columns.push(col(Kind::Published));
        }
        columns.push(col(Kind::Ours));
        if c.published.is_some() {
            columns.extend([col(Kind::Delta), col(Kind::Mark)]);
        }
    }
    let label_of = |key: &str| table.column(key).map_or(key.to_string(), |c| c.label.clone());
    for r in &spec.results {
        let label = label_of(r);
        columns
            .extend([Column::new(Some(&label), Kind::Published).key(r), Column::new(Some(&label), Kind::Ours).key(r)]);
    }
    for r in &spec.published_only {
        columns.push(Column::new(Some(&label_of(r)), Kind::Published).key(r));
    }

    let mut cited: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for row in &table.rows {
        let ours = (spec.ours)(row);
        let breakdown = ours.as_ref().map(|o| o.model.breakdown());
        let printed = |key: &str| Value::Printed(row.cells.get(key).cloned());
        let mut cells = Vec::new();
        if let Some(v) = views_key {
            cells.push(printed(v));
        }
        for c in &spec.computed {
            let value = match (&ours, &breakdown) {
                (Some(o), Some(b)) => Some(c.quantity.of(b, o.views)),
                _ => None,
            };
            let Some(key) = c.published else {
                cells.push(value.map_or(Value::Blank, Value::Count));
                continue;
            };
            let published = match row.cells.get(key) {
                Some(Cell::Num(v)) => Some(*v),
                _ => None,
            };
            cells.push(printed(key));
            match (value, published) {
                (None, _) => cells.extend([Value::Blank, Value::Blank, Value::Mark(Mark::Reference)]),
                (Some(v), None) => cells.extend([Value::Count(v), Value::Blank, Value::Blank]),
                (Some(v), Some(p)) => {
                    let mark = if matches(v, p, table.column(key).and_then(|c| c.decimals).unwrap_or(0)) {
                        Mark::Match
                    } else {
                        let id = table.explanation(&row.id, key).map(|n| n.id.clone());
                        let cite = id.clone().unwrap_or_else(|| "?".into());
                        if !cited.contains(&cite) {
                            cited.push(cite);
                        }
                        Mark::Mismatch(id)
                    };
                    cells.extend([Value::Count(v), Value::Delta(v - p), Value::Mark(mark)]);
                }
            }
        }
        for r in &spec.results {
            cells.push(printed(r));
            let ours = results.as_ref().and_then(|f| f.cells.get(&(row.id.clone(), r.to_string()))).map(|c| c.0);
            cells.push(Value::Fixed { value: ours, decimals: 1 });
        }
        for r in &spec.published_only {
            cells.push(printed(r));
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
            Some(f) => {
                let files: std::collections::BTreeSet<String> =
                    f.cells.values().map(|(_, p)| p.display().to_string()).collect();
                let mut t = format!(
                    "result columns \"ours\": {} cell(s) from the kit's evaluations in {} ({}); each record \
                     names the weights (sha256), the views and the data set as read (items listed, found, unreadable)",
                    f.cells.len(),
                    f.dir.display(),
                    files.into_iter().collect::<Vec<_>>().join(", ")
                );
                if !f.unused.is_empty() {
                    let names: Vec<String> = f.unused.iter().map(|p| p.display().to_string()).collect();
                    t += &format!("; not for this table: {}", names.join(", "));
                }
                t
            }
            None => "result columns \"ours\": filled by `--results DIR` from the records the kit's `evaluate` \
                     writes on real data (README: evaluating a checkpoint); none given in this run."
                .into(),
        };
        notes.push(("results".into(), text));
    }
    for (i, r) in spec.remarks.iter().enumerate() {
        notes.push((format!("remark {}", i + 1), r.clone()));
    }
    Ok(Report {
        binary: spec.binary.into(),
        table: format!("{} Table {}", table.paper, table.table),
        caption: table.caption.clone(),
        source: format!("{} ({})", table.source, table.citation),
        row_header: "row".into(),
        columns,
        rows,
        notes,
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
                ron::ser::to_string_pretty(&self.flat(), ron::ser::PrettyConfig::new()).expect("reports serialise")
                    + "\n"
            }
        }
    }

    /// "MST-Adapter Table 1 — <caption>".
    pub fn title(&self) -> String {
        format!("{} — {}", self.table, self.caption)
    }

    /// The page `--write-book` writes: a heading with the table's name, then the markdown.
    pub fn book_page(&self) -> String {
        format!(
            "# {}

{}",
            self.table,
            self.markdown()
        )
    }

    /// Appends a column with one cell per row.
    pub fn push_column(&mut self, column: Column, cells: Vec<Value>) {
        assert_eq!(cells.len(), self.rows.len(), "one cell per row for column {}", column.header());
        self.columns.push(column);
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.cells.push(cell);
        }
    }

    /// Inserts a column with one cell per row before column `index`.
    pub fn insert_column(&mut self, index: usize, column: Column, cells: Vec<Value>) {
        assert_eq!(cells.len(), self.rows.len(), "one cell per row for column {}", column.header());
        self.columns.insert(index, column);
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.cells.insert(index, cell);
        }
    }

    /// The index of the column of `quantity` and `kind`.
    pub fn column(&self, quantity: &str, kind: &Kind) -> Option<usize> {
        self.columns.iter().position(|c| c.quantity.as_deref() == Some(quantity) && &c.kind == kind)
    }

    /// The cell of a row in the column of `quantity` and `kind`.
    pub fn cell<'a>(&'a self, row: &'a OutRow, quantity: &str, kind: &Kind) -> Option<&'a Value> {
        self.column(quantity, kind).map(|j| &row.cells[j])
    }

    /// The cell of a row in the column of fixture key `key` and `kind`.
    pub fn cell_by_key<'a>(&'a self, row: &'a OutRow, key: &str, kind: &Kind) -> Option<&'a Value> {
        self.columns.iter().position(|c| c.key.as_deref() == Some(key) && &c.kind == kind).map(|j| &row.cells[j])
    }

    /// Counts of marks: (✓, ✗, ref).
    pub fn marks(&self) -> (usize, usize, usize) {
        let mut m = (0, 0, 0);
        for c in self.rows.iter().flat_map(|r| &r.cells) {
            match c {
                Value::Mark(Mark::Match) => m.0 += 1,
                Value::Mark(Mark::Mismatch(_)) => m.1 += 1,
                Value::Mark(Mark::Reference) => m.2 += 1,
                _ => {}
            }
        }
        m
    }

    fn flat(&self) -> Flat {
        let mut header = vec![self.row_header.clone()];
        header.extend(self.columns.iter().map(Column::header));
        Flat {
            binary: self.binary.clone(),
            title: self.title(),
            source: self.source.clone(),
            header,
            rows: self
                .rows
                .iter()
                .map(|r| FlatRow {
                    id: r.id.clone(),
                    label: r.label.clone(),
                    group: r.group.clone(),
                    cells: r.cells.iter().map(Value::text).collect(),
                })
                .collect(),
            notes: self.notes.clone(),
            marks: self.marks(),
        }
    }

    /// Header and rows as plain strings, the row label first.
    fn table_cells(&self) -> Vec<Vec<String>> {
        let mut out =
            vec![std::iter::once(self.row_header.clone()).chain(self.columns.iter().map(Column::header)).collect()];
        for r in &self.rows {
            out.push(std::iter::once(r.label.clone()).chain(r.cells.iter().map(Value::text)).collect());
        }
        out
    }

    fn text(&self) -> String {
        let cells = self.table_cells();
        let n = cells[0].len();
        // two header lines: the quantity over its (pub, ours, Δ, mark) cells, then the sub-labels
        let mut groups: Vec<String> = vec![String::new()];
        let mut subs: Vec<String> = vec![self.row_header.clone()];
        for c in &self.columns {
            let grouped = matches!(c.kind, Kind::Published | Kind::Ours | Kind::Delta | Kind::Mark | Kind::Proxy);
            groups.push(c.quantity.clone().filter(|_| grouped).unwrap_or_default());
            subs.push(c.kind.label().to_string());
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
        for l in wrap(&self.title(), 100) {
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
        let marks = self.marks();
        writeln!(s, "\nmarks: {} ✓, {} ✗, {} ref", marks.0, marks.1, marks.2).unwrap();
        for (id, text) in &self.notes {
            writeln!(s).unwrap();
            for l in wrap(&format!("[{id}] {text}"), 100) {
                writeln!(s, "{l}").unwrap();
            }
        }
        s
    }

    /// Markdown for the book: the caption as a paragraph, the table split into blocks that fit a
    /// 1280-pixel window (the row labels repeated in each; a quantity's columns never split), every
    /// ✗ a link to its note, the notes with anchors.
    fn markdown(&self) -> String {
        let esc = |c: &str| c.replace('|', "\\|");
        let mut s = self.book_table();
        for (id, text) in &self.notes {
            let link = if self.cites(id) {
                format!(" ([every cell with this cause](discrepancies.md#{}))", anchor("cause", id))
            } else {
                String::new()
            };
            writeln!(s, "- <a id=\"{}\"></a>**{}**: {}{link}", anchor("note", id), esc(id), esc(text)).unwrap();
        }
        s
    }

    /// The caption, the source, the table blocks and the marks line, without the notes.
    pub fn book_table(&self) -> String {
        let esc = |c: &str| c.replace('|', "\\|");
        let mut s =
            format!("*{}.* {}\n\n<small>Source: {}.</small>\n\n", self.table, esc(&self.caption), esc(&self.source));
        let texts: Vec<Vec<String>> =
            self.rows.iter().map(|r| r.cells.iter().map(|c| self.md_cell(c)).collect()).collect();
        for (b, block) in self.blocks().iter().enumerate() {
            if b > 0 {
                s.push('\n');
            }
            let head = std::iter::once(self.row_header.clone())
                .chain(block.iter().map(|&j| self.columns[j].header()))
                .map(|h| esc(&h))
                .collect::<Vec<_>>();
            writeln!(s, "| {} |", head.join(" | ")).unwrap();
            writeln!(s, "|---|{}", "---:|".repeat(block.len())).unwrap();
            let mut group: Option<&String> = None;
            for (row, cells) in self.rows.iter().zip(&texts) {
                let g = row.group.as_ref();
                if let Some(name) = g.filter(|_| g != group) {
                    writeln!(s, "| *{}* |{}", esc(name), " |".repeat(block.len())).unwrap();
                }
                group = g;
                let line: Vec<String> =
                    std::iter::once(esc(&row.label)).chain(block.iter().map(|&j| cells[j].clone())).collect();
                writeln!(s, "| {} |", line.join(" | ")).unwrap();
            }
        }
        if self.columns.iter().any(|c| c.kind == Kind::Mark) {
            let marks = self.marks();
            writeln!(s, "\nMarks: {} ✓, {} ✗, {} ref.", marks.0, marks.1, marks.2).unwrap();
        }
        s.push('\n');
        s
    }

    /// Whether a ✗ of this report cites note `id`.
    pub fn cites(&self, id: &str) -> bool {
        self.rows.iter().flat_map(|r| &r.cells).any(|c| matches!(c, Value::Mark(Mark::Mismatch(Some(n))) if n == id))
    }

    /// A cell in markdown: a ✗ links to its note.
    fn md_cell(&self, c: &Value) -> String {
        match c {
            Value::Mark(Mark::Mismatch(Some(id))) => format!("[✗ {id}](#{})", anchor("note", id)),
            _ => c.text().replace('|', "\\|"),
        }
    }

    /// The columns of each markdown block: families of columns (a quantity's pub, ours, Δ, mark)
    /// packed in order while the estimated width fits [`BOOK_TABLE_PX`]; the views column is
    /// repeated in every block.
    fn blocks(&self) -> Vec<Vec<usize>> {
        let width = |j: usize| {
            let header = self.columns[j].header();
            let word = header.split(' ').map(|w| w.chars().count()).max().unwrap_or(0);
            // text with spaces wraps: count it as at most LABEL_CHARS
            let chars =
                |t: String| if t.contains(' ') { t.chars().count().min(LABEL_CHARS) } else { t.chars().count() };
            let cell = self.rows.iter().map(|r| chars(r.cells[j].text())).max().unwrap_or(0);
            word.max(cell) * CHAR_PX + CELL_PAD_PX
        };
        let label = self.rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).min(LABEL_CHARS);
        let fixed: Vec<usize> = (0..self.columns.len()).filter(|&j| self.columns[j].kind == Kind::Views).collect();
        let fixed_px = label * CHAR_PX + CELL_PAD_PX + fixed.iter().map(|&j| width(j)).sum::<usize>();
        // families: runs of columns sharing a quantity
        let mut families: Vec<Vec<usize>> = Vec::new();
        for j in (0..self.columns.len()).filter(|j| !fixed.contains(j)) {
            let q = &self.columns[j].quantity;
            match families.last_mut() {
                Some(f) if q.is_some() && self.columns[*f.last().unwrap()].quantity == *q => f.push(j),
                _ => families.push(vec![j]),
            }
        }
        let mut blocks: Vec<Vec<usize>> = Vec::new();
        let mut used = 0;
        for f in families {
            let px: usize = f.iter().map(|&j| width(j)).sum();
            if blocks.is_empty() || used + px > BOOK_TABLE_PX {
                blocks.push(fixed.clone());
                used = fixed_px;
            }
            used += px;
            blocks.last_mut().unwrap().extend(f);
        }
        if blocks.is_empty() {
            blocks.push(fixed);
        }
        blocks
    }

    fn csv(&self) -> String {
        let q = |c: &str| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.to_string()
            }
        };
        let cells = self.table_cells();
        let mut s = String::new();
        let mut header = vec!["id".to_string(), "group".to_string()];
        header.extend(cells[0].iter().cloned());
        writeln!(s, "{}", header.iter().map(|c| q(c)).collect::<Vec<_>>().join(",")).unwrap();
        for (r, cells) in self.rows.iter().zip(&cells[1..]) {
            let mut line = vec![r.id.clone(), r.group.clone().unwrap_or_default()];
            line.extend(cells.iter().cloned());
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

impl Report {
    /// Reads back a report this renderer wrote as markdown (one table or its blocks): the committed
    /// outputs of measured runs (book/src/measured/), so that the book can show them in its current
    /// form and chart them. Columns are typed from their headers ("X pub", "X ours", Δ, mark,
    /// anything else a measured column); cells keep their printed text and decimals, so rendering
    /// the result prints the same cells.
    pub fn from_markdown(binary: &str, text: &str) -> anyhow::Result<Report> {
        let unesc = |c: &str| c.trim().replace("\\|", "|");
        let split = |line: &str| -> Vec<String> {
            let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
            let mut cells = Vec::new();
            let mut cur = String::new();
            let mut prev = ' ';
            for ch in inner.chars() {
                if ch == '|' && prev != '\\' {
                    cells.push(unesc(&cur));
                    cur.clear();
                } else {
                    cur.push(ch);
                }
                prev = ch;
            }
            cells.push(unesc(&cur));
            cells
        };
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let (table, caption) = match first.trim_start_matches('#').trim().split_once(" — ") {
            Some((t, c)) if first.starts_with('#') => (t.to_string(), c.to_string()),
            _ => {
                let l = first.trim_start_matches('*');
                let (t, c) = l.split_once(".* ").ok_or_else(|| anyhow::anyhow!("{binary}: no title line"))?;
                (t.to_string(), c.to_string())
            }
        };
        let source = text
            .lines()
            .find_map(|l| {
                let l = l.trim().trim_start_matches("<small>").trim_start_matches('*');
                l.strip_prefix("Source: ")
                    .map(|s| s.trim_end_matches("</small>").trim_end_matches('*').trim_end_matches('.').to_string())
            })
            .unwrap_or_default();
        let mut rep = Report {
            binary: binary.into(),
            table,
            caption,
            source,
            row_header: "row".into(),
            columns: Vec::new(),
            rows: Vec::new(),
            notes: Vec::new(),
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        let mut block = 0;
        while i < lines.len() {
            if !(lines[i].starts_with('|') && lines.get(i + 1).is_some_and(|l| l.starts_with("|---"))) {
                if let Some(note) = lines[i].strip_prefix("- ") {
                    let note = note.split("</a>").last().unwrap_or(note);
                    if let Some((id, text)) = note.strip_prefix("**").and_then(|n| n.split_once("**: ")) {
                        // without the link to the discrepancies page the renderer adds
                        let text = text.split(" ([every cell with this cause](").next().unwrap_or(text);
                        rep.notes.push((id.to_string(), text.to_string()));
                    }
                }
                i += 1;
                continue;
            }
            let header = split(lines[i]);
            rep.row_header = header[0].clone();
            // the views column and the label repeat in every block: keep them once
            let fresh: Vec<usize> = (1..header.len()).filter(|&j| !(block > 0 && header[j] == "views")).collect();
            for &j in &fresh {
                let h = &header[j];
                let col = if let Some(q) = h.strip_suffix(" pub") {
                    Column::new(Some(q), Kind::Published)
                } else if let Some(q) = h.strip_suffix(" ours") {
                    Column::new(Some(q), Kind::Ours)
                } else if h == "views" {
                    Column::new(None, Kind::Views)
                } else if h == "Δ" || h == "mark" {
                    let q = rep.columns.last().and_then(|c| c.quantity.clone());
                    Column { quantity: q, kind: if h == "Δ" { Kind::Delta } else { Kind::Mark }, key: None }
                } else {
                    Column::new(None, Kind::Measured(h.clone()))
                };
                rep.columns.push(col);
            }
            i += 2;
            let mut r = 0;
            let mut group = None;
            while i < lines.len() && lines[i].starts_with('|') {
                let cells = split(lines[i]);
                i += 1;
                if cells[1..].iter().all(|c| c.is_empty()) && cells[0].starts_with('*') {
                    group = Some(cells[0].trim_matches('*').to_string());
                    continue;
                }
                if block == 0 {
                    rep.rows.push(OutRow {
                        id: format!("row{r}"),
                        label: cells[0].clone(),
                        group: group.clone(),
                        cells: Vec::new(),
                    });
                }
                let row =
                    rep.rows.get_mut(r).ok_or_else(|| anyhow::anyhow!("{binary}: block {block} has more rows"))?;
                for &j in &fresh {
                    let c = cells.get(j).cloned().unwrap_or_default();
                    let is_mark =
                        rep.columns[rep.columns.len() - fresh.len() + fresh.iter().position(|x| *x == j).unwrap()].kind
                            == Kind::Mark;
                    // a linked mark "[✗ id](#note-id)" reads as "✗ id"
                    let c = match c.strip_prefix('[').and_then(|m| m.split_once("](")) {
                        Some((m, _)) => m.to_string(),
                        None => c,
                    };
                    let value = if is_mark && c == "✓" {
                        Value::Mark(Mark::Match)
                    } else if is_mark && c == "ref" {
                        Value::Mark(Mark::Reference)
                    } else if let (true, Some(id)) = (is_mark, c.strip_prefix("✗ ")) {
                        Value::Mark(Mark::Mismatch((id != "?").then(|| id.to_string())))
                    } else if c.is_empty() {
                        Value::Blank
                    } else if c == "—" {
                        Value::Fixed { value: None, decimals: 0 }
                    } else if let (false, Ok(v)) = (c.starts_with('+'), c.parse::<f64>()) {
                        Value::Fixed { value: Some(v), decimals: c.split_once('.').map_or(0, |(_, d)| d.len()) }
                    } else {
                        Value::Text(c)
                    };
                    row.cells.push(value);
                }
                r += 1;
            }
            block += 1;
        }
        anyhow::ensure!(!rep.rows.is_empty(), "{binary}: no table found");
        Ok(rep)
    }
}

/// The width a markdown table block may take in the book: the content column at a 1280-pixel
/// window (book/theme/custom.css), in the estimate below.
const BOOK_TABLE_PX: usize = 900;
/// The estimated width of one character of a table cell (14 px sans-serif) and a cell's padding.
const CHAR_PX: usize = 8;
const CELL_PAD_PX: usize = 17;
/// Row labels wrap after about this many characters.
const LABEL_CHARS: usize = 22;

/// An HTML id for a note or a cause: `kind-` and the note id, spaces as dashes.
pub fn anchor(kind: &str, id: &str) -> String {
    format!("{kind}-{}", id.replace(' ', "-"))
}

/// The rows of a report with a ✗ that no note explains (for tests).
pub fn unexplained(rep: &Report) -> Vec<String> {
    rep.rows
        .iter()
        .flat_map(|r| r.cells.iter().filter(|c| **c == Value::Mark(Mark::Mismatch(None))).map(move |_| r.id.clone()))
        .collect()
}
