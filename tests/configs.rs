//! The model configs in `fixtures/configs/*.ron` are the presets in the code, and all parse.

use std::path::PathBuf;

use video_adapters::registry::{presets, to_ron, ModelCfg};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/configs")
}

/// Every preset has its RON file with the same content, and every RON file is a preset.
#[test]
fn config_files_equal_the_presets() {
    let presets = presets();
    for (name, cfg) in &presets {
        let path = dir().join(format!("{name}.ron"));
        let read = ModelCfg::from_ron_file(&path)
            .unwrap_or_else(|e| panic!("{e:#} (regenerate: cargo test --test configs -- --ignored write)"));
        assert_eq!(&read, cfg, "{} differs from the preset", path.display());
    }
    for entry in std::fs::read_dir(dir()).unwrap() {
        let stem = entry.unwrap().path().file_stem().unwrap().to_string_lossy().to_string();
        assert!(presets.iter().any(|(n, _)| *n == stem), "fixtures/configs/{stem}.ron is not a preset");
    }
}

/// Rewrites the files from the presets: `cargo test --test configs -- --ignored write`.
#[test]
#[ignore]
fn write_config_files() {
    std::fs::create_dir_all(dir()).unwrap();
    for (name, cfg) in presets() {
        std::fs::write(dir().join(format!("{name}.ron")), to_ron(&cfg)).unwrap();
    }
}
