//! A reviewed record of the parity results for the book: every fixture, every tensor, its maximum
//! difference from the official code bucketed coarsely (exact values vary in the last bits
//! with the CPU's vector instructions; the buckets should not). `cargo test --release parity -- --nocapture`
//! prints the exact differences.

use std::path::PathBuf;

use video_adapters::parity::{self, Outcome};

fn bucket(d: f64) -> &'static str {
    // coarse on purpose: the exact values move in the last bits with the CPU's vector instructions
    if d < 2e-5 {
        "< 2e-5"
    } else if d <= 1e-4 {
        "≤ 1e-4"
    } else {
        "FAIL (> 1e-4)"
    }
}

#[test]
fn parity_summary() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity");
    let mut s = String::new();
    for f in parity::discover(&dir).unwrap() {
        let id = f.file_name().unwrap().to_string_lossy().to_string();
        match parity::check(&f).unwrap() {
            Outcome::Checked { model, diffs } => {
                s += &format!("{id} — {model}\n");
                for d in diffs {
                    s +=
                        &format!("    {:<12} {:<14} max |Δ| {}\n", d.name, format!("{:?}", d.shape), bucket(d.max_abs));
                }
            }
            Outcome::NotImplemented(w) => s += &format!("{id} — SKIPPED ({w})\n"),
        }
    }
    insta::assert_snapshot!(s);
}
