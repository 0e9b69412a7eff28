//! The datasets shipped in `assets/` load with the loaders meant for them.

use std::path::{Path, PathBuf};

use ember_data::series::{last_step_windows, read_csv_column, Missing};
use ember_data::split::stratified_split;
use ember_data::{stream_chunks, DataError, Fractions, LabelledData, TextCorpus};

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .join(name)
}

#[test]
fn tiny_shakespeare_streams() {
    let corpus = TextCorpus::read(&asset("tinyshakespeare.txt")).unwrap();
    assert_eq!(corpus.ids.len(), 1_115_394);
    assert_eq!(corpus.vocab.len(), 3 + 65);
    let split = corpus
        .split(Fractions::valid(0.1), "tinyshakespeare")
        .unwrap();
    assert_eq!(split.valid.len(), 111_539);
    let chunks = stream_chunks(&split.train, 32, 100, "tinyshakespeare").unwrap();
    assert_eq!(chunks.len(), (split.train.len() / 32 - 1).div_ceil(100));
}

#[test]
fn names_by_language_stratify() {
    let data = LabelledData::read_dir(&asset("names-by-language")).unwrap();
    assert_eq!(data.classes.len(), 18);
    assert_eq!(data.texts.len(), 20_050);
    let split = stratified_split(
        &data.labels(),
        data.classes.names(),
        Fractions::valid(0.1),
        42,
    )
    .unwrap();
    assert_eq!(split.train.len() + split.valid.len(), data.texts.len());
    assert!(data.majority_share() > 0.45 && data.majority_share() < 0.48);
    data.encode(&data.vocab).unwrap();
}

#[test]
fn sunspots_and_co2_series() {
    let sunspots =
        read_csv_column(&asset("sunspots_yearly.csv"), "SUNACTIVITY", Missing::Error).unwrap();
    assert_eq!(sunspots.len(), 309);
    assert_eq!(
        last_step_windows(&sunspots, 20, "sunspots").unwrap().len(),
        289
    );

    let co2 = asset("co2_maunaloa_weekly.csv");
    match read_csv_column(&co2, "co2", Missing::Error) {
        Err(DataError::MissingValue { line, .. }) => assert_eq!(line, 8),
        other => panic!("expected the first gap at line 8, got {other:?}"),
    }
    let filled = read_csv_column(&co2, "co2", Missing::Interpolate).unwrap();
    assert_eq!(filled.len(), 2284);
    assert!(filled.iter().all(|v| (300.0..400.0).contains(v)));
}
