//! The data-set readers on bad input: every problem is an error naming the file and the line or
//! entry, and missing videos are counted, not fatal. (The official readers would raise a bare
//! `ValueError` or `KeyError`, or stop later on the first missing video.)

use std::path::{Path, PathBuf};

use video_adapters::video::dataset::Dataset;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va_datasets_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn err(r: anyhow::Result<Dataset>) -> String {
    format!("{:#}", r.expect_err("must fail"))
}

/// `path label` lines relative to the root, blank lines skipped; listed/found counted; the list
/// hash does not depend on the order of the lines.
#[test]
fn a_list_file_gives_items_relative_to_its_root_and_counts_missing_videos() {
    let d = scratch("list");
    std::fs::write(d.join("a.mp4"), b"x").unwrap();
    std::fs::create_dir_all(d.join("sub dir")).unwrap();
    std::fs::write(d.join("sub dir/b.mp4"), b"x").unwrap();
    std::fs::write(d.join("l.txt"), "a.mp4 3\n\nsub dir/b.mp4\t0\ngone.mp4 1\n").unwrap();
    let data = Dataset::open(&format!("list:{}", d.join("l.txt").display())).unwrap();
    let labels: Vec<usize> = data.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, [3, 0, 1]);
    assert_eq!(data.items[1].path, d.join("sub dir/b.mp4"));
    assert_eq!(data.num_classes, 4);
    let m = data.manifest();
    assert_eq!((m.listed, m.found, m.dataset.as_str()), (3, 2, "l"));
    assert!(data.missing_report().contains("gone.mp4") && data.missing_report().contains("line 4"));
    std::fs::write(d.join("shuffled.txt"), "gone.mp4 1\na.mp4 3\nsub dir/b.mp4 0\n").unwrap();
    let other = Dataset::from_list(&d.join("shuffled.txt"), &d).unwrap();
    assert_eq!(other.list_sha256(), data.list_sha256());
}

#[test]
fn list_file_errors_name_the_file_and_line() {
    let d = scratch("listbad");
    assert!(err(Dataset::open(&format!("list:{}", d.join("nope.txt").display()))).contains("nope.txt"));
    std::fs::write(d.join("nolabel.txt"), "a.mp4 1\nb.mp4\n").unwrap();
    let e = err(Dataset::open(&format!("list:{}", d.join("nolabel.txt").display())));
    assert!(e.contains("nolabel.txt:2:1") && e.contains("no label"), "{e}");
    std::fs::write(d.join("word.txt"), "a.mp4 1\nb.mp4 cat\n").unwrap();
    let e = err(Dataset::open(&format!("list:{}", d.join("word.txt").display())));
    assert!(e.contains("word.txt:2:1") && e.contains("`cat` is not a class index"), "{e}");
    std::fs::write(d.join("empty.txt"), "\n\n").unwrap();
    assert!(err(Dataset::open(&format!("list:{}", d.join("empty.txt").display()))).contains("lists no videos"));
    // a label the model does not have names the line
    std::fs::write(d.join("big.txt"), "a.mp4 1\nb.mp4 7\n").unwrap();
    let data = Dataset::open(&format!("list:{}", d.join("big.txt").display())).unwrap();
    let e = format!("{:#}", data.check_labels(5).unwrap_err());
    assert!(e.contains("line 2") && e.contains("label 7") && e.contains("5 classes"), "{e}");
}

#[test]
fn bad_specs_say_what_is_expected() {
    for spec in ["k400.txt", "csv:a:b", "list:a:b:c"] {
        let e = err(Dataset::open(spec));
        assert!(e.contains(&format!("--data `{spec}`")) && e.contains("expected one of list:FILE[:ROOT]"), "{e}");
    }
}

/// The Kinetics CSV: sorted class names give the labels; a clip is
/// `<youtube_id>_<start:06>_<end:06>.mp4` in the root or in its class folder.
#[test]
fn a_kinetics_csv_finds_clips_flat_or_in_class_folders() {
    let d = scratch("k400");
    std::fs::write(d.join("abc_000059_000069.mp4"), b"x").unwrap();
    std::fs::create_dir_all(d.join("riding_a_bike")).unwrap();
    std::fs::write(d.join("riding_a_bike/xyz_000001_000011.mp4"), b"x").unwrap();
    let csv = "label,youtube_id,time_start,time_end,split,is_cc\n\
               \"zumba\",abc,59,69,val,0\n\
               riding a bike,xyz,1,11,val,0\n\
               abseiling,gone,3.0,13.0,val,0\n";
    std::fs::write(d.join("validate.csv"), csv).unwrap();
    let data = Dataset::open(&format!("kinetics:{}:{}", d.join("validate.csv").display(), d.display())).unwrap();
    assert_eq!(data.classes.as_deref().unwrap(), ["abseiling", "riding a bike", "zumba"]);
    let got: Vec<(&str, usize)> = data.items.iter().map(|i| (i.name.as_str(), i.label)).collect();
    assert_eq!(
        got,
        [("abc_000059_000069.mp4", 2), ("riding_a_bike/xyz_000001_000011.mp4", 1), ("gone_000003_000013.mp4", 0)]
    );
    assert_eq!((data.manifest().found, data.missing.clone()), (2, vec![2]));
}

#[test]
fn kinetics_csv_errors_name_the_line_and_column() {
    let d = scratch("k400bad");
    let path = d.join("test.csv");
    let e = err(Dataset::open(&format!("kinetics:{}:{}", path.display(), d.display())));
    assert!(e.contains("cannot read the file") && e.contains("test.csv"), "{e}");
    std::fs::write(&path, "youtube_id,time_start,time_end,split\nabc,1,11,test\n").unwrap();
    let e = err(Dataset::open(&format!("kinetics:{}:{}", path.display(), d.display())));
    assert!(e.contains("test.csv:1:1") && e.contains("no `label` column") && e.contains("unlabelled"), "{e}");
    std::fs::write(&path, "label,youtube_id,time_start,time_end\nzumba,abc,1,eleven\n").unwrap();
    let e = err(Dataset::open(&format!("kinetics:{}:{}", path.display(), d.display())));
    assert!(e.contains("test.csv:2:1") && e.contains("`time_end` is `eleven`"), "{e}");
    std::fs::write(&path, "label,youtube_id,time_start,time_end\nzumba,abc\n").unwrap();
    let e = err(Dataset::open(&format!("kinetics:{}:{}", path.display(), d.display())));
    assert!(e.contains("test.csv:2:1") && e.contains("time_start"), "{e}");
}

fn ssv2(d: &Path, split: &str) -> anyhow::Result<Dataset> {
    std::fs::write(d.join("split.json"), split).unwrap();
    Dataset::open(&format!("ssv2:{}:{}", d.join("split.json").display(), d.display()))
}

/// SSv2: the label is `labels.json`'s index of the template without brackets; videos `<id>.webm`.
#[test]
fn ssv2_labels_are_templates_without_brackets() {
    let d = scratch("ssv2");
    std::fs::write(
        d.join("labels.json"),
        r#"{"Holding something next to something": "1", "Approaching something with your camera": "0"}"#,
    )
    .unwrap();
    std::fs::write(d.join("7.webm"), b"x").unwrap();
    let data = ssv2(
        &d,
        r#"[{"id": "7", "label": "holding potato next to vicks vaporub bottle",
             "template": "Holding [something] next to [something]", "placeholders": ["potato", "bottle"]},
            {"id": "9", "template": "Approaching [something] with your camera"}]"#,
    )
    .unwrap();
    let got: Vec<(&str, usize)> = data.items.iter().map(|i| (i.name.as_str(), i.label)).collect();
    assert_eq!(got, [("7.webm", 1), ("9.webm", 0)]);
    assert_eq!((data.name.as_str(), data.manifest().found), ("ssv2", 1));
    assert_eq!(data.classes.as_deref().unwrap()[0], "Approaching something with your camera");
}

#[test]
fn ssv2_errors_name_the_entry() {
    let d = scratch("ssv2bad");
    // no split file
    let e = err(Dataset::open(&format!("ssv2:{}:{}", d.join("validation.json").display(), d.display())));
    assert!(e.contains("validation.json") || e.contains("labels.json"), "{e}");
    // no labels.json next to the split file
    let e = err(ssv2(&d, "[]"));
    assert!(e.contains("labels.json"), "{e}");
    std::fs::write(d.join("labels.json"), r#"{"Holding something": "0"}"#).unwrap();
    // an unknown template
    let e =
        err(ssv2(&d, r#"[{"id": "1", "template": "Holding [something]"}, {"id": "2", "template": "Dropping [x]"}]"#));
    assert!(e.contains("entry 1 (id 2)") && e.contains("`Dropping x`") && e.contains("[1].template"), "{e}");
    // the unlabelled test split
    let e = err(ssv2(&d, r#"[{"id": "1"}]"#));
    assert!(e.contains("entry 0 (id 1)") && e.contains("unlabelled"), "{e}");
    // not JSON of entries
    let e = err(ssv2(&d, r#"{"id": 1}"#));
    assert!(e.contains("split.json:1:"), "{e}");
    // labels.json with a hole in the indices
    std::fs::write(d.join("labels.json"), r#"{"a": "0", "b": "2"}"#).unwrap();
    assert!(err(ssv2(&d, "[]")).contains("no class has index 1"));
}

/// A folder per class: classes sorted, videos sorted, non-video and hidden files ignored.
#[test]
fn a_folder_per_class_sorts_classes_and_videos() {
    let d = scratch("folder");
    for f in ["b/2.webm", "b/1.MP4", "b/notes.txt", "a/x.mkv", ".hidden/y.mp4"] {
        std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
        std::fs::write(d.join(f), b"x").unwrap();
    }
    std::fs::create_dir_all(d.join("c_empty")).unwrap();
    let data = Dataset::open(&format!("folder:{}", d.display())).unwrap();
    assert_eq!(data.classes.as_deref().unwrap(), ["a", "b", "c_empty"]);
    let got: Vec<(&str, usize)> = data.items.iter().map(|i| (i.name.as_str(), i.label)).collect();
    assert_eq!(got, [("a/x.mkv", 0), ("b/1.MP4", 1), ("b/2.webm", 1)]);
    let e = err(Dataset::open(&format!("folder:{}", d.join("a").display())));
    assert!(e.contains("no class folders"), "{e}");
    assert!(err(Dataset::open("folder:/nonexistent/videos")).contains("/nonexistent/videos"));
}
