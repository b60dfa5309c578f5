//! Published tables as data: `fixtures/published/<paper>/<table>.ron`, transcribed from the papers
//! with their provenance. Published numbers live here and only here; the code computes "ours".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One published table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// "ST-Adapter", "AIM" or "MST-Adapter".
    pub paper: String,
    /// Authors, venue, year.
    pub citation: String,
    /// The table's number as printed, e.g. "2" or "5b".
    pub table: String,
    /// The caption, verbatim.
    pub caption: String,
    /// Where it was read: the paper's text (file name of the transcription) and the section/page.
    pub source: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Footnotes and marks printed with the table (†, *, …), verbatim.
    #[serde(default)]
    pub footnotes: Vec<String>,
    /// Our notes: transcription remarks, and the explanation of every figure that does not
    /// reproduce (id referenced by a row's `marks`).
    #[serde(default)]
    pub notes: Vec<Note>,
}

/// A column of the printed table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Key used by the rows' `cells`, e.g. "top1", "gflops", "tunable_params".
    pub key: String,
    /// The header as printed.
    pub label: String,
    /// "%", "M", "G", "ms", "V/s", "GB", "h", … or none.
    #[serde(default)]
    pub unit: Option<String>,
    /// How the number was counted or measured (for GFLOPs: "fvcore multiply-adds × views"; for
    /// accuracy: dataset and split), as far as the paper says.
    #[serde(default)]
    pub convention: Option<String>,
    /// Decimal places printed, when the numbers end in zeros the RON numbers cannot keep (93.00).
    #[serde(default)]
    pub decimals: Option<usize>,
}

/// A printed row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable id, unique in the table, e.g. "st_vit_b16_8x3x1".
    pub id: String,
    /// The method as printed.
    pub label: String,
    /// The section heading it is printed under ("Methods with frozen backbone"), if any.
    #[serde(default)]
    pub group: Option<String>,
    /// Values by column key, as printed.
    pub cells: BTreeMap<String, Cell>,
}

/// A printed cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// A number as printed (84.5, 121.57, 7140).
    Num(f64),
    /// Text as printed ("CLIP", "8×3×1", "✓", "Out of Memory").
    Text(String),
    /// Printed as "-" or "N/A" or left empty.
    Missing,
}

/// A note attached to rows or to the whole table. A note that names `columns` explains why our
/// computed value differs from the published one in those cells (the reproduction marks them
/// "✗ <id>").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    /// Row ids (empty: the whole table).
    #[serde(default)]
    pub rows: Vec<String>,
    /// Column keys this note explains a discrepancy in (empty: a remark, not an explanation).
    #[serde(default)]
    pub columns: Vec<String>,
    pub text: String,
}

impl Published {
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }
    pub fn column(&self, key: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.key == key)
    }
    pub fn note(&self, id: &str) -> Option<&Note> {
        self.notes.iter().find(|n| n.id == id)
    }
    /// The note explaining a discrepancy in (row, column), if any.
    pub fn explanation(&self, row: &str, column: &str) -> Option<&Note> {
        self.notes
            .iter()
            .find(|n| n.columns.iter().any(|c| c == column) && (n.rows.is_empty() || n.rows.iter().any(|r| r == row)))
    }

    /// Reads and checks a table: unique row ids, cells only in declared columns, notes pointing to
    /// existing rows. Errors name the file and the offending id.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let t: Published = ron::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut ids = std::collections::BTreeSet::new();
        for r in &t.rows {
            if !ids.insert(&r.id) {
                anyhow::bail!("{}: duplicate row id `{}`", path.display(), r.id);
            }
            for k in r.cells.keys() {
                if t.column(k).is_none() {
                    anyhow::bail!("{}: row `{}` has a cell for undeclared column `{k}`", path.display(), r.id);
                }
            }
        }
        let mut note_ids = std::collections::BTreeSet::new();
        for n in &t.notes {
            if !note_ids.insert(&n.id) {
                anyhow::bail!("{}: duplicate note id `{}`", path.display(), n.id);
            }
            for r in &n.rows {
                if t.row(r).is_none() {
                    anyhow::bail!("{}: note `{}` refers to unknown row `{r}`", path.display(), n.id);
                }
            }
        }
        Ok(t)
    }
}

/// `fixtures/published` in this checkout.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/published")
}

/// Loads `fixtures/published/<paper>/<table>.ron`.
pub fn load(paper: &str, table: &str) -> anyhow::Result<Published> {
    Published::load(&dir().join(paper).join(format!("{table}.ron")))
}
