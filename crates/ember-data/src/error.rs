//! Errors from reading and encoding data, each naming the file or character at fault.

use std::path::PathBuf;
use thiserror::Error;

/// Why a dataset or vocabulary could not be used.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{path} not found (relative paths start from the directory ember runs in)")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid UTF-8 text.
    #[error(
        "{path} is not UTF-8 text (invalid byte at offset {offset}): convert it to UTF-8 first"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The file holds no usable samples.
    #[error("{path} holds no non-blank lines: give a file with one sample per line")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Too few samples to split into training and validation sets.
    #[error(
        "{what} has {count} sample(s); at least {needed} are needed for a train/validation split"
    )]
    TooFewSamples {
        /// What was being split.
        what: String,
        /// How many samples there are.
        count: usize,
        /// How many are needed.
        needed: usize,
    },
    /// Text contains characters the vocabulary does not know.
    #[error("unknown character(s) {}: the model's vocabulary does not contain them", list_chars(.chars))]
    UnknownChars {
        /// The unknown characters, each once, in order of appearance.
        chars: Vec<char>,
    },
    /// Samples of a file contain characters the vocabulary does not know.
    #[error("{path}: {samples} of {total} sample(s) hold unknown character(s) {}: the model's vocabulary does not contain them; remove them from the file or train a model on data that has them", list_chars(.chars))]
    UnknownCharsInFile {
        /// The file.
        path: PathBuf,
        /// The unknown characters, each once, in order of appearance.
        chars: Vec<char>,
        /// How many samples hold one.
        samples: usize,
        /// How many samples the file has.
        total: usize,
    },
    /// A vocabulary file is malformed.
    #[error("{path} is not a vocabulary ember reads (a JSON list of tokens in id order, a token → id map, or ember's vocab.json): {reason}")]
    BadVocab {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A data file ember wrote (a split, a class list) is malformed.
    #[error("{path} is not a file ember can read back: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A class has too few samples for a stratified split.
    #[error("class {class:?} has {count} sample(s); a stratified split needs at least {needed} per class: add samples or remove the class")]
    ClassTooSmall {
        /// The class name.
        class: String,
        /// Its number of samples.
        count: usize,
        /// How many are needed.
        needed: usize,
    },
    /// A labelled-data directory holds no class files.
    #[error("{path} holds no class files (*.txt, one per class, one sample per line)")]
    NoClasses {
        /// The directory.
        path: PathBuf,
    },
    /// A window does not fit in the series.
    #[error("{what} has {len} values, too few for a window of {window} plus a target: lower the window (data.window) or use a longer series")]
    WindowTooLong {
        /// The series.
        what: String,
        /// Its length.
        len: usize,
        /// The window asked for.
        window: usize,
    },
    /// A text is too short to cut into the asked number of parallel streams.
    #[error("{what} has {len} tokens, too few for {streams} parallel streams of at least 2 tokens: lower train.batch_size or use more text")]
    TooShortForStreams {
        /// The text.
        what: String,
        /// Its length in tokens.
        len: usize,
        /// The number of streams asked for.
        streams: usize,
    },
    /// A CSV file has no column of that name.
    #[error("{path} has no column {column:?}; its columns are {available}")]
    NoSuchColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header, comma-separated.
        available: String,
    },
    /// A CSV cell is not a number.
    #[error("{path}, line {line}, column {column:?}: {value:?} is not a number")]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// The 1-based line in the file.
        line: usize,
        /// The column.
        column: String,
        /// The cell.
        value: String,
    },
    /// A CSV cell is empty or NA and missing values are not allowed.
    #[error("{path}, line {line}, column {column:?}: the value is missing; set data.missing = \"interpolate\" to fill gaps linearly, or fix the file")]
    MissingValue {
        /// The file.
        path: PathBuf,
        /// The 1-based line in the file.
        line: usize,
        /// The column.
        column: String,
    },
    /// A CSV file could not be parsed.
    #[error("{path}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A size option is zero or otherwise impossible.
    #[error("{0}")]
    BadOption(String),
}

impl DataError {
    /// The error for failing to read `path`: [`DataError::NotFound`] when it does not exist.
    pub(crate) fn reading(path: &std::path::Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Self::NotFound {
                path: path.to_owned(),
            },
            _ => Self::Io {
                path: path.to_owned(),
                source,
            },
        }
    }
}

fn list_chars(chars: &[char]) -> String {
    chars
        .iter()
        .map(|c| format!("{:?}", c))
        .collect::<Vec<_>>()
        .join(", ")
}
