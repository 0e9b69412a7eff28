//! Reading a text file of one sample per line.

use std::path::Path;

use crate::DataError;

/// Reads `path` as UTF-8 text and returns its non-blank lines, trimmed of surrounding whitespace.
///
/// A missing file, a file that is not UTF-8, and a file without a single non-blank line are
/// errors that name the file.
pub fn read_lines(path: &Path) -> Result<Vec<String>, DataError> {
    let text = read_utf8(path)?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if lines.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(lines)
}

/// Reads `path` as UTF-8 text: a missing file or invalid UTF-8 (with its byte offset) is an
/// error naming the file.
pub fn read_utf8(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::reading(path, e))?;
    String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_trimmed_non_blank_lines() {
        let f = file_with("anna\r\n\n  émile \nЖанна\n".as_bytes());
        assert_eq!(read_lines(f.path()).unwrap(), ["anna", "émile", "Жанна"]);
    }

    #[test]
    fn missing_file_is_named() {
        let err = read_lines(Path::new("/no/such/names.txt")).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }));
        assert!(err.to_string().contains("/no/such/names.txt"));
    }

    #[test]
    fn empty_and_blank_files_are_errors() {
        for content in [&b""[..], b"\n  \n\t\n"] {
            let f = file_with(content);
            assert!(matches!(read_lines(f.path()), Err(DataError::Empty { .. })));
        }
    }

    #[test]
    fn non_utf8_reports_offset() {
        let f = file_with(b"ok\n\xff\xfe");
        match read_lines(f.path()) {
            Err(DataError::NotUtf8 { offset, .. }) => assert_eq!(offset, 3),
            other => panic!("expected NotUtf8, got {other:?}"),
        }
    }
}
