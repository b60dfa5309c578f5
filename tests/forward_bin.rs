//! The `forward` binary: a RON model config + safetensors weights + a safetensors video in,
//! logits and intermediates out. Checked on the parity fixtures against the official logits.

use std::path::PathBuf;
use std::process::Command;

use video_adapters::clip::weights::read_all;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// For each tiny preset, the binary's logits equal the official code's to 1e-4, and --taps writes
/// the intermediates.
#[test]
fn forward_binary_reproduces_the_official_logits() {
    for (cfg, fixture) in [("tiny_clip_baseline", "clip_baseline"), ("tiny_st_adapter_k400", "st_adapter_k400"), ("tiny_aim_k400", "aim_k400")] {
        let dir = root().join("fixtures/parity").join(fixture);
        let out = std::env::temp_dir().join(format!("va-forward-{cfg}-{}.safetensors", std::process::id()));
        let status = Command::new(env!("CARGO_BIN_EXE_forward"))
            .args(["--model", root().join(format!("fixtures/configs/{cfg}.ron")).to_str().unwrap()])
            .args(["--weights", dir.join("weights.safetensors").to_str().unwrap()])
            .args(["--input", dir.join("input.safetensors").to_str().unwrap()])
            .args(["--output", out.to_str().unwrap(), "--taps"])
            .status()
            .unwrap();
        assert!(status.success(), "{cfg}");
        let ours = read_all(&out).unwrap();
        let want = read_all(&dir.join("expected.safetensors")).unwrap();
        let d = ours["logits"].1.iter().zip(&want["logits"].1).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d < 1e-4, "{cfg}: max |Δlogits| = {d:e}");
        assert!(ours.contains_key("block1_out") && ours.contains_key("pre_logits"), "{cfg}: taps missing");
    }
}

/// Bad input is named: a missing tensor key lists what the file has.
#[test]
fn forward_binary_names_a_missing_input_tensor() {
    let dir = root().join("fixtures/parity/clip_baseline");
    let out = Command::new(env!("CARGO_BIN_EXE_forward"))
        .args(["--model", root().join("fixtures/configs/tiny_clip_baseline.ron").to_str().unwrap()])
        .args(["--weights", dir.join("weights.safetensors").to_str().unwrap()])
        .args(["--input", dir.join("input.safetensors").to_str().unwrap(), "--key", "frames"])
        .args(["--output", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no tensor `frames`") && err.contains("\"video\""), "{err}");
}
