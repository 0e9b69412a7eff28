//! Small JSON files that ember writes beside a checkpoint (split, classes), each tagged with a
//! format string that is checked on load.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::DataError;

/// Writes `value` as pretty JSON to `path`.
pub fn save<T: Serialize>(value: &T, path: &Path) -> Result<(), DataError> {
    let json = serde_json::to_string_pretty(value).expect("ember's data files serialise");
    std::fs::write(path, json).map_err(|e| DataError::reading(path, e))
}

/// Reads a JSON file written by [`save`] whose `format_of` must equal `format`.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    format: &str,
    format_of: impl Fn(&T) -> &str,
) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::reading(path, e))?;
    let bad = |reason: String| DataError::BadFile {
        path: path.to_owned(),
        reason,
    };
    let value: T = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if format_of(&value) != format {
        return Err(bad(format!(
            "format {:?}, expected {format:?}",
            format_of(&value)
        )));
    }
    Ok(value)
}
