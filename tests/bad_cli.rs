//! Every binary, driven with bad input: a clear error naming the file, field, key or flag, exit
//! code 1 (clap's usage errors: 2), never a panic (101). Issue 8, "Reliability".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use video_adapters::clip::weights::{read_all, write_safetensors, NamedTensor, TensorMap};

/// Every binary of the package, by name (a test below keeps this list complete).
macro_rules! bins {
    ($($name:literal),* $(,)?) => {
        [$(($name, env!(concat!("CARGO_BIN_EXE_", $name)))),*]
    };
}

const BINS: [(&str, &str); 32] = bins!(
    "table1_k400",
    "mst_table2_ssv2",
    "mst_table3_components",
    "mst_table4_cls_shift",
    "mst_table5_position",
    "mst_table6_layers",
    "st_table1_benchmark",
    "st_table2_k400",
    "st_table3_ssv2",
    "st_table4_ek100",
    "st_table5_ablations",
    "st_table6_training_cost",
    "st_table7_kernel",
    "st_table8_recipe",
    "st_table9_foundation_models",
    "st_table10_swin",
    "st_table11_inference_speed",
    "st_table12_ucf_hmdb",
    "aim_table1_components",
    "aim_table2_k400",
    "aim_table3_ssv2",
    "aim_table4_k700",
    "aim_table5_diving48",
    "aim_table6_backbones",
    "aim_table7_position",
    "aim_table8_ratio",
    "aim_table9_memory",
    "aim_table10_evl",
    "forward",
    "bench",
    "book_assets",
    "proxy",
);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va-bad-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn exe(name: &str) -> &'static str {
    BINS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Runs `bin` with `args` in `cwd` (a fresh temporary folder by default); stderr as text.
fn run_in(bin: &str, args: &[&str], cwd: &Path) -> (Output, String) {
    let out = Command::new(exe(bin)).args(args).current_dir(cwd).env("RUST_BACKTRACE", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (out, err)
}

fn run(bin: &str, args: &[&str]) -> (Output, String) {
    let cwd = tmp("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    run_in(bin, args, &cwd)
}

/// The run failed cleanly: no panic, exit code `code`, and the message contains every `want`.
fn fails(out: &(Output, String), code: i32, want: &[&str]) {
    let (out, err) = out;
    assert!(!err.contains("panicked at"), "{err}");
    assert_eq!(out.status.code(), Some(code), "{err}");
    for w in want {
        assert!(err.contains(w), "missing `{w}` in:\n{err}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn config(name: &str) -> PathBuf {
    root().join(format!("fixtures/configs/{name}.ron"))
}

fn parity(fixture: &str, file: &str) -> PathBuf {
    root().join("fixtures/parity").join(fixture).join(file)
}

/// Writes f32 tensors.
fn write(path: &Path, t: &TensorMap) {
    let v: Vec<NamedTensor> = t
        .iter()
        .map(|(k, (sh, v))| NamedTensor {
            name: k.clone(),
            shape: sh.clone(),
            values: v.iter().map(|x| *x as f32).collect(),
        })
        .collect();
    write_safetensors(path, &v, None).unwrap();
}

/// The parity fixture's input video with `f` applied to (shape, values).
fn video(fixture: &str, name: &str, f: impl Fn(&mut Vec<usize>, &mut Vec<f64>)) -> PathBuf {
    let mut t = read_all(&parity(fixture, "input.safetensors")).unwrap();
    let (shape, values) = t.get_mut("video").unwrap();
    f(shape, values);
    let path = tmp(name);
    write(&path, &t);
    path
}

/// `forward` on a tiny preset with its parity weights and the given input and output.
fn forward(cfg: &str, fixture: &str, input: &Path, output: &Path, extra: &[&str]) -> (Output, String) {
    let (m, w) = (config(cfg), parity(fixture, "weights.safetensors"));
    let mut args = vec!["--model", s(&m), "--weights", s(&w), "--input", s(input), "--output", s(output)];
    args.extend(extra);
    run("forward", &args)
}

/// The list above is every binary: the reproductions plus the three tools.
#[test]
fn the_binary_list_is_complete() {
    let mut names: Vec<&str> = video_adapters::repro::all().into_iter().map(|(n, _)| n).collect();
    names.extend(["forward", "bench", "book_assets", "proxy"]);
    assert_eq!(BINS.map(|(n, _)| n).to_vec(), names);
    // and every file in src/bin is here, or (the `video` tools) driven by tests/end_to_end.rs, or
    // (the `cuda` tool) by tests/gpu.rs
    let video_tools = ["train", "evaluate", "clips", "gpu_check"];
    for e in std::fs::read_dir(root().join("src/bin")).unwrap() {
        let file = e.unwrap().file_name().to_string_lossy().to_string();
        let name = file.trim_end_matches(".rs");
        assert!(
            names.contains(&name) || video_tools.contains(&name),
            "src/bin/{file} is not driven by a bad-input test"
        );
    }
}

/// Every binary's `--help` succeeds and opens with what that binary does: a table binary with its
/// paper, table number and caption (from its fixture), the others with their own line, never the
/// package's description shared by all.
#[test]
fn every_binary_says_what_it_does_in_its_help() {
    let package = env!("CARGO_PKG_DESCRIPTION");
    let tables: Vec<&str> = video_adapters::repro::all().into_iter().map(|(n, _)| n).collect();
    for (name, _) in BINS {
        let (out, err) = run(name, &["--help"]);
        assert!(out.status.success(), "{name} --help: {err}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            !first.is_empty() && !first.starts_with("Usage") && first != package,
            "{name} --help opens with {first:?}"
        );
        if tables.contains(&name) {
            let title = video_adapters::repro::help_title(name).unwrap();
            assert_eq!(first, title, "{name}");
            assert!(title.contains(" Table "), "{name}: {title}");
        }
    }
}

/// `--device`: an unknown device is a usage error naming the value; `cuda` on a build or machine
/// without CUDA is one saying which (here: the build, unless it has feature `cuda` and a GPU).
#[test]
fn forward_names_what_is_wrong_with_the_device() {
    fails(&run("forward", &["--device", "gpu"]), 2, &["--device", "unknown device `gpu`"]);
    if let Err(why) = video_adapters::device::cuda_devices() {
        fails(&run("forward", &["--device", "cuda"]), 2, &["--device", &why]);
    }
}

/// Issue 11: `bench` and the measured cost tables take `--device` as `forward`, `train` and
/// `evaluate` do (one parser, `DeviceArg::parse`): an unknown device is a usage error naming the
/// value; `cuda` in a build without feature `cuda` (or on a machine without a GPU) is one giving the
/// reason ("rebuild with `--features cuda`" here, unless built with it and a GPU is present).
#[test]
fn bench_and_cost_tables_name_what_is_wrong_with_the_device() {
    for bin in [
        "bench",
        "st_table6_training_cost",
        "st_table11_inference_speed",
        "aim_table6_backbones",
        "aim_table9_memory",
        "aim_table10_evl",
    ] {
        fails(&run(bin, &["--device", "gpu"]), 2, &["--device", "unknown device `gpu`"]);
        fails(&run(bin, &["--device", "cuda:x"]), 2, &["--device", "`cpu`, `cuda` or `cuda:N`"]);
        if let Err(why) = video_adapters::device::cuda_devices() {
            fails(&run(bin, &["--device", "cuda"]), 2, &["--device", &why]);
            fails(&run(bin, &["--device", "cuda:1"]), 2, &["--device", &why]);
        }
    }
    #[cfg(not(feature = "cuda"))]
    assert!(video_adapters::device::cuda_devices().unwrap_err().contains("rebuild with `--features cuda`"));
}

/// Every binary, with bad flags and values: clap's usage error (exit 2) naming the flag, or a
/// clear error (exit 1); no `panicked at`, never exit 101.
#[test]
fn every_binary_refuses_bad_flags_without_panicking() {
    for (name, _) in BINS {
        fails(&run(name, &["--no-such-flag"]), 2, &["--no-such-flag"]);
    }
    for (name, _) in video_adapters::repro::all() {
        fails(&run(name, &["--format", "pdf"]), 2, &["--format"]);
        fails(&run(name, &["--reps", "0"]), 2, &["--reps", "0 is not in 1..=100"]);
        fails(&run(name, &["--reps", "many"]), 2, &["--reps"]);
        fails(&run(name, &["--write-book"]), 1, &["--write-book", "has no book/src/SUMMARY.md"]);
    }
    fails(&run("forward", &[]), 2, &["--model", "--input", "--output"]);
    // a flag that would be ignored is refused: --clip-prefix applies to --clip only
    fails(
        &run(
            "forward",
            &["--model", "m", "--weights", "w", "--clip-prefix", "visual.", "--input", "i", "--output", "o"],
        ),
        2,
        &["'--weights <WEIGHTS>' cannot be used with '--clip-prefix <CLIP_PREFIX>'"],
    );
    fails(
        &run("forward", &["--model", "/nonexistent.ron", "--weights", "w", "--input", "i", "--output", "o"]),
        1,
        &["cannot read the file /nonexistent.ron"],
    );
    fails(&run("book_assets", &[]), 1, &["has no book/src/SUMMARY.md"]);
}

/// Issue 8, item 1: `bench --rounds 0`, `--reps 0`, `--threads 0` and a small preset of width 0
/// are refused by clap, naming the flag and the range (clap's value parser, `input::count`); an
/// unknown case is an error naming the cases.
#[test]
fn bench_refuses_zero_rounds_reps_threads_and_unknown_cases() {
    fails(&run("proxy", &["bench", "--seeds", "x"]), 1, &["--seeds", "`x`"]);
    fails(&run("proxy", &["bench", "--method", "nope"]), 1, &["unknown method `nope`"]);
    fails(&run("proxy", &["bench", "--task", "nope"]), 1, &["unknown task `nope`"]);
    fails(&run("proxy", &["bench", "--budget", "0"]), 1, &["--budget"]);
    fails(&run("proxy", &["bench", "--lr", "nan"]), 1, &["--lr"]);
    fails(&run("proxy", &["pretrain", "--steps", "0"]), 2, &["--steps"]);
    fails(&run("bench", &["--rounds", "0"]), 2, &["--rounds", "0 is not in 1..=1000"]);
    fails(&run("bench", &["--reps", "0"]), 2, &["--reps", "0 is not in 1..=1000"]);
    fails(&run("bench", &["--threads", "0"]), 2, &["--threads", "0 is not in 1..=256"]);
    fails(&run("bench", &["--small-width", "0"]), 2, &["--small-width", "0 is not in 1..=4096"]);
    fails(&run("bench", &["--only", "blok"]), 1, &["no case `blok`", "step:small"]);
}

/// Issue 8, item 1: a config whose heads do not divide the width used to panic in `forward`
/// (exit 101); now it is an error naming the file and the field.
#[test]
fn forward_names_an_invalid_config() {
    let bad = tmp("heads.ron");
    std::fs::write(
        &bad,
        std::fs::read_to_string(config("tiny_st_adapter_k400")).unwrap().replace("heads: 4", "heads: 5"),
    )
    .unwrap();
    let (w, i) = (parity("st_adapter_k400", "weights.safetensors"), parity("st_adapter_k400", "input.safetensors"));
    let out = run("forward", &["--model", s(&bad), "--weights", s(&w), "--input", s(&i), "--output", s(&tmp("o"))]);
    fails(&out, 1, &["heads.ron: `clip.heads`: width 64 is not a multiple of heads 5"]);
}

/// Issue 8, item 1: an AIM input whose T differs from the config's frames, an empty batch, and an
/// ST-Adapter input whose T differs from its `frames` (now checked as for AIM) are errors naming
/// the input file, the tensor and the config field.
#[test]
fn forward_checks_the_input_shape_against_the_config() {
    let out = tmp("o.safetensors");
    let eight = video("aim_k400", "t8.safetensors", |sh, v| {
        sh[2] = 8;
        *v = v.iter().chain(v.iter()).copied().collect();
    });
    fails(
        &forward("tiny_aim_k400", "aim_k400", &eight, &out, &[]),
        1,
        &["t8.safetensors: tensor `video`", "T = 8 frames, but the model config has `frames: 4`"],
    );
    fails(&forward("tiny_st_adapter_k400", "st_adapter_k400", &eight, &out, &[]), 1, &["T = 8 frames"]);
    let empty = video("aim_k400", "b0.safetensors", |sh, v| {
        sh[0] = 0;
        v.clear();
    });
    fails(
        &forward("tiny_aim_k400", "aim_k400", &empty, &out, &[]),
        1,
        &["b0.safetensors: tensor `video`", "the batch B is empty"],
    );
}

/// Issue 8, item 5: NaN in the input is an error naming the tensor and the index; an input that
/// makes the logits overflow is an error, not NaN logits with exit 0.
#[test]
fn forward_refuses_non_finite_inputs_and_logits() {
    let out = tmp("o.safetensors");
    let nan = video("clip_baseline", "nan.safetensors", |_, v| v[2 * 32 * 32 + 5] = f64::NAN);
    fails(
        &forward("tiny_clip_baseline", "clip_baseline", &nan, &out, &[]),
        1,
        &["nan.safetensors: tensor `video`: 1 non-finite value(s); the first is NaN at index [0, 0, 2, 0, 5] of shape [2, 3, 4, 32, 32]"],
    );
    let huge = video("clip_baseline", "huge.safetensors", |_, v| {
        for (i, x) in v.iter_mut().enumerate() {
            *x = if i % 2 == 0 { 3e38 } else { -3e38 };
        }
    });
    fails(&forward("tiny_clip_baseline", "clip_baseline", &huge, &out, &[]), 1, &["the logits hold non-finite values"]);
    assert!(!out.exists());
}

/// Issue 8, item 5: `--output` naming a directory is refused before the work, and no
/// `.NAME.tmpPID` is left behind. The directory sits in a folder of its own: the other tests write
/// their files (through temporary names) into the shared temporary folder at the same time.
#[test]
fn forward_refuses_a_directory_as_output_and_leaves_nothing_behind() {
    let dir = tmp("outdir_alone").join("outdir");
    std::fs::create_dir_all(&dir).unwrap();
    let input = parity("clip_baseline", "input.safetensors");
    fails(
        &forward("tiny_clip_baseline", "clip_baseline", &input, &dir, &[]),
        1,
        &["outdir: --output names a directory"],
    );
    let left: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Issue 8, item 5: a `--checkpoint` that holds frozen encoder weights no longer silently
/// replaces the `--clip` weights: it is refused, naming the keys, unless
/// `--checkpoint-replaces-clip` is given (then a warning counts them).
#[test]
fn a_checkpoint_replacing_clip_weights_needs_a_flag() {
    let w = read_all(&parity("st_adapter_k400", "weights.safetensors")).unwrap();
    let trained = |k: &str| k.contains("adapter") || k.starts_with("fc.");
    let clip: TensorMap = w.iter().filter(|(k, _)| !trained(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let ckpt: TensorMap = w
        .iter()
        .filter(|(k, _)| trained(k) || k.as_str() == "ln_post.weight")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (clip_path, ckpt_path, out) = (tmp("clip.safetensors"), tmp("ckpt.safetensors"), tmp("out.safetensors"));
    write(&clip_path, &clip);
    write(&ckpt_path, &ckpt);
    let (m, i) = (config("tiny_st_adapter_k400"), parity("st_adapter_k400", "input.safetensors"));
    let args = [
        "--model",
        s(&m),
        "--clip",
        s(&clip_path),
        "--checkpoint",
        s(&ckpt_path),
        "--input",
        s(&i),
        "--output",
        s(&out),
    ];
    fails(
        &run("forward", &args),
        1,
        &["ckpt.safetensors: --checkpoint holds 1 frozen encoder tensors that would replace the --clip weights (e.g. ln_post.weight)", "--checkpoint-replaces-clip"],
    );
    let (o, err) = run("forward", &[&args[..], &["--checkpoint-replaces-clip"]].concat());
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: 1 of them replace --clip weights"), "{err}");
}

/// Issue 8, item 5: the reproductions no longer need the checkout they were built in (the
/// published tables are embedded): they run from any working directory.
#[test]
fn reproductions_run_outside_the_checkout() {
    let (o, err) = run("table1_k400", &["--counts-only"]);
    assert!(o.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("MST-Adapter Table 1"));
}

/// Issue 8, item 5: no library or binary code reads files of the checkout it was built in at run
/// time (`env!("CARGO_MANIFEST_DIR")`), except where listed here with the reason.
#[test]
fn no_code_reads_the_build_checkout_at_run_time() {
    let allowed = [
        // the book pages tests/reproductions.rs compares against (tests run in the checkout)
        "src/repro/engine.rs",
        // bench --torch runs scripts/bench_pytorch.py, a developer's tool
        "src/bench.rs",
        // the `proxy` study binary's default backbone (fixtures/proxy), a developer's tool; code
        // that table binaries run must embed the weights instead
        "src/proxy/mod.rs",
    ];
    let mut offenders = Vec::new();
    let mut stack = vec![root().join("src"), root().join("reproductions")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root()).unwrap().to_string_lossy().to_string();
                if std::fs::read_to_string(&p).unwrap().contains("env!(\"CARGO_MANIFEST_DIR\")")
                    && !allowed.contains(&rel.as_str())
                {
                    offenders.push(rel);
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}

/// Issue 8, item 5: `--write-book` writes under the working directory when it is a checkout (it
/// has book/src/SUMMARY.md), not into the checkout the binary was built in.
#[test]
fn write_book_writes_under_the_working_directory() {
    let fake = tmp("checkout");
    std::fs::create_dir_all(fake.join("book/src")).unwrap();
    std::fs::write(fake.join("book/src/SUMMARY.md"), "# Summary\n").unwrap();
    let (o, err) = run_in("mst_table2_ssv2", &["--counts-only", "--write-book"], &fake);
    assert!(o.status.success(), "{err}");
    let page = std::fs::read_to_string(fake.join("book/src/generated/mst_table2_ssv2.md")).unwrap();
    assert!(page.contains("MST-Adapter Table 2"), "{page}");
}

/// The two weight flags mixed up: a complete state dict given as `--clip` would silently provide
/// the adapters and the head; a CLIP encoder file given as `--weights` lacks the new parameters.
/// Both are named, with the flag to use.
#[test]
fn weight_files_given_to_the_wrong_flag_are_named() {
    let (m, i, o) =
        (config("tiny_st_adapter_k400"), parity("st_adapter_k400", "input.safetensors"), tmp("o.safetensors"));
    let whole = parity("st_adapter_k400", "weights.safetensors");
    fails(
        &run("forward", &["--model", s(&m), "--clip", s(&whole), "--input", s(&i), "--output", s(&o)]),
        1,
        &["--clip holds 14 tensors that are not CLIP's image encoder (e.g. transformer.resblocks.0.adapter_pre_mlp.fc1.weight", "--weights"],
    );
    let clip = parity("clip_baseline", "weights.safetensors");
    fails(
        &run("forward", &["--model", s(&m), "--weights", s(&clip), "--input", s(&i), "--output", s(&o)]),
        1,
        &[
            "keys 12 missing",
            "hint: the file has the encoder but none of the missing parameters",
            "give it with --clip",
        ],
    );
}
