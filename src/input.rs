//! The user's files: one error type for every reader (model configs, recipes, weights, input
//! tensors, published tables; later videos and results) and the readers and writers they share.
//!
//! Every [`InputError`] names the file, and then what failed: the line, column and field of a RON
//! or JSON value that does not parse; the field of a value that parses but is not allowed; the
//! tensor (and the index of a bad value); every key of weights that do not fit the model. Binaries
//! print it with `{:#}` and exit with code 1 (clap's usage errors exit with 2); nothing a user puts
//! in a file or on a command line reaches a panic.
//!
//! Writing goes through [`crate::io::write_atomic`].
//!
//! A config is validated once, where it enters: [`read_ron`] parses and then runs [`Validate`], so
//! a value that is read is a value that builds.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::clip::weights::WeightsError;

/// Why a file the user gave cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be read or written: absent, a directory, no permission, disk full.
    #[error("cannot {action} the file {}: {error}", path.display())]
    Io { path: PathBuf, action: &'static str, error: std::io::Error },
    /// RON or JSON that does not parse as the expected type.
    #[error("{}:{line}:{column}: {message}{excerpt}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The field being read, dotted (`StAdapter.clip.heads`), when known.
        field: Option<String>,
        message: String,
        /// The offending line with a caret under the column (empty when unknown).
        excerpt: String,
    },
    /// A value that parses but is not allowed.
    #[error("{}: `{field}`: {message}", path.display())]
    Invalid { path: PathBuf, field: String, message: String },
    /// The file exists but cannot be used as asked: a broken safetensors layout, a directory where a
    /// file is expected.
    #[error("{}: {message}", path.display())]
    Unusable { path: PathBuf, message: String },
    /// A tensor of a file: absent, of the wrong shape or dtype, holding non-finite values.
    #[error("{}: tensor `{key}`: {message}", path.display())]
    Tensor { path: PathBuf, key: String, message: String },
    /// Weights that do not fit the model: a summary, then every problem by key.
    #[error("{0}")]
    Weights(Box<WeightsError>),
}

impl InputError {
    pub fn io(path: &Path, action: &'static str, error: std::io::Error) -> Self {
        InputError::Io { path: path.to_path_buf(), action, error }
    }
    pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError::Invalid { path: path.to_path_buf(), field: field.into(), message: message.into() }
    }
    pub fn unusable(path: &Path, message: impl Into<String>) -> Self {
        InputError::Unusable { path: path.to_path_buf(), message: message.into() }
    }
    pub fn tensor(path: &Path, key: &str, message: impl Into<String>) -> Self {
        InputError::Tensor { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
    }
    /// A config value that failed [`Validate`], in the file it was read from.
    pub fn config(path: &Path, e: ConfigError) -> Self {
        InputError::Invalid { path: path.to_path_buf(), field: e.field, message: e.message }
    }
}

impl From<WeightsError> for InputError {
    fn from(e: WeightsError) -> Self {
        InputError::Weights(Box::new(e))
    }
}

/// A config value that is not allowed: the field (dotted path, `clip.heads`) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
    /// The same error one level down: `clip` + `heads` → `clip.heads`.
    pub fn within(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

/// Checks a config's values beyond their types (arithmetic the model relies on, ranges).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// `Err(field, message)` unless `ok`.
pub fn ensure(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, message()))
    }
}

/// A count that must be at least 1 and at most `max` (a bound that keeps the arithmetic and the
/// memory of the kit sane, stated in the message).
pub fn ensure_count(value: usize, field: &str, max: usize) -> Result<(), ConfigError> {
    ensure(value >= 1, field, || format!("must be at least 1, is {value}"))?;
    ensure(value <= max, field, || format!("is {value}; the kit accepts at most {max}"))
}

/// A finite number in `[lo, hi)` (`hi_inclusive`: `[lo, hi]`).
pub fn ensure_in(value: f64, field: &str, lo: f64, hi: f64, hi_inclusive: bool) -> Result<(), ConfigError> {
    let ok = value.is_finite() && value >= lo && if hi_inclusive { value <= hi } else { value < hi };
    let close = if hi_inclusive { "]" } else { ")" };
    ensure(ok, field, || format!("must be a number in [{lo}, {hi}{close}, is {value}"))
}

/// A clap value parser for a count in `range`, e.g. `#[arg(long, value_parser = count(1..=1000))]`:
/// clap rejects 0 or a value beyond the range with its usage error (exit code 2), naming the flag.
pub fn count(range: std::ops::RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(range)
}

/// Reads a whole text file.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    if path.is_dir() {
        return Err(InputError::unusable(path, "is a directory, not a file"));
    }
    std::fs::read_to_string(path).map_err(|e| InputError::io(path, "read", e))
}

/// Reads a whole binary file.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, InputError> {
    if path.is_dir() {
        return Err(InputError::unusable(path, "is a directory, not a file"));
    }
    std::fs::read(path).map_err(|e| InputError::io(path, "read", e))
}

/// Reads a RON file as `T` (unknown fields are refused by `T`'s `deny_unknown_fields`) and
/// validates it.
pub fn read_ron<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, InputError> {
    let value: T = parse_ron(&read_text(path)?, path)?;
    value.validate().map_err(|e| InputError::config(path, e))?;
    Ok(value)
}

/// Parses RON text read from `origin` (for messages). Errors give the line, the column, the
/// field being read, what was expected and the line itself.
pub fn parse_ron<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, InputError> {
    let mut de = ron::Deserializer::from_str(text).map_err(|e| ron_error(text, origin, e, None))?;
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(ron_error(text, origin, de.span_error(e), None)),
        },
        Err(e) => {
            let field = e.path().to_string();
            let spanned = de.span_error(e.into_inner());
            Err(ron_error(text, origin, spanned, Some(field)))
        }
    }
}

/// Parses JSON text read from `origin` as `T`; errors as for RON.
pub fn parse_json<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, InputError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let field = Some(e.path().to_string()).filter(|p| p != ".");
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let mut message = inner.to_string();
        // serde_json appends " at line L column C": the location is in front already
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        if let Some(f) = &field {
            message = format!("field `{f}`: {message}");
        }
        InputError::Syntax {
            path: origin.to_path_buf(),
            line,
            column,
            field,
            message,
            excerpt: excerpt(text, line, column),
        }
    })
}

/// Reads a JSON file as `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, InputError> {
    parse_json(&read_text(path)?, path)
}

/// A RON error in words: the field (from the deserializer's path, or the last `name:` before the
/// position), what was expected, what was found.
fn ron_error(text: &str, origin: &Path, e: ron::error::SpannedError, path: Option<String>) -> InputError {
    let (line, column) = (e.position.line, e.position.col);
    let found = token_at(text, line, column);
    // the deserializer's path ends in `?` when the error came between fields: read the field name
    // from the text
    let field = path
        .map(|p| match p.strip_suffix('?') {
            Some(parent) => {
                let name = field_before(text, line, column).unwrap_or_default();
                format!("{parent}{name}").trim_end_matches('.').to_string()
            }
            None => p,
        })
        .filter(|p| !p.is_empty() && p != ".");
    use ron::error::Error as R;
    let what = match &e.code {
        // `frames: 4.0` for an integer field: ron reads `4` and stops at `.`
        R::ExpectedComma | R::ExpectedInteger | R::ExpectedStructLikeEnd | R::ExpectedArrayEnd
            if found.starts_with('.') && previous_is_digit(text, line, column) =>
        {
            let number = number_around(text, line, column);
            format!("expected an integer (a whole number), found `{number}`")
        }
        R::ExpectedComma => format!("expected `,` before the next field (or the closing bracket), found `{found}`"),
        R::ExpectedInteger => format!("expected a non-negative integer, found `{found}`"),
        R::ExpectedFloat => format!("expected a number, found `{found}`"),
        R::ExpectedBoolean => format!("expected `true` or `false`, found `{found}`"),
        R::ExpectedString | R::ExpectedStringEnd => format!("expected a string in double quotes, found `{found}`"),
        R::TrailingCharacters => format!("unexpected text after the end of the value: `{found}`"),
        R::Eof => "the file ends before the value is complete (a bracket not closed?)".to_string(),
        other => {
            // ron writes "named `x`in" without a space
            let s = other.to_string().replace("`in ", "` in ");
            let mut s = s.replacen("Unexpected field", "unknown field", 1);
            s = s.replacen("Unexpected variant", "unknown variant", 1);
            s = s.replacen("Unexpected missing field", "missing field", 1);
            if let Some(rest) = s.strip_prefix("Expected ") {
                s = format!("expected {rest}, found `{found}`");
            }
            s
        }
    };
    let message = match &field {
        Some(f) => format!("field `{f}`: {what}"),
        None => what,
    };
    InputError::Syntax {
        path: origin.to_path_buf(),
        line,
        column,
        field,
        message,
        excerpt: excerpt(text, line, column),
    }
}

/// The 1-based `line` of `text`.
fn line_of(text: &str, line: usize) -> &str {
    text.lines().nth(line.saturating_sub(1)).unwrap_or("")
}

/// The characters of `line` from 1-based `column`.
fn rest_of_line(text: &str, line: usize, column: usize) -> String {
    line_of(text, line).chars().skip(column.saturating_sub(1)).collect()
}

/// The token at (line, column): up to the next delimiter, at most 40 characters.
fn token_at(text: &str, line: usize, column: usize) -> String {
    let rest = rest_of_line(text, line, column);
    let rest = rest.trim_start();
    if rest.is_empty() {
        return "end of line".to_string();
    }
    let first = rest.chars().next().unwrap_or(' ');
    if "(),[]:".contains(first) {
        return first.to_string();
    }
    rest.chars().take_while(|c| !",()[]:".contains(*c) && !c.is_whitespace()).take(40).collect()
}

fn previous_is_digit(text: &str, line: usize, column: usize) -> bool {
    column >= 2 && line_of(text, line).chars().nth(column - 2).is_some_and(|c| c.is_ascii_digit())
}

/// The number that contains the character at (line, column), e.g. `4.0`.
fn number_around(text: &str, line: usize, column: usize) -> String {
    let chars: Vec<char> = line_of(text, line).chars().collect();
    let is_num = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+' || c == '_';
    let mut start = (column - 1).min(chars.len());
    while start > 0 && is_num(chars[start - 1]) {
        start -= 1;
    }
    let mut end = (column - 1).min(chars.len());
    while end < chars.len() && is_num(chars[end]) {
        end += 1;
    }
    chars[start..end].iter().collect()
}

/// The name of the last `name:` at or before (line, column).
fn field_before(text: &str, line: usize, column: usize) -> Option<String> {
    let mut before: String = text.lines().take(line.saturating_sub(1)).map(|l| format!("{l}\n")).collect();
    before.extend(line_of(text, line).chars().take(column.saturating_sub(1)));
    let colon = before.rfind(':')?;
    let head = before[..colon].trim_end();
    let name: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The line with a caret under the column, indented under the message.
pub fn excerpt(text: &str, line: usize, column: usize) -> String {
    let l = line_of(text, line);
    if l.trim().is_empty() {
        return String::new();
    }
    let number = line.to_string();
    let pad = " ".repeat(number.len());
    let caret: String = l.chars().take(column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    format!("\n  {number} | {l}\n  {pad} | {caret}^")
}

/// The first non-finite value (NaN or ±∞) of `values`, as (flat index, value).
pub fn first_non_finite<T: Copy + Into<f64>>(values: &[T]) -> Option<(usize, f64)> {
    values.iter().map(|v| (*v).into()).enumerate().find(|(_, v)| !v.is_finite())
}

/// A flat row-major index as a multi-index: 7 in (2, 4) → `[1, 3]`.
pub struct Index<'a>(pub usize, pub &'a [usize]);

impl fmt::Display for Index<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut idx = vec![0; self.1.len()];
        for (i, d) in self.1.iter().enumerate().rev() {
            if *d > 0 {
                idx[i] = rest % d;
                rest /= d;
            }
        }
        write!(f, "{idx:?}")
    }
}

/// `Err` naming the tensor and the index of its first NaN or infinity.
pub fn check_finite(path: &Path, key: &str, shape: &[usize], values: &[f64]) -> Result<(), InputError> {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    match first_non_finite(values) {
        None => Ok(()),
        Some((i, v)) => Err(InputError::tensor(
            path,
            key,
            format!("{bad} non-finite value(s); the first is {v} at index {} of shape {shape:?}", Index(i, shape)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[allow(dead_code)]
        frames: usize,
        #[allow(dead_code)]
        ratio: f64,
    }

    fn err(text: &str) -> String {
        parse_ron::<Cfg>(text, Path::new("x.ron")).unwrap_err().to_string()
    }

    /// `frames: 4.0` for an integer: the file, line and column, the field and what was expected.
    #[test]
    fn a_decimal_integer_is_named_with_its_field() {
        let e = err("(\n    frames: 4.0,\n    ratio: 0.5,\n)");
        assert!(e.starts_with("x.ron:2:14: field `frames`: expected an integer (a whole number), found `4.0`"), "{e}");
        assert!(e.contains("2 |     frames: 4.0,") && e.ends_with('^'), "{e}");
    }

    /// Typos in field names are refused, with the known fields.
    #[test]
    fn an_unknown_field_is_named() {
        let e = err("(frames: 4, ratio: 0.5, rato: 1.0)");
        assert!(e.contains("field `rato`: unknown field named `rato` in `Cfg`"), "{e}");
        assert!(e.contains("`frames`") && e.contains("`ratio`"), "{e}");
    }

    /// A missing comma names the field before it.
    #[test]
    fn a_missing_comma_names_the_field_before_it() {
        let e = err("(frames: 4 ratio: 0.5)");
        assert!(e.contains("field `frames`: expected `,`") && e.contains("found `ratio`"), "{e}");
    }

    /// `Index` unravels a flat index row-major.
    #[test]
    fn flat_indices_unravel_row_major() {
        assert_eq!(Index(7, &[2, 4]).to_string(), "[1, 3]");
        assert_eq!(Index(0, &[1, 3, 2, 2, 2]).to_string(), "[0, 0, 0, 0, 0]");
        assert_eq!(Index(23, &[2, 3, 4]).to_string(), "[1, 2, 3]");
    }
}
