//! Published tables as data: `fixtures/published/<paper>/<table>.ron`, transcribed from the papers
//! with their provenance. Published numbers live here and only here; the code computes "ours".
//!
//! The files are embedded in the library when it is built (`build.rs`), so the binaries need no
//! checkout at run time; [`Published::load`] reads a table from any path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::input::InputError;

/// One published table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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

    /// Reads and checks a table from a file (see [`Published::parse`]).
    pub fn load(path: &Path) -> Result<Self, InputError> {
        Self::parse(&crate::input::read_text(path)?, path)
    }

    /// Parses and checks a table read from `origin`: unknown fields refused, unique row ids, cells
    /// only in declared columns, notes pointing to existing rows. Errors name the file and the
    /// offending field or id.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, InputError> {
        let t: Published = crate::input::parse_ron(text, origin)?;
        let bad = |field: String, message: String| Err(InputError::invalid(origin, field, message));
        let mut ids = BTreeSet::new();
        for (i, r) in t.rows.iter().enumerate() {
            if !ids.insert(&r.id) {
                return bad(format!("rows[{i}].id"), format!("duplicate row id `{}`", r.id));
            }
            for k in r.cells.keys() {
                if t.column(k).is_none() {
                    return bad(
                        format!("rows[{i}].cells"),
                        format!("row `{}` has a cell for undeclared column `{k}`", r.id),
                    );
                }
            }
        }
        let mut note_ids = BTreeSet::new();
        for (i, n) in t.notes.iter().enumerate() {
            if !note_ids.insert(&n.id) {
                return bad(format!("notes[{i}].id"), format!("duplicate note id `{}`", n.id));
            }
            for r in &n.rows {
                if t.row(r).is_none() {
                    return bad(format!("notes[{i}].rows"), format!("note `{}` refers to unknown row `{r}`", n.id));
                }
            }
            for c in &n.columns {
                if t.column(c).is_none() {
                    return bad(
                        format!("notes[{i}].columns"),
                        format!("note `{}` refers to unknown column `{c}`", n.id),
                    );
                }
            }
        }
        Ok(t)
    }
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/published.rs"));
}

/// Every embedded table as (paper, table): `fixtures/published/<paper>/<table>.ron` at build time.
pub fn tables() -> Vec<(&'static str, &'static str)> {
    embedded::FILES.iter().map(|(p, t, _)| (*p, *t)).collect()
}

/// The embedded table `fixtures/published/<paper>/<table>.ron`.
pub fn load(paper: &str, table: &str) -> Result<Published, InputError> {
    let origin = PathBuf::from(format!("fixtures/published/{paper}/{table}.ron"));
    match embedded::FILES.iter().find(|(p, t, _)| *p == paper && *t == table) {
        Some((_, _, text)) => Published::parse(text, &origin),
        None => Err(InputError::unusable(&origin, "no such published table was embedded when the kit was built")),
    }
}
