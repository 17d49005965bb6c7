//! Errors that point into a YAML file: file, line, column and the field path. Worth copying
//! for any new input format: a user should never have to search for what a message means.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A problem in a recipe or toolchain spec, located as precisely as the parser allows.
#[derive(Debug, Clone)]
pub struct RecipeError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the offending field, e.g. `source.rev` or `steps[1].run`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for RecipeError {}

impl RecipeError {
    /// An error about `field`, located at the first line of `text` that contains `needle`
    /// (semantic checks run after parsing, when the parser's positions are gone).
    pub fn at_needle(file: &Path, text: &str, needle: &str, field: &str, message: String) -> Self {
        let (line, column) = locate(text, needle)
            .map(|(l, c)| (Some(l), Some(c)))
            .unwrap_or((None, None));
        RecipeError {
            file: file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
        }
    }
}

/// 1-based line and column of the first occurrence of `needle`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    text.lines().enumerate().find_map(|(i, line)| {
        line.find(needle)
            .map(|byte| (i + 1, line[..byte].chars().count() + 1))
    })
}

/// Parses YAML into `T`, turning parser errors into located [`RecipeError`]s with a
/// suggestion for a misspelt field.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, RecipeError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let inner = err.into_inner();
        let (line, column) = match inner.location() {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
            None => (None, None),
        };
        // The parser may place errors from nested values at the start of the enclosing
        // mapping; the line of the field's own key is more useful.
        let (line, column) = match (line, field.rsplit('.').next()) {
            (Some(l), Some(key)) if !key.is_empty() && !key.ends_with(']') => {
                locate_key_after(text, l, key).map_or((line, column), |(l, c)| (Some(l), Some(c)))
            }
            _ => (line, column),
        };
        let mut message = strip_location(&inner.to_string());
        // serde_norway prefixes the path of the enclosing value, which we print separately.
        for (i, _) in field.match_indices('.').chain([(field.len(), "")]) {
            if let Some(rest) = message.strip_prefix(&format!("{}: ", &field[..i])) {
                message = rest.to_owned();
                break;
            }
        }
        if let Some(s) = suggestion(&message) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        }
        RecipeError {
            file: file.to_owned(),
            line,
            column,
            field,
            message,
        }
    })
}

/// The first line at or after `from` (1-based) whose content starts with `key:`.
fn locate_key_after(text: &str, from: usize, key: &str) -> Option<(usize, usize)> {
    let key = key.trim_matches('`');
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let indent = line.len() - trimmed.len();
            trimmed
                .strip_prefix(key)
                .filter(|rest| rest.trim_start().starts_with(':'))
                .map(|_| (i + 1, indent + 1))
        })
}

/// serde_norway appends " at line L column C"; we print the position ourselves.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", the closest expected name.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::damerau_levenshtein(unknown, cand), cand))
        .filter(|(dist, cand)| *dist <= 2.max(cand.len() / 3))
        .min()
        .map(|(_, cand)| cand.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        outputs: Vec<String>,
        steps: Vec<String>,
    }

    #[test]
    fn unknown_field_gets_position_and_suggestion() {
        let text = "steps: []\nouptuts: [a]\n";
        let err = parse_yaml::<Doc>(Path::new("r.yaml"), text).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("r.yaml:2:1: "), "{s}");
        assert!(s.contains("did you mean `outputs`"), "{s}");
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let text = "steps: []\noutputs: {a: 1}\n";
        let err = parse_yaml::<Doc>(Path::new("r.yaml"), text).unwrap_err();
        assert_eq!(err.field, "outputs");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn needle_location() {
        let e = RecipeError::at_needle(Path::new("f"), "a: 1\nb: {x}\n", "{x}", "b", "bad".into());
        assert_eq!(e.to_string(), "f:2:4: b: bad");
    }
}
