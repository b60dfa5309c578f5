//! Real videos in, accuracy out, through the binaries a user runs (feature `video`): a list file
//! over the fixture videos, `train` a tiny preset (stopped and resumed: the same checkpoint as a
//! straight run), `evaluate --out`, and a table binary reading the results folder; then a
//! results file that fills a real row of MST-Adapter Table 1; then unreadable videos with and without
//! `--skip-bad`. The accuracies are of random weights on 1–5 videos: what is tested is the plumbing.
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use video_adapters::recipe::Recipe;
use video_adapters::results::EvalRecord;
use video_adapters::train::checkpoint::Checkpoint;
use video_adapters::video::{Pipeline, Sampling, Spatial, TrainPipeline};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/video/files")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va_e2e_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(bin: &str, args: &[&str]) -> Output {
    let exe = match bin {
        "train" => env!("CARGO_BIN_EXE_train"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        "clips" => env!("CARGO_BIN_EXE_clips"),
        "table1_k400" => env!("CARGO_BIN_EXE_table1_k400"),
        _ => unreachable!(),
    };
    Command::new(exe).args(args).output().unwrap()
}

fn ok(bin: &str, args: &[&str]) -> String {
    let o = run(bin, args);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{bin} {args:?} failed:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{bin} {args:?}: a thread panicked:\n{err}");
    out.into_owned()
}

fn fails(bin: &str, args: &[&str]) -> String {
    let o = run(bin, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{bin} {args:?} should fail with code 1:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// ST-Adapter's K400 recipe at the tiny preset's size (4 frames of 32×32), 4 steps of 4 clips.
fn tiny_recipe(dir: &Path) -> String {
    let sampling = Sampling::StDense { frames: 4, rate: 2, views: 1 };
    let r = Recipe {
        name: "tiny_k400".into(),
        batch_size: 4,
        steps: 4,
        warmup_steps: 1,
        train: TrainPipeline::St { sampling, size: 32, jitter: Some((1.0, 1.15)), mirror: true, rand_augment: false },
        test: Pipeline {
            name: "tiny_k400_test".into(),
            sampling: Sampling::StDense { frames: 4, rate: 2, views: 2 },
            spatial: Spatial::St { size: 32, three_crop: false },
        },
        ..Recipe::st_k400_vit_b()
    };
    let path = dir.join("tiny_k400.ron");
    std::fs::write(&path, ron::ser::to_string_pretty(&r, Default::default()).unwrap()).unwrap();
    path.display().to_string()
}

/// Five fixture videos (H.264 with B-frames, portrait, VP9, variable frame rate, 3 frames), one per
/// class of the tiny preset.
fn list(dir: &Path, lines: &str) -> String {
    let path = dir.join("list.txt");
    std::fs::write(&path, lines).unwrap();
    format!("list:{}:{}", path.display(), fixtures().display())
}

const FIVE: &str = "h264_160x90_bframes.mp4 0\nh264_portrait_90x160.mp4 1\nvp9_97x61.webm 2\n\
                    h264_vfr_128x72.mp4 3\nh264_3_frames_64x48.mp4 4\n";

/// `train` stopped after 2 of 4 steps and resumed gives the checkpoint of a straight 4-step run
/// (parameters, AdamW moments, counters: the library's bit-exact resume, here through the binary
/// on decoded videos); `evaluate` reads that checkpoint with its recipe's test views and writes a
/// record with per-class and confusion CSVs; a table binary refuses the folder because a tiny model
/// is no row of the table.
#[test]
fn train_resume_evaluate_and_a_table_refusing_a_tiny_model() {
    let d = scratch("tiny");
    let (recipe, data) = (tiny_recipe(&d), list(&d, FIVE));
    let (straight, halves) = (d.join("straight"), d.join("halves"));
    let common = ["--preset", "tiny_st_adapter_k400", "--init", "random", "--seed", "5", "--recipe", &recipe, "--data"];
    let train = |out: &Path, extra: &[&str]| {
        let mut a: Vec<&str> = common.to_vec();
        a.extend([data.as_str(), "--out", out.to_str().unwrap(), "--batch", "2", "--workers", "2"]);
        a.extend(extra);
        ok("train", &a)
    };
    assert!(train(&straight, &[]).contains("finished at step 4/4"));
    assert!(train(&halves, &["--stop-after", "2"]).contains("stopped (--stop-after) at step 2/4"));
    // a second run into the same folder without --resume is refused
    let mut again: Vec<&str> = common.to_vec();
    again.extend([data.as_str(), "--out", halves.to_str().unwrap()]);
    assert!(fails("train", &again).contains("give --resume"));
    assert!(train(&halves, &["--resume"]).contains("finished at step 4/4"));
    let a = Checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    let b = Checkpoint::load(&halves.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a, b, "a resumed run differs from a straight one");
    assert_eq!(a.header.step, 4);
    let log = std::fs::read_to_string(halves.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 5, "{log}");

    let results = d.join("results");
    let record = results.join("tiny.ron");
    let ck = halves.join("checkpoint.safetensors");
    let out = ok(
        "evaluate",
        &[
            "--preset",
            "tiny_st_adapter_k400",
            "--init",
            "random",
            "--seed",
            "5",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            &data,
            "--out",
            record.to_str().unwrap(),
        ],
    );
    assert!(out.contains("top-1") && out.contains("mean class accuracy") && out.contains("clips/s"), "{out}");
    let text = std::fs::read_to_string(&record).unwrap();
    let r: EvalRecord = ron::from_str(&text).unwrap();
    assert_eq!((r.pipeline.as_str(), r.views.to_string().as_str()), ("tiny_k400_test", "4x2x1"));
    assert_eq!((r.dataset.listed, r.dataset.found, r.dataset.unreadable, r.metrics.videos), (5, 5, 0, 5));
    assert!(r.backbone.is_none() && r.init.as_deref().unwrap().contains("seed 5"));
    assert_eq!(r.recipe.as_ref().map(|r| r.name.as_str()), Some("tiny_k400"));
    assert_eq!(r.checkpoint.as_ref().unwrap().sha256.len(), 64);
    let per_class = std::fs::read_to_string(results.join("tiny.per_class.csv")).unwrap();
    assert_eq!(per_class.lines().count(), 6, "{per_class}");
    assert!(std::fs::read_to_string(results.join("tiny.confusion.csv")).unwrap().starts_with("true\\predicted,0,1"));

    let e = fails("table1_k400", &["--results", results.to_str().unwrap()]);
    assert!(e.contains("no record evaluates a row") && e.contains("tiny.ron"), "{e}");
}

/// A record of the exact model of a table row fills that row's "ours" cells: the CLIP* ViT-B/16
/// row of MST-Adapter Table 1 (the frame-wise CLIP model at 8×3×1, the table's cheapest real row:
/// 24 frames through ViT-B/16 per video), evaluated with the ST-Adapter K400 test pipeline (8×3×1) on
/// one fixture video as data set "k400", with random weights (`--init random`, recorded so).
#[test]
fn an_evaluation_of_a_table_row_fills_its_cell() {
    let d = scratch("row");
    let data = list(&d, "h264_160x90_bframes.mp4 0\n");
    let results = d.join("results");
    let record = results.join("clip_star.ron");
    let out = ok(
        "evaluate",
        &[
            "--preset",
            "benchmark_sa_full",
            "--init",
            "random",
            "--seed",
            "1",
            "--data",
            &data,
            "--dataset-name",
            "k400",
            "--pipeline",
            "st_k400_test",
            "--views",
            "8x3x1",
            "--out",
            record.to_str().unwrap(),
            "--workers",
            "1",
        ],
    );
    assert!(out.contains("8x3x1 views"), "{out}");
    let r: EvalRecord = ron::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let (top1, top5) = (r.metrics.top1, r.metrics.top5);
    let table = ok("table1_k400", &["--results", results.to_str().unwrap()]);
    let row = table.lines().find(|l| l.starts_with("CLIP* ViT-B/16")).expect("the CLIP* row");
    // published 77.3 then ours, published 90.3 then ours
    let cells: Vec<&str> = row.split_whitespace().collect();
    let n = cells.len();
    assert_eq!((cells[n - 4], cells[n - 2]), ("77.3", "90.3"), "{row}");
    assert_eq!(cells[n - 3].parse::<f64>().unwrap(), top1, "{row}");
    assert_eq!(cells[n - 1].parse::<f64>().unwrap(), top5, "{row}");
    assert!(table.contains("clip_star.ron"), "{table}");
}

/// A missing video and a truncated one stop `evaluate` and `train` with the file and the reason;
/// `--skip-bad` skips and counts them (in the record's manifest: 4 listed, 3 found, 2 unreadable).
#[test]
fn missing_and_undecodable_videos_stop_the_run_unless_skip_bad() {
    let d = scratch("bad");
    let recipe = tiny_recipe(&d);
    let data = list(&d, "h264_160x90_bframes.mp4 0\nnot_there.mp4 1\ntruncated.mp4 2\nvp9_97x61.webm 3\n");
    let record = d.join("r.ron");
    let base = ["--preset", "tiny_st_adapter_k400", "--init", "random", "--recipe", &recipe, "--data", &data];
    let eval = |extra: &[&'static str]| [&base[..], extra].concat();
    let e = fails("evaluate", &eval(&[]));
    assert!(e.contains("not_there.mp4: missing: no such file") && e.contains("--skip-bad"), "{e}");
    assert!(e.contains("1 of 4 listed videos are missing"), "{e}");
    let mut a = eval(&["--skip-bad", "--out"]);
    a.push(record.to_str().unwrap());
    let out = ok("evaluate", &a);
    assert!(out.contains("skipped 2 unreadable videos"), "{out}");
    let r: EvalRecord = ron::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!((r.dataset.listed, r.dataset.found, r.dataset.unreadable, r.metrics.videos), (4, 3, 2, 2));

    let bad_only = list(&d, "truncated.mp4 0\nh264_160x90_bframes.mp4 1\n");
    let out = d.join("run");
    let mut a = vec!["--preset", "tiny_st_adapter_k400", "--init", "random", "--recipe", &recipe, "--data", &bad_only];
    a.extend(["--out", out.to_str().unwrap(), "--steps", "1", "--workers", "1"]);
    let e = fails("train", &a);
    assert!(e.contains("truncated.mp4") && e.contains("--skip-bad"), "{e}");
    a.push("--skip-bad");
    assert!(ok("train", &a).contains("skipped"));
}

/// `clips` prints the sampled indices without a file (`--length`), and for a real video the frame
/// count, the views and one contact sheet per view.
#[test]
fn clips_shows_indices_and_writes_contact_sheets() {
    let out = ok("clips", &["--length", "300", "--pipeline", "st_k400_test"]);
    assert!(out.contains("view 1 (clip 1, crop 0): [94, 110, 126"), "{out}");
    let d = scratch("clips");
    let video = fixtures().join("h264_portrait_90x160.mp4");
    let tensor = d.join("t.safetensors");
    let out = ok(
        "clips",
        &[
            video.to_str().unwrap(),
            "--pipeline",
            "st_ssv2_test",
            "--sheets",
            d.to_str().unwrap(),
            "--tile",
            "32",
            "--tensor",
            tensor.to_str().unwrap(),
        ],
    );
    assert!(out.contains("24 frames, 30.000 fps, 90x160"), "{out}");
    for k in 0..3 {
        let png = image::open(d.join(format!("view{k}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (8 * 32, 32));
    }
    let t = video_adapters::clip::weights::read_all(&tensor).unwrap();
    assert_eq!(t["video"].0, [3, 3, 8, 224, 224]);
    // a file that is not a video: the error names it
    let e = fails("clips", &[fixtures().join("audio_only.mp4").to_str().unwrap(), "--pipeline", "st_k400_test"]);
    assert!(e.contains("audio_only.mp4") && e.contains("no video stream"), "{e}");
}

/// The contact sheets and index listings in the book (`book/src/figures/clips/`, made by
/// `scripts/book_clips.sh` from `cases.txt`) are what `clips` writes now, byte for byte.
#[test]
fn the_books_contact_sheets_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("book/src/figures/clips");
    let cases = std::fs::read_to_string(dir.join("cases.txt")).unwrap();
    let tmp = scratch("book");
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        let sheets = tmp.join(name);
        let mut args: Vec<&str> = words.collect();
        args.extend(["--sheets", sheets.to_str().unwrap()]);
        let o = Command::new(env!("CARGO_BIN_EXE_clips")).args(&args).current_dir(&root).output().unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let text: String = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("  wrote "))
            .map(|l| format!("{l}\n"))
            .collect();
        let stale = "is stale: ./scripts/book_clips.sh";
        assert_eq!(std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap(), text, "{name}.txt {stale}");
        for e in std::fs::read_dir(&sheets).unwrap() {
            let png = e.unwrap().path();
            let committed = dir.join(name).join(png.file_name().unwrap());
            assert!(
                std::fs::read(&committed).ok() == Some(std::fs::read(&png).unwrap()),
                "{} {stale}",
                committed.display()
            );
        }
    }
}

/// The three video tools on bad flags and values: clap's usage error (exit 2) naming the flag, or a
/// clear error (exit 1) naming what is wrong; never a panic.
#[test]
fn the_video_tools_refuse_bad_input_without_panicking() {
    let usage = |bin: &str, args: &[&str], want: &str| {
        let o = run(bin, args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{bin} {args:?}: {err}");
        assert!(err.contains(want), "{bin} {args:?}: {err}");
    };
    for bin in ["train", "evaluate", "clips"] {
        usage(bin, &["--no-such-flag"], "--no-such-flag");
    }
    usage("clips", &["--length", "0", "--pipeline", "st_k400_test"], "--length");
    usage("evaluate", &["--preset", "x", "--data", "list:l", "--views", "8x3"], "not FxCxS");
    usage("train", &["--preset", "x", "--data", "list:l", "--recipe", "r"], "--out");

    let d = scratch("badargs");
    let data = list(&d, "h264_160x90_bframes.mp4 0\n");
    let e = fails("evaluate", &["--preset", "nope", "--data", &data, "--pipeline", "st_k400_test"]);
    assert!(e.contains("--preset `nope` is not a preset") && e.contains("tiny_st_adapter_k400"), "{e}");
    let e = fails("evaluate", &["--preset", "tiny_st_adapter_k400", "--data", &data, "--pipeline", "st_k400_test"]);
    assert!(e.contains("give --clip") && e.contains("--init random"), "{e}");
    let tiny = ["--preset", "tiny_st_adapter_k400", "--init", "random", "--data", &data];
    // the pipeline's 224 px, 8-frame views do not fit the tiny model (32 px, 4 frames)
    let e = fails("evaluate", &[&tiny[..], &["--pipeline", "st_k400_test"]].concat());
    assert!(e.contains("pipeline st_k400_test") && e.contains("frames"), "{e}");
    let e = fails("evaluate", &[&tiny[..], &["--pipeline", "st_k400_test", "--views", "8x3x2"]].concat());
    assert!(e.contains("2 spatial crops"), "{e}");
    let e = fails("evaluate", &[&tiny[..], &["--pipeline", "nope.ron"]].concat());
    assert!(e.contains("pipeline `nope.ron` is neither a preset"), "{e}");
    let out = d.join("run");
    let e = fails("train", &[&tiny[..], &["--recipe", "nope", "--out", out.to_str().unwrap()]].concat());
    assert!(e.contains("recipe `nope` is neither a preset"), "{e}");
    let e = fails(
        "train",
        &[&tiny[..], &["--recipe", "st_k400_vit_b", "--out", out.to_str().unwrap(), "--resume"]].concat(),
    );
    assert!(e.contains("--resume") && e.contains("does not exist"), "{e}");
    let e = fails("clips", &["/nonexistent.mp4", "--pipeline", "st_k400_test"]);
    assert!(e.contains("/nonexistent.mp4"), "{e}");
}
