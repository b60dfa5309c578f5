//! Configs the user writes (model configs, recipes, published tables): every value the models
//! cannot take is an error naming the field, every unknown field is refused, and RON mistakes are
//! reported with the file, line, column, field and what was expected. Issue 8, "Reliability".

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use video_adapters::clip::{Blocks, ClipCfg};
use video_adapters::init::Init;
use video_adapters::input::{parse_ron, Validate};
use video_adapters::recipe::Recipe;
use video_adapters::registry::{presets, to_ron, ModelCfg};
use video_adapters::repro::published::Published;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va-bad-configs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn tiny(name: &str) -> ModelCfg {
    presets().into_iter().find(|(n, _)| n == name).unwrap().1
}

/// The config error of `cfg` written to a file and read back: (message of `from_ron_file`,
/// message of `build`), neither a panic.
fn both_errors(cfg: &ModelCfg, file: &str) -> (String, String) {
    let path = tmp(file);
    std::fs::write(&path, to_ron(cfg)).unwrap();
    let read = ModelCfg::from_ron_file(&path).unwrap_err().to_string();
    let build = match cfg.build(&Cpu::default(), &mut Init::zeros()) {
        Ok(_) => panic!("{file}: build accepted an invalid config"),
        Err(e) => format!("{e:#}"),
    };
    (read, build)
}

fn with_clip(name: &str, f: impl Fn(&mut ClipCfg)) -> ModelCfg {
    let mut cfg = tiny(name);
    match &mut cfg {
        ModelCfg::ClipBaseline(c) => f(&mut c.clip),
        ModelCfg::StAdapter(c) => f(&mut c.clip),
        ModelCfg::Aim(c) => f(&mut c.clip),
        ModelCfg::MstAdapter(c) => f(&mut c.clip),
        ModelCfg::Benchmark(c) => f(&mut c.clip),
    }
    cfg
}

/// Issue 8, item 1: encoder shapes that used to panic in `build` (heads not dividing the width,
/// heads 0, patch 0, a resolution not divisible by the patch, layers 0) are errors that name the
/// file and the field, when read and when built, for every kind of model.
#[test]
fn encoder_shapes_the_model_cannot_take_are_errors_naming_the_field() {
    type Change = fn(&mut ClipCfg);
    let cases: [(&str, Change, &str); 5] = [
        ("heads_7", |c| c.heads = 7, "`clip.heads`: width 64 is not a multiple of heads 7"),
        ("heads_0", |c| c.heads = 0, "`clip.heads`: must be at least 1, is 0"),
        ("patch_0", |c| c.patch_size = 0, "`clip.patch_size`: must be at least 1, is 0"),
        ("res_30", |c| c.input_resolution = 30, "`clip.input_resolution`: 30 is not a multiple of patch_size 8"),
        ("layers_0", |c| c.layers = 0, "`clip.layers`: must be at least 1, is 0"),
    ];
    for model in ["tiny_clip_baseline", "tiny_st_adapter_k400", "tiny_aim_k400", "tiny_mst_adapter"] {
        for (what, change, want) in &cases {
            let file = format!("{model}_{what}.ron");
            let (read, build) = both_errors(&with_clip(model, change), &file);
            assert!(read.contains(&file) && read.contains(want), "{read}");
            assert!(build.contains(want), "{build}");
        }
    }
}

/// Issue 8, item 1: `num_classes: 0` and `frames: 0` are errors naming the field.
#[test]
fn zero_classes_or_frames_are_errors_naming_the_field() {
    let mut cfg = tiny("tiny_st_adapter_k400");
    let ModelCfg::StAdapter(c) = &mut cfg else { unreachable!() };
    c.num_classes = 0;
    let (read, _) = both_errors(&cfg, "classes.ron");
    assert!(read.contains("`num_classes`: must be at least 1, is 0"), "{read}");
    let mut cfg = tiny("tiny_aim_k400");
    let ModelCfg::Aim(c) = &mut cfg else { unreachable!() };
    c.frames = 0;
    let (read, _) = both_errors(&cfg, "frames.ron");
    assert!(read.contains("`frames`: must be at least 1, is 0"), "{read}");
}

/// Issue 8, item 2: blocks that do not exist (`List([7, 99])`, `Last(5)` on a 2-layer model) are
/// errors naming `blocks`, not a model without adapters; a block listed twice too.
#[test]
fn blocks_outside_the_encoder_are_errors_naming_blocks() {
    for (model, blocks, want) in [
        ("tiny_st_adapter_k400", Blocks::List(vec![7, 99]), "List names block 7, but the encoder has blocks 0 to 1"),
        ("tiny_aim_k400", Blocks::Last(5), "Last(5) asks for the last 5 blocks, but the encoder has 2"),
        ("tiny_mst_adapter", Blocks::List(vec![1, 1]), "List names block 1 twice"),
    ] {
        let mut cfg = tiny(model);
        match &mut cfg {
            ModelCfg::StAdapter(c) => c.blocks = blocks,
            ModelCfg::Aim(c) => c.blocks = blocks,
            ModelCfg::MstAdapter(c) => c.blocks = blocks,
            _ => unreachable!(),
        }
        let (read, build) = both_errors(&cfg, &format!("{model}_blocks.ron"));
        assert!(read.contains(&format!("`blocks`: {want}")), "{read}");
        assert!(build.contains(want), "{build}");
    }
}

/// The other values of the paper configs that no model can take: an even or empty kernel, a zero
/// adapter width, AIM's `num_tadapter: 3`, a dropout of 1, MST-Adapter's CLS shift by more
/// channels than the width, a prompt of 0 tokens, a tuning the architecture does not have.
#[test]
fn paper_config_values_out_of_range_are_errors_naming_the_field() {
    use video_adapters::baselines::{Arch, Tuning};
    use video_adapters::mst_adapter::ClsShift;
    use video_adapters::ops::Kernel3;
    let st = |f: fn(&mut video_adapters::st_adapter::StAdapterCfg)| {
        let mut c = tiny("tiny_st_adapter_k400");
        let ModelCfg::StAdapter(s) = &mut c else { unreachable!() };
        f(s);
        c
    };
    let aim = |f: fn(&mut video_adapters::aim::AimCfg)| {
        let mut c = tiny("tiny_aim_k400");
        let ModelCfg::Aim(s) = &mut c else { unreachable!() };
        f(s);
        c
    };
    let mst = |f: fn(&mut video_adapters::mst_adapter::MstAdapterCfg)| {
        let mut c = tiny("tiny_mst_adapter");
        let ModelCfg::MstAdapter(s) = &mut c else { unreachable!() };
        f(s);
        c
    };
    let bench = |arch, tuning| {
        ModelCfg::Benchmark(video_adapters::baselines::BenchmarkCfg {
            clip: ClipCfg::tiny(),
            arch,
            tuning,
            num_classes: 5,
            frames: 4,
        })
    };
    let cases = [
        (st(|c| c.kernel = Kernel3::new(2, 1, 1)), "`kernel`: kernel 2x1x1: every size must be odd"),
        (st(|c| c.kernel = Kernel3::new(3, 0, 1)), "`kernel`: kernel 3x0x1"),
        (st(|c| c.adapter_width = 0), "`adapter_width`: must be at least 1"),
        (st(|c| c.positions = vec![c.positions[0], c.positions[0]]), "`positions`: PreMlp is listed twice"),
        (aim(|c| c.num_tadapter = 3), "`num_tadapter`: must be 1, or 2"),
        (aim(|c| c.dropout = 1.0), "`dropout`: must be a number in [0, 1), is 1"),
        (aim(|c| c.mlp_ratio = 0.001), "`mlp_ratio`: 0.001 gives an adapter hidden width of int(64 × 0.001) = 0"),
        (aim(|c| c.drop_path_rate = f64::NAN), "`drop_path_rate`: must be a number in [0, 1), is NaN"),
        (mst(|c| c.cls_shift = Some(ClsShift { next_div: 1, prev_div: 1 })), "`cls_shift`: shifts 64 + 64 channels"),
        (
            mst(|c| c.cls_shift = Some(ClsShift { next_div: 0, prev_div: 8 })),
            "`cls_shift.next_div`: must be at least 1",
        ),
        (mst(|c| c.branches.clear()), "`branches`: must be at least 1, is 0"),
        (mst(|c| c.branches[1] = Kernel3::new(4, 1, 1)), "`branches[1]`: kernel 4x1x1"),
        (bench(Arch::Sa, Tuning::Prompt { tokens: 0 }), "`tuning.Prompt.tokens`: must be at least 1"),
        (bench(Arch::SaTs, Tuning::Temporal), "`tuning`: Temporal does not apply to SaTs"),
    ];
    for (i, (cfg, want)) in cases.iter().enumerate() {
        let (read, build) = both_errors(cfg, &format!("case{i}.ron"));
        assert!(read.contains(want), "{read}");
        assert!(build.contains(want), "{build}");
    }
}

/// A config too large to build (a 200-layer ViT-L) is refused before any memory is taken.
#[test]
fn a_config_too_large_to_build_is_refused_before_allocating() {
    let mut cfg = tiny("tiny_st_adapter_k400");
    let ModelCfg::StAdapter(c) = &mut cfg else { unreachable!() };
    c.clip = ClipCfg { layers: 256, ..ClipCfg::vit_l14() };
    c.blocks = Blocks::Last(1);
    let (read, _) = both_errors(&cfg, "huge.ron");
    assert!(read.contains("`clip`: the encoder alone has about 3.2e9 weights"), "{read}");
}

/// Inserts `typo_field: 0, ` after every `(` that opens a struct in pretty RON (followed by a
/// newline and `name:`), one at a time: each variant of the text.
fn with_unknown_field(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("(\n") {
        let next = text[i + 2..].trim_start();
        let is_struct =
            next.split_once(':').is_some_and(|(name, _)| name.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if is_struct {
            out.push(format!("{}typo_field: 0, {}", &text[..=i], &text[i + 1..]));
        }
    }
    out
}

/// Issue 8, item 2: an unknown field is refused in every struct of every model config (the
/// encoder, the kernel, the CLS shift, the fusion, the tuning …): the message names it.
#[test]
fn unknown_fields_are_refused_in_every_struct_of_every_model_config() {
    let mut checked = 0;
    for (name, cfg) in presets() {
        // struct variants (Fusion::Learned, Tuning::Prompt) print on one line: open them
        let text = to_ron(&cfg)
            .replace("Learned(init:", "Learned(\ninit:")
            .replace("(tokens:", "(\ntokens:")
            .replace("(width:", "(\nwidth:");
        for bad in with_unknown_field(&text) {
            let e = parse_ron::<ModelCfg>(&bad, Path::new(&format!("{name}.ron"))).unwrap_err().to_string();
            assert!(e.contains("unknown field named `typo_field`"), "{name}: {e}\n{bad}");
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
}

/// The example: `mlp_activation: Gelu` for `mlp_act` is refused, naming the field, the
/// known fields, the file, line and column.
#[test]
fn a_misspelt_field_is_refused_with_the_known_fields() {
    let path = tmp("misspelt.ron");
    let text = to_ron(&tiny("tiny_st_adapter_k400")).replace("mlp_act: QuickGelu", "mlp_activation: Gelu");
    std::fs::write(&path, &text).unwrap();
    let e = ModelCfg::from_ron_file(&path).unwrap_err().to_string();
    assert!(e.contains("misspelt.ron:10:23: field `StAdapter.clip.mlp_activation`: unknown field"), "{e}");
    assert!(e.contains("`mlp_act`") && e.contains("10 |         mlp_activation: Gelu,"), "{e}");
}

/// Issue 8, item 4: `frames: 4.0` no longer reports a bare `Expected comma`: the message names the
/// file, line:column, the field and what was expected, and shows the line.
#[test]
fn a_decimal_where_an_integer_belongs_names_the_field_and_the_expected_type() {
    let path = tmp("frames.ron");
    std::fs::write(&path, to_ron(&tiny("tiny_st_adapter_k400")).replace("frames: 4,", "frames: 4.0,")).unwrap();
    let e = ModelCfg::from_ron_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("frames.ron:13:14: field `StAdapter.frames`: expected an integer (a whole number), found `4.0`"),
        "{e}"
    );
    assert!(e.contains("13 |     frames: 4.0,"), "{e}");
}

/// Other RON mistakes in words: a wrong variant, a negative count, a missing field, a missing
/// bracket, text after the end.
#[test]
fn other_ron_mistakes_are_reported_in_words() {
    let good = to_ron(&tiny("tiny_aim_k400"));
    for (bad, want) in [
        (good.replace("Last(2)", "Lats(2)"), "field `Aim.blocks`: unknown variant named `Lats` in enum `Blocks`"),
        (
            good.replace("num_classes: 5", "num_classes: -5"),
            "field `Aim.num_classes`: expected a non-negative integer, found `-5`",
        ),
        (good.replace("    joint: true,\n", ""), "missing field `joint`"),
        (good.replace("spatial: true", "spatial: yes"), "field `Aim.spatial`: expected `true` or `false`, found `yes`"),
        (good.trim_end().trim_end_matches(')').to_string(), "the file ends before the value is complete"),
        (good.clone() + "Aim", "unexpected text after the end of the value: `Aim`"),
    ] {
        let e = parse_ron::<ModelCfg>(&bad, Path::new("x.ron")).unwrap_err().to_string();
        assert!(e.starts_with("x.ron:") && e.contains(want), "{e}");
    }
}

/// A missing or unreadable config file, and a directory, are named.
#[test]
fn a_missing_config_file_is_named() {
    let e = ModelCfg::from_ron_file(Path::new("/nonexistent/model.ron")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read the file /nonexistent/model.ron: "), "{e}");
    let e = ModelCfg::from_ron_file(&std::env::temp_dir()).unwrap_err().to_string();
    assert!(e.ends_with("is a directory, not a file"), "{e}");
}

/// Recipes: every preset is valid; unknown fields are refused in every struct (optimizer, the
/// pipelines, their sampling …); values out of range name the file and the field.
#[test]
fn recipes_refuse_unknown_fields_and_bad_values() {
    let pretty = || ron::ser::PrettyConfig::new().struct_names(false);
    let mut checked = 0;
    for r in Recipe::presets() {
        Validate::validate(&r).unwrap();
        let text = ron::ser::to_string_pretty(&r, pretty()).unwrap();
        for bad in with_unknown_field(&text) {
            let e = parse_ron::<Recipe>(&bad, Path::new("r.ron")).unwrap_err().to_string();
            assert!(e.contains("unknown field named `typo_field`"), "{e}\n{bad}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
    let path = tmp("recipe.ron");
    let good = ron::ser::to_string_pretty(&Recipe::st_k400_vit_b(), pretty()).unwrap();
    for (change, want) in [
        (("batch_size: 128", "batch_size: 0"), "`batch_size`: must be at least 1"),
        (("lr: 0.0005", "lr: -1.0"), "`optimizer.lr`: must be a number in [0, 1000], is -1"),
        (("label_smoothing: 0.0", "label_smoothing: 1.0"), "`label_smoothing`: must be a number in [0, 1), is 1"),
        (("warmup_steps: 3333", "warmup_steps: 30000"), "`warmup_steps`: 30000 exceeds steps 20000"),
    ] {
        assert!(good.contains(change.0), "{good}");
        std::fs::write(&path, good.replace(change.0, change.1)).unwrap();
        let e = Recipe::from_ron_file(&path).unwrap_err().to_string();
        assert!(e.contains("recipe.ron") && e.contains(want), "{e}");
        let e = format!("{:#}", Recipe::named_or_file(path.to_str().unwrap()).unwrap_err());
        assert!(e.contains(want), "{e}");
    }
}

/// Published tables: an unknown field in the table, a column, a row or a note is refused, and so
/// is a note pointing at a column the table does not have.
#[test]
fn published_tables_refuse_unknown_fields() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/published/st_adapter/table2_k400.ron");
    let text = std::fs::read_to_string(&path).unwrap();
    let t = Published::parse(&text, &path).unwrap();
    let pretty = ron::ser::PrettyConfig::new().struct_names(false).depth_limit(3);
    let round = ron::ser::to_string_pretty(&t, pretty).unwrap();
    let variants = with_unknown_field(&round);
    assert!(variants.len() >= 4, "{}", variants.len());
    for bad in variants {
        let e = Published::parse(&bad, &path).unwrap_err().to_string();
        assert!(e.contains("table2_k400.ron:") && e.contains("unknown field named `typo_field`"), "{e}");
    }
    let mut bad = t.clone();
    bad.notes[0].columns.push("top9".into());
    let e = Published::parse(&ron::ser::to_string(&bad).unwrap(), &path).unwrap_err().to_string();
    assert!(e.contains("`notes[0].columns`") && e.contains("unknown column `top9`"), "{e}");
}
