//! Datasets on disk: which videos, with which labels, in the four layouts people have them in.
//!
//! | spec (`--data`) | layout | labels |
//! |---|---|---|
//! | `list:FILE[:ROOT]` | the official list files of ST-Adapter and mmaction2: `<path> <label>` per line, `<path>` relative to `ROOT` (default: the list's folder) | the integers as written |
//! | `kinetics:CSV:ROOT` | the Kinetics annotation CSV (`label,youtube_id,time_start,time_end,split`, extra columns ignored) and the videos as the common release lays them out (see [`Dataset::from_kinetics_csv`]) | index of the label in the sorted class names |
//! | `ssv2:SPLIT.json:ROOT` | Something-Something v2: `labels.json` next to `train.json` / `validation.json`, videos `ROOT/<id>.webm` | `labels.json`'s index of the template with its brackets removed |
//! | `folder:ROOT` | one folder per class, `ROOT/<class>/<video>` | index of the class folder in sorted order |
//!
//! Every reader gives the items (path, label) in the file's order and a [`Manifest`]: items listed,
//! items whose file exists, and a sha256 of the sorted `name<TAB>label` lines, so two copies of "the
//! K400 validation set" are told apart by their records. A video listed but absent is not an error
//! when reading the list: it is counted ([`Dataset::missing`]) and reported, and loading it later
//! gives an [`crate::data::ItemError`] (skipped and counted with `--skip-bad`, otherwise the run stops).
//! Errors in the list itself (a line without a label, a label that is not a class) name the file and
//! the line or entry.
//!
//! Departures from the official readers, each deliberate: the official `line.split(' ')` accepts
//! exactly one space between path and label and fails on blank lines; we split at the last run of
//! whitespace (a path may contain spaces; tabs are allowed) and skip blank lines. Nothing else about
//! the items changes.

// ANCHOR: dataset_types
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::Manifest;
use crate::input::{read_text, InputError};

/// One video of a data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The video as the list names it (relative to the root): what the manifest hashes.
    pub name: String,
    /// Where the file is (root joined).
    pub path: PathBuf,
    pub label: usize,
    /// Where the list names it, for messages: `line 12`, `entry 7 (id 78687)`.
    pub origin: String,
}

/// A data set as read from disk.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The name the tables use ("k400", "ssv2", …); the binaries' `--dataset-name` overrides it.
    pub name: String,
    /// Where it was read from (the spec).
    pub source: String,
    pub items: Vec<Item>,
    /// Class names by label, when the layout has them.
    pub classes: Option<Vec<String>>,
    /// Labels run over `0..num_classes`.
    pub num_classes: usize,
    /// Indices of the items whose file does not exist.
    pub missing: Vec<usize>,
}
// ANCHOR_END: dataset_types

/// File extensions taken as videos in a folder-per-class layout (case-insensitive).
pub const VIDEO_EXTENSIONS: [&str; 11] =
    ["mp4", "webm", "mkv", "avi", "mov", "m4v", "mpg", "mpeg", "flv", "ogv", "3gp"];

impl Dataset {
    /// Reads a data set from a spec: `list:FILE[:ROOT]`, `kinetics:CSV:ROOT`, `ssv2:SPLIT.json:ROOT`,
    /// `folder:ROOT` (see the module header).
    pub fn open(spec: &str) -> anyhow::Result<Self> {
        let (kind, rest) = spec.split_once(':').ok_or_else(|| spec_error(spec, "no `kind:` in front"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let mut d = match (kind, parts.as_slice()) {
            ("list", [file]) => {
                let file = Path::new(file);
                let root = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Self::from_list(file, root)?
            }
            ("list", [file, root]) => Self::from_list(Path::new(file), Path::new(root))?,
            ("kinetics", [csv, root]) => Self::from_kinetics_csv(Path::new(csv), Path::new(root))?,
            ("ssv2", [split, root]) => {
                let split = Path::new(split);
                let labels = split.parent().unwrap_or(Path::new(".")).join("labels.json");
                Self::from_ssv2(split, &labels, Path::new(root))?
            }
            ("folder", [root]) => Self::from_folder(Path::new(root))?,
            ("list" | "kinetics" | "ssv2" | "folder", _) => {
                return Err(spec_error(spec, &format!("wrong number of `:`-separated parts for `{kind}`")))
            }
            _ => return Err(spec_error(spec, &format!("unknown kind `{kind}`"))),
        };
        d.source = spec.to_string();
        Ok(d)
    }

    // ANCHOR: from_list
    /// The official list format: `<path> <label>` per line, `<path>` relative to `root`.
    pub fn from_list(list: &Path, root: &Path) -> Result<Self, InputError> {
        let text = read_text(list)?;
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_end();
            if trimmed.trim().is_empty() {
                continue;
            }
            let bad = |message: String| line_error(list, &text, i + 1, message);
            let Some((path, label)) = trimmed.trim_start().rsplit_once(char::is_whitespace) else {
                return Err(bad(format!("expected `<path> <label>`, found `{trimmed}` (no label)")));
            };
            let path = path.trim_end();
            let label: usize = label.parse().map_err(|_| {
                bad(format!("the label `{label}` is not a class index (a non-negative integer) after `{path}`"))
            })?;
            items.push(Item { name: path.into(), path: root.join(path), label, origin: format!("line {}", i + 1) });
        }
        let name = list.file_stem().map_or("list".into(), |s| s.to_string_lossy().into_owned());
        let num_classes = items.iter().map(|it| it.label + 1).max().unwrap_or(0);
        Self::new(name, list, items, None, num_classes)
    }
    // ANCHOR_END: from_list

    // ANCHOR: from_kinetics_csv
    /// The Kinetics annotation CSV (`label,youtube_id,time_start,time_end[,split…]`, a header row naming
    /// the columns). Labels are indices into the **sorted** class names of the file (the order of
    /// mmaction2's `label_map_k400.txt` and of the class folders people make; all 400 classes occur in
    /// each K400 split, so train and validation agree).
    ///
    /// **Assumed layout** (the common release, github.com/cvdfoundation/kinetics-dataset, and the
    /// ActivityNet crawler): the clip of `youtube_id` from `time_start` to `time_end` seconds is the file
    /// `<youtube_id>_<time_start:06>_<time_end:06>.mp4`, e.g. `-3B32lodo2M_000059_000069.mp4`, directly in
    /// `root` (the split's folder, `k400/val`), or in a folder per class, `root/<label>/` or
    /// `root/<label with spaces as _>/`. The first that exists is used; a clip found in none is missing.
    pub fn from_kinetics_csv(csv: &Path, root: &Path) -> Result<Self, InputError> {
        let text = read_text(csv)?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(InputError::unusable(
                csv,
                "is empty; expected a header `label,youtube_id,time_start,time_end,split`",
            ));
        };
        let header = csv_fields(header);
        let column = |name: &str| {
            header.iter().position(|h| h.trim() == name).ok_or_else(|| {
                let have = header.join(",");
                let hint = if name == "label" { " (the test split is unlabelled: it cannot be evaluated)" } else { "" };
                line_error(csv, &text, 1, format!("no `{name}` column in the header `{have}`{hint}"))
            })
        };
        let (c_label, c_id, c_start, c_end) =
            (column("label")?, column("youtube_id")?, column("time_start")?, column("time_end")?);
        let mut rows = Vec::new();
        for (i, line) in lines {
            let f = csv_fields(line);
            let bad = |m: String| line_error(csv, &text, i + 1, m);
            let get = |c: usize, name: &str| {
                f.get(c)
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| bad(format!("{} fields, no `{name}` (column {})", f.len(), c + 1)))
            };
            let (label, id) = (get(c_label, "label")?, get(c_id, "youtube_id")?);
            let time = |c: usize, name: &str| -> Result<u64, InputError> {
                let s = get(c, name)?;
                // "59" or "59.0" as some copies write it; anything else is an error
                let whole = s.strip_suffix(".0").unwrap_or(&s);
                whole.parse().map_err(|_| bad(format!("`{name}` is `{s}`, not a whole number of seconds")))
            };
            let (start, end) = (time(c_start, "time_start")?, time(c_end, "time_end")?);
            if label.is_empty() || id.is_empty() {
                return Err(bad("empty `label` or `youtube_id`".into()));
            }
            rows.push((i + 1, label, format!("{id}_{start:06}_{end:06}.mp4")));
        }
        let mut classes: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        classes.sort();
        classes.dedup();
        let index: BTreeMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
        let items = rows
            .iter()
            .map(|(line, label, file)| {
                let candidates =
                    [PathBuf::from(file), Path::new(label).join(file), Path::new(&label.replace(' ', "_")).join(file)];
                let found = candidates.iter().find(|c| root.join(c).is_file()).unwrap_or(&candidates[0]);
                Item {
                    name: found.to_string_lossy().into_owned(),
                    path: root.join(found),
                    label: index[label.as_str()],
                    origin: format!("line {line}"),
                }
            })
            .collect();
        let name = match classes.len() {
            400 => "k400".to_string(),
            600 => "k600".to_string(),
            700 => "k700".to_string(),
            _ => csv.file_stem().map_or("kinetics".into(), |s| s.to_string_lossy().into_owned()),
        };
        let n = classes.len();
        Self::new(name, csv, items, Some(classes), n)
    }
    // ANCHOR_END: from_kinetics_csv

    // ANCHOR: from_ssv2
    /// Something-Something v2: `labels.json` (`{"Approaching something with your camera": "0", …}`),
    /// a split file (`train.json` / `validation.json`: `[{"id": "78687", "template": "Holding [something]
    /// next to [something]", …}, …]`) and the videos `root/<id>.webm`. An entry's label is the index of
    /// its template with `[` and `]` removed, as the official preprocessing does
    /// (`template.replace('[', '').replace(']', '')`).
    pub fn from_ssv2(split: &Path, labels: &Path, root: &Path) -> Result<Self, InputError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Index {
            Text(String),
            Number(usize),
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            id: String,
            template: Option<String>,
        }
        let map: BTreeMap<String, Index> = crate::input::read_json(labels)?;
        let mut by_name = BTreeMap::new();
        for (name, index) in &map {
            let i = match index {
                Index::Number(i) => *i,
                Index::Text(s) => s.trim().parse().map_err(|_| {
                    InputError::invalid(labels, name.as_str(), format!("the class index `{s}` is not an integer"))
                })?,
            };
            by_name.insert(name.clone(), i);
        }
        let num_classes = by_name.values().map(|i| i + 1).max().unwrap_or(0);
        let mut classes = vec![String::new(); num_classes];
        for (name, &i) in &by_name {
            if !classes[i].is_empty() {
                return Err(InputError::invalid(labels, name.as_str(), format!("class index {i} is used twice")));
            }
            classes[i] = name.clone();
        }
        if let Some(i) = classes.iter().position(String::is_empty) {
            return Err(InputError::unusable(
                labels,
                format!("no class has index {i} (indices must run 0..{num_classes})"),
            ));
        }
        let entries: Vec<Entry> = crate::input::read_json(split)?;
        let mut items = Vec::with_capacity(entries.len());
        for (k, e) in entries.iter().enumerate() {
            let at = format!("entry {k} (id {})", e.id);
            let Some(template) = &e.template else {
                return Err(InputError::invalid(
                    split,
                    format!("[{k}].template"),
                    format!("{at} has no `template` (the test split is unlabelled: it cannot be evaluated)"),
                ));
            };
            let class = template.replace(['[', ']'], "");
            let label = *by_name.get(&class).ok_or_else(|| {
                InputError::invalid(
                    split,
                    format!("[{k}].template"),
                    format!("{at}: `{class}` (from `{template}`) is not a class of {}", labels.display()),
                )
            })?;
            let name = format!("{}.webm", e.id);
            items.push(Item { path: root.join(&name), name, label, origin: at });
        }
        Self::new("ssv2".into(), split, items, Some(classes), num_classes)
    }
    // ANCHOR_END: from_ssv2

    /// One folder per class: `root/<class>/<video>`; classes in sorted order of their folder names,
    /// videos sorted within a class; files whose extension is not in [`VIDEO_EXTENSIONS`] and hidden
    /// entries are ignored.
    pub fn from_folder(root: &Path) -> Result<Self, InputError> {
        let list = |dir: &Path| -> Result<Vec<(String, PathBuf)>, InputError> {
            let rd = std::fs::read_dir(dir).map_err(|e| InputError::io(dir, "list", e))?;
            let mut v: Vec<(String, PathBuf)> = rd
                .filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(n, _)| !n.starts_with('.'))
                .collect();
            v.sort();
            Ok(v)
        };
        let classes: Vec<(String, PathBuf)> = list(root)?.into_iter().filter(|(_, p)| p.is_dir()).collect();
        if classes.is_empty() {
            return Err(InputError::unusable(root, "has no class folders (expected ROOT/<class>/<video>)"));
        }
        let mut items = Vec::new();
        for (label, (class, dir)) in classes.iter().enumerate() {
            for (file, path) in list(dir)? {
                let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
                if path.is_file() && VIDEO_EXTENSIONS.contains(&ext.as_str()) {
                    items.push(Item {
                        name: format!("{class}/{file}"),
                        path,
                        label,
                        origin: format!("{class}/{file}"),
                    });
                }
            }
        }
        let name = root.file_name().map_or("folder".into(), |s| s.to_string_lossy().into_owned());
        let n = classes.len();
        Self::new(name, root, items, Some(classes.into_iter().map(|c| c.0).collect()), n)
    }

    fn new(
        name: String,
        source: &Path,
        items: Vec<Item>,
        classes: Option<Vec<String>>,
        num_classes: usize,
    ) -> Result<Self, InputError> {
        if items.is_empty() {
            return Err(InputError::unusable(source, "lists no videos"));
        }
        let missing = items.iter().enumerate().filter(|(_, it)| !it.path.is_file()).map(|(i, _)| i).collect();
        Ok(Self { name, source: source.display().to_string(), items, classes, num_classes, missing })
    }

    /// What was read, for the results file: listed, found, the list's hash.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            dataset: self.name.clone(),
            source: self.source.clone(),
            listed: self.items.len(),
            found: self.items.len() - self.missing.len(),
            unreadable: 0,
            list_sha256: self.list_sha256(),
        }
    }

    /// sha256 of the sorted `name<TAB>label` lines (the same for a list and its shuffled copy).
    pub fn list_sha256(&self) -> String {
        use sha2::Digest;
        let mut lines: Vec<String> = self.items.iter().map(|it| format!("{}\t{}\n", it.name, it.label)).collect();
        lines.sort();
        let mut h = sha2::Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A line about the videos that are missing (empty when none), naming the first few.
    pub fn missing_report(&self) -> String {
        if self.missing.is_empty() {
            return String::new();
        }
        let some: Vec<String> = self
            .missing
            .iter()
            .take(3)
            .map(|&i| format!("{} ({})", self.items[i].path.display(), self.items[i].origin))
            .collect();
        format!(
            "{}: {} of {} listed videos are missing, e.g. {}{}",
            self.source,
            self.missing.len(),
            self.items.len(),
            some.join(", "),
            if self.missing.len() > 3 { ", …" } else { "" }
        )
    }

    /// The first item whose label is not below `classes` (a model's head), as an error naming it.
    pub fn check_labels(&self, classes: usize) -> anyhow::Result<()> {
        if let Some(it) = self.items.iter().find(|it| it.label >= classes) {
            anyhow::bail!(
                "{}: {} ({}) has label {}, but the model has {classes} classes",
                self.source,
                it.origin,
                it.name,
                it.label
            );
        }
        Ok(())
    }
}

fn spec_error(spec: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--data `{spec}`: {what}; expected one of list:FILE[:ROOT], kinetics:CSV:ROOT, ssv2:SPLIT.json:ROOT, folder:ROOT"
    )
}

fn line_error(path: &Path, text: &str, line: usize, message: String) -> InputError {
    InputError::Syntax {
        path: path.to_path_buf(),
        line,
        column: 1,
        field: None,
        message,
        excerpt: crate::input::excerpt(text, line, 1),
    }
}

/// The fields of one CSV line (RFC 4180 quotes: `"a, b"`, `""` for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quoted CSV fields keep their commas; doubled quotes are one quote.
    #[test]
    fn csv_fields_follow_rfc_4180_quotes() {
        assert_eq!(csv_fields(r#""a, b",x,"say ""hi""",""#), ["a, b", "x", "say \"hi\"", ""]);
    }
}
