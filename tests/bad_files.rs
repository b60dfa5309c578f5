//! Weights and tensor files the user gives: broken safetensors files are described in words, key
//! mismatches come with a summary and hints, non-finite values are named by key and index, input
//! shapes are checked against the config, and outputs are written atomically. Issue 8,
//! "Reliability". The files are variations of the tiny parity fixtures.

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use video_adapters::clip::weights::{load_params, read_all, write_safetensors, KeyMap, NamedTensor, TensorMap};
use video_adapters::clip::{vit::FrameBaseline, ClipCfg};
use video_adapters::init::Init;
use video_adapters::io::write_atomic;
use video_adapters::registry::{presets, ModelCfg};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va-bad-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn fixture(name: &str) -> TensorMap {
    read_all(&root().join(format!("fixtures/parity/{name}/weights.safetensors"))).unwrap()
}

fn write(path: &Path, t: &TensorMap) {
    let tensors: Vec<NamedTensor> = t
        .iter()
        .map(|(k, (s, v))| NamedTensor {
            name: k.clone(),
            shape: s.clone(),
            values: v.iter().map(|x| *x as f32).collect(),
        })
        .collect();
    write_safetensors(path, &tensors, None).unwrap();
}

fn cfg(name: &str) -> ModelCfg {
    presets().into_iter().find(|(n, _)| n == name).unwrap().1
}

/// The error of loading `path` into the model of preset `model` with `map`.
fn load_err(model: &str, path: &Path, map: &KeyMap) -> String {
    let mut m = cfg(model).build(&Cpu::default(), &mut Init::zeros()).unwrap();
    m.load(path, map, &|_| false).unwrap_err().to_string()
}

/// Issue 8, item 4: a truncated file and one with trailing bytes no longer both say
/// `MetadataIncompleteBuffer`: each says what is wrong, with the file.
#[test]
fn truncated_and_trailing_bytes_safetensors_are_told_apart() {
    let bytes = std::fs::read(root().join("fixtures/parity/clip_baseline/weights.safetensors")).unwrap();
    let (short, long) = (tmp("short.safetensors"), tmp("long.safetensors"));
    std::fs::write(&short, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::write(&long, [&bytes[..], b"garbage"].concat()).unwrap();
    let e = read_all(&short).unwrap_err().to_string();
    assert!(
        e.contains("short.safetensors")
            && e.contains("shorter than its header says")
            && e.contains("100 bytes missing"),
        "{e}"
    );
    let e = read_all(&long).unwrap_err().to_string();
    assert!(e.contains("long.safetensors") && e.contains("7 extra bytes after the tensor data"), "{e}");
    // and through the model's loader
    let e = load_err("tiny_clip_baseline", &short, &KeyMap::identity());
    assert!(e.contains("shorter than its header says"), "{e}");
    // a header cut off, and a file of text
    std::fs::write(&short, &bytes[..20]).unwrap();
    let e = read_all(&short).unwrap_err().to_string();
    assert!(e.contains("announce a") && e.contains("-byte header but the file has only 12 bytes after them"), "{e}");
    std::fs::write(&short, b"{\"not\": \"safetensors\"}").unwrap();
    let e = read_all(&short).unwrap_err().to_string();
    assert!(e.contains("short.safetensors: not a readable safetensors file"), "{e}");
}

/// Issue 8, item 4: a mismatch of 100+ keys starts with a summary (counts per kind), prints at
/// most 10 lines per kind with "… and K more", and names the likely cause: here a ViT-B/16 config
/// given the tiny model's weights.
#[test]
fn many_mismatched_keys_are_summarised_with_a_model_size_hint() {
    let path = tmp("tiny.safetensors");
    write(&path, &fixture("st_adapter_k400"));
    let e = load_err("st_adapter_vit_b16_12x384", &path, &KeyMap::identity());
    let first = e.lines().next().unwrap();
    assert!(first.contains("tiny.safetensors: keys 180 missing, 45 mis-shaped"), "{first}");
    assert!(e.contains("hint: 45 of the 45 tensors the file and the model share differ in shape"), "{e}");
    assert!(e.contains("(width: the config 768, the file 64; layers: the config 12, the file 2)"), "{e}");
    assert!(e.contains("… and 170 more") && e.contains("… and 35 more"), "{e}");
    assert!(e.lines().count() < 30, "{e}");
}

/// Issue 8, item 4: every key with a `module.` prefix (a DataParallel checkpoint) is named as the
/// cause.
#[test]
fn a_module_prefix_on_every_key_is_named() {
    let path = tmp("module.safetensors");
    write(&path, &fixture("clip_baseline").into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect());
    let e = load_err("tiny_clip_baseline", &path, &KeyMap::identity());
    assert!(e.contains("keys 33 missing, 33 unexpected"), "{e}");
    assert!(
        e.contains("hint: 33 keys of the file are the model's keys with the prefix `module.` in front (a checkpoint saved from a DataParallel"),
        "{e}"
    );
}

/// Issue 8, item 4: a whole CLIP checkpoint (image encoder under `visual.`, text tower at the top)
/// given without `--clip-prefix visual.` is named as such.
#[test]
fn a_whole_clip_checkpoint_without_the_visual_prefix_is_named() {
    let mut t: TensorMap = fixture("clip_baseline")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("fc."))
        .map(|(k, v)| (format!("visual.{k}"), v))
        .collect();
    // the text tower: its own transformer (width 32) and positional embedding collide with ours
    t.insert("token_embedding.weight".into(), (vec![10, 32], vec![0.0; 320]));
    t.insert("positional_embedding".into(), (vec![77, 32], vec![0.0; 77 * 32]));
    t.insert("transformer.resblocks.0.ln_1.weight".into(), (vec![32], vec![1.0; 32]));
    let path = tmp("clip.safetensors");
    write(&path, &t);
    let map = KeyMap { ignore: vec!["proj".into()], ..KeyMap::identity() };
    let mut m = cfg("tiny_clip_baseline").build(&Cpu::default(), &mut Init::zeros()).unwrap();
    let e = m.load(&path, &map, &|k| k.starts_with("fc.")).unwrap_err().to_string();
    assert!(e.contains("with the prefix `visual.` in front (a whole OpenAI CLIP checkpoint: with `forward`, pass --clip FILE --clip-prefix visual.)"), "{e}");
    assert!(e.contains("hint: the file holds CLIP's text tower"), "{e}");
}

/// Issue 8, item 4: an AIM checkpoint whose keys lost their `backbone.` prefix is named as such.
#[test]
fn an_aim_checkpoint_without_backbone_is_named() {
    let t: TensorMap = fixture("aim_k400")
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("backbone.").unwrap_or(&k).to_string(), v))
        .collect();
    let path = tmp("aim.safetensors");
    write(&path, &t);
    let e = load_err("tiny_aim_k400", &path, &KeyMap::identity());
    assert!(e.contains("keys the model expects are file keys with the prefix `backbone.` added (AIM keeps its encoder under `backbone.`"), "{e}");
}

/// Issue 8, item 5: NaN or infinite weights are refused, naming the key and the index of the first
/// bad value; nothing is loaded.
#[test]
fn non_finite_weights_are_named_by_key_and_index() {
    let mut t = fixture("clip_baseline");
    t.get_mut("transformer.resblocks.1.mlp.c_fc.weight").unwrap().1[64 * 3 + 5] = f64::NAN;
    t.get_mut("ln_post.bias").unwrap().1[7] = f64::INFINITY;
    let path = tmp("nan.safetensors");
    write(&path, &t);
    let mut m = FrameBaseline::<64, f32, Cpu>::build(&ClipCfg::tiny(), 5, &Cpu::default(), &mut Init::zeros()).unwrap();
    let before = m.fc.weight.to_vec();
    let e = load_params(&mut m, &path, &KeyMap::identity(), |_| false).unwrap_err().to_string();
    assert!(e.contains("keys 2 with NaN or infinite values"), "{e}");
    assert!(
        e.contains("`transformer.resblocks.1.mlp.c_fc.weight` holds 1 non-finite value(s); the first is NaN at [3, 5]"),
        "{e}"
    );
    assert!(e.contains("`ln_post.bias` holds 1 non-finite value(s); the first is inf at [7]"), "{e}");
    assert_eq!(m.fc.weight.to_vec(), before);
}

/// Issue 8, items 1 and 2: `ModelCfg::check_input` (what the `forward` binary, the trainer and the
/// evaluator call before a forward pass) refuses B = 0, T = 0, a T other than the config's
/// `frames` for AIM and for ST-Adapter (whose layers would run on any T: the config's frames are
/// held to), other frame sizes, other channel counts and ranks, naming the dimension and the field.
#[test]
fn input_shapes_are_checked_against_the_config() {
    let aim = cfg("tiny_aim_k400");
    let st = cfg("tiny_st_adapter_k400");
    assert_eq!(aim.check_input(&[2, 3, 4, 32, 32]), Ok(()));
    assert_eq!(st.check_input(&[1, 3, 4, 32, 32]), Ok(()));
    for (c, shape, want) in [
        (&aim, vec![0, 3, 4, 32, 32], "the batch B is empty"),
        (&st, vec![1, 3, 0, 32, 32], "T = 0 frames, but the model config has `frames: 4`"),
        (&aim, vec![1, 3, 8, 32, 32], "T = 8 frames, but the model config has `frames: 4`"),
        (&st, vec![1, 3, 8, 32, 32], "T = 8 frames, but the model config has `frames: 4`"),
        (&st, vec![1, 3, 4, 32, 48], "frames are 32x48, but the model config has `clip.input_resolution: 32`"),
        (&st, vec![1, 1, 4, 32, 32], "1 channels; expected (B, 3, T, H, W)"),
        (&st, vec![3, 4, 32, 32], "has 4 dimensions; expected 5"),
    ] {
        let e = c.check_input(&shape).unwrap_err().to_string();
        assert!(e.contains(want), "{shape:?}: {e}");
    }
}

/// Issue 8, item 5: writing to an existing directory is refused with a clear message and leaves no
/// `.NAME.tmpPID` behind; a normal write leaves only the file.
#[test]
fn atomic_writes_refuse_directories_and_leave_no_temporary_file() {
    // a parent of its own: the other tests of this file write (atomically) into `tmp("")` meanwhile
    let dir = tmp("atomic").join("out_dir");
    std::fs::create_dir_all(&dir).unwrap();
    let e = write_atomic(&dir, b"x").unwrap_err().to_string();
    assert!(e.contains("out_dir: is a folder: give a file name to write"), "{e}");
    let parent = dir.parent().unwrap();
    let leftovers = || {
        std::fs::read_dir(parent)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .count()
    };
    assert_eq!(leftovers(), 0);
    let file = dir.join("a.bin");
    write_atomic(&file, b"hello").unwrap();
    write_atomic(&file, b"hello again").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"hello again");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // a folder that cannot be made (its parent is a file) is named
    let e = write_atomic(&file.join("x.bin"), b"x").unwrap_err().to_string();
    assert!(e.contains("cannot create the folder of the file") && e.contains("a.bin"), "{e}");
}

/// `read_all` names a non-float tensor and the file.
#[test]
fn integer_tensors_are_named() {
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![2], &data).unwrap();
    let path = tmp("ints.safetensors");
    std::fs::write(&path, safetensors::serialize([("labels", view)], &None).unwrap()).unwrap();
    let e = read_all(&path).unwrap_err().to_string();
    assert!(e.contains("ints.safetensors: tensor `labels`: dtype I64; expected a float type"), "{e}");
}
