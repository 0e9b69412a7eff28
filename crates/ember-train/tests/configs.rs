//! Every config shipped in `configs/` parses, validates, and names a data file that exists.

use std::path::Path;

use ember_train::ExperimentConfig;

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                config.data.is_generated() || root.join(&config.data.path).exists(),
                "{}: data.path {} does not exist",
                path.display(),
                config.data.path.display()
            );
            assert_eq!(
                path.file_stem().unwrap().to_str().unwrap(),
                config.name,
                "a config's name is its file name"
            );
            names.push(config.name);
        }
    }
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
}
