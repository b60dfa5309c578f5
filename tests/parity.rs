//! Official-code parity: every fixture folder runs through our port and must match the official
//! PyTorch code's logits and intermediates to ≤ 1e-4 (a correct fp32 port lands near 1e-6).
//!
//! Folders come from `$PARITY_DIR`, by default `../shared/parity` when it exists, else the copy in
//! `fixtures/parity` (whose files are checked against the sha256 sums in each `meta.json`).
//! `cargo test --release parity -- --nocapture` prints every difference.

use std::path::PathBuf;

use video_adapters::parity::{self, Outcome, TOLERANCE};

fn parity_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PARITY_DIR") {
        return PathBuf::from(d);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/parity");
    if shared.is_dir() { shared } else { root.join("fixtures/parity") }
}

/// Every folder: logits and every intermediate within 1e-4 of the official code.
#[test]
fn parity_every_fixture_matches_the_official_code() {
    let dir = parity_dir();
    let folders = parity::discover(&dir).unwrap();
    assert!(!folders.is_empty(), "no fixture folders in {}", dir.display());
    println!("parity fixtures from {}", dir.display());
    let (mut checked, mut failures, mut skipped) = (0, Vec::new(), Vec::new());
    for f in &folders {
        let id = f.file_name().unwrap().to_string_lossy().to_string();
        match parity::check(f).unwrap_or_else(|e| panic!("{id}: {e:#}")) {
            Outcome::Checked { model, diffs } => {
                checked += 1;
                println!("{id}: {model}");
                for d in &diffs {
                    let ok = d.max_abs <= TOLERANCE;
                    println!("    {:<12} {:<16} max |Δ| = {:.2e} {}", d.name, format!("{:?}", d.shape), d.max_abs, if ok { "ok" } else { "FAIL" });
                    if !ok {
                        failures.push(format!("{id}/{}: {:.3e}", d.name, d.max_abs));
                    }
                }
            }
            Outcome::NotImplemented(why) => {
                println!("{id}: SKIPPED ({why})");
                skipped.push(id);
            }
        }
    }
    println!("{checked} checked, {} skipped", skipped.len());
    assert!(failures.is_empty(), "differences above {TOLERANCE}: {failures:?}");
    assert!(checked > 0, "no fixture was checked");
}

/// The copies in `fixtures/parity` are byte-identical to what the official-code run wrote
/// (sha256 sums recorded in each meta.json).
#[test]
fn parity_fixture_copies_match_their_recorded_checksums() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity");
    for f in parity::discover(&root).unwrap() {
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.join("meta.json")).unwrap()).unwrap();
        for (file, sum) in meta["sha256"].as_object().unwrap() {
            let bytes = std::fs::read(f.join(file)).unwrap();
            assert_eq!(&video_adapters::testing::sha256_hex(&bytes), sum.as_str().unwrap(), "{}/{file}", f.display());
        }
    }
}
