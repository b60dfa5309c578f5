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
    for (cfg, fixture) in [
        ("tiny_clip_baseline", "clip_baseline"),
        ("tiny_st_adapter_k400", "st_adapter_k400"),
        ("tiny_aim_k400", "aim_k400"),
    ] {
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
    assert!(err.contains("tensor `frames`: no such tensor (--key)") && err.contains("\"video\""), "{err}");
}

/// The released-checkpoint path of ST-Adapter: CLIP weights (whole-checkpoint layout, `visual.`
/// prefix, with the `proj` the kit ignores) plus a trainable-only checkpoint (adapters and `fc`, as
/// `utils.save_model` stores them), made from the parity fixture: logits equal the official ones.
#[test]
fn forward_binary_loads_clip_plus_a_trainable_only_checkpoint() {
    use video_adapters::clip::weights::{write_safetensors, NamedTensor};
    let dir = root().join("fixtures/parity/st_adapter_k400");
    let w = read_all(&dir.join("weights.safetensors")).unwrap();
    let tensor = |name: String, (shape, v): &(Vec<usize>, Vec<f64>)| NamedTensor {
        name,
        shape: shape.clone(),
        values: v.iter().map(|x| *x as f32).collect(),
    };
    let trained = |k: &str| k.contains("adapter") || k.starts_with("fc.");
    let mut clip: Vec<NamedTensor> =
        w.iter().filter(|(k, _)| !trained(k)).map(|(k, v)| tensor(format!("visual.{k}"), v)).collect();
    clip.push(NamedTensor { name: "visual.proj".into(), shape: vec![64, 32], values: vec![0.0; 64 * 32] });
    let ckpt: Vec<NamedTensor> = w.iter().filter(|(k, _)| trained(k)).map(|(k, v)| tensor(k.clone(), v)).collect();
    let tmp = std::env::temp_dir().join(format!("va-release-{}", std::process::id()));
    let (clip_path, ckpt_path, out) =
        (tmp.join("clip.safetensors"), tmp.join("st.safetensors"), tmp.join("out.safetensors"));
    write_safetensors(&clip_path, &clip, None).unwrap();
    write_safetensors(&ckpt_path, &ckpt, None).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_forward"))
        .args(["--model", root().join("fixtures/configs/tiny_st_adapter_k400.ron").to_str().unwrap()])
        .args(["--clip", clip_path.to_str().unwrap(), "--clip-prefix", "visual."])
        .args(["--checkpoint", ckpt_path.to_str().unwrap()])
        .args(["--input", dir.join("input.safetensors").to_str().unwrap(), "--output", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let ours = read_all(&out).unwrap();
    let want = read_all(&dir.join("expected.safetensors")).unwrap();
    let d = ours["logits"].1.iter().zip(&want["logits"].1).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d < 1e-4, "max |Δlogits| = {d:e}");
}
