//! The embedded benchmark's synthetic tasks: determinism, what decides each label, and the
//! committed pre-trained backbone (`fixtures/proxy/`).

use std::collections::BTreeSet;

use dfdx::prelude::*;
use video_adapters::init::Init;
use video_adapters::proxy::synth::{Dataset, Geometry, Motion, Rng, Task, MOTION_CLASSES};
use video_adapters::proxy::{self, Method};
use video_adapters::Ctx;

const G: Geometry = Geometry::PROXY;

/// The generators use only integer arithmetic and our own SplitMix64: the same (task, geometry,
/// seed) gives the same bytes on every run, thread count and platform. The checksums are a snapshot
/// (a change is a change of every benchmark number: review it).
#[test]
fn generators_are_deterministic_and_match_their_checksums() {
    let mut lines = vec![];
    for task in [Task::Shapes, Task::Appearance, Task::Motion] {
        let a = Dataset::generate(task, G, 48, 11);
        let b = Dataset::generate(task, G, 48, 11);
        assert_eq!(a.pixels, b.pixels, "{task:?}");
        assert_eq!(a.labels, b.labels, "{task:?}");
        // clip 40 alone (no clips before it) equals clip 40 of the split
        let (frames, label) = task.clip(G, 11, 40);
        assert_eq!(frames, a.frames(40));
        assert_eq!(label, a.labels[40]);
        lines.push(format!("{:<10} 48 clips of {:?}: sha256 {}", task.name(), a.geometry, a.checksum()));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

/// SplitMix64's first outputs from seed 1234567, as the published algorithm (Vigna's `splitmix64.c`)
/// gives them (checked against an independent Python transcription).
#[test]
fn rng_is_splitmix64() {
    let mut r = Rng::new(1234567);
    let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
}

/// Each label is decided as the task says: the shapes task names shape × colour × texture; the
/// appearance task's label is the object's colour (its motion, shape and texture vary within a
/// class); the motion task's label is the motion and its direction in time.
#[test]
fn each_label_is_decided_by_what_its_task_says() {
    for i in 0..192u64 {
        let (scene, _, label) = Task::Shapes.scene(G, 5, i);
        let o = scene.objects[0];
        assert_eq!((o.shape, o.colour, o.texture), proxy::synth::shapes_label_parts(label));
    }
    let mut motions_per_class = vec![BTreeSet::new(); 8];
    for i in 0..400u64 {
        let (scene, reversed, label) = Task::Appearance.scene(G, 5, i);
        assert_eq!(scene.objects[0].colour, label);
        motions_per_class[label].insert((format!("{:?}", scene.motion), reversed));
    }
    assert!(motions_per_class.iter().all(|m| m.len() >= 6), "{motions_per_class:?}");
    for i in 0..240u64 {
        let (scene, reversed, label) = Task::Motion.scene(G, 5, i);
        assert_eq!((scene.motion, reversed), (MOTION_CLASSES[label].1, MOTION_CLASSES[label].2));
    }
}

/// The motion task (the SSv2 stand-in) has "the same objects in every class": in a split of 960
/// clips, every class shows every shape and every colour.
#[test]
fn every_motion_class_shows_every_shape_and_colour() {
    let mut seen = vec![(BTreeSet::new(), BTreeSet::new()); 12];
    for i in 0..960u64 {
        let (scene, _, label) = Task::Motion.scene(G, 3, i);
        seen[label].0.insert(scene.objects[0].shape);
        seen[label].1.insert(scene.objects[0].colour);
    }
    for (c, (shapes, colours)) in seen.iter().enumerate() {
        assert_eq!((shapes.len(), colours.len()), (8, 8), "class {}", MOTION_CLASSES[c].0);
    }
}

/// No single frame tells a motion class from its partner: clip 2j + 1 of a split is clip 2j played
/// backwards (same frames, other order) under the partner label, so the multiset of frames of every
/// "move left" clip is the multiset of a "move right" clip of the same split, and so on.
#[test]
fn every_motion_clip_has_its_time_reversal_in_the_split_under_the_partner_label() {
    let d = Dataset::generate(Task::Motion, G, 96, 8);
    for j in (0..d.len()).step_by(2) {
        let (fwd, mut back) = (d.frames(j), d.frames(j + 1));
        back.reverse();
        assert_eq!(fwd, back, "clips {j} and {}", j + 1);
        assert_eq!(MOTION_CLASSES[d.labels[j]].1, MOTION_CLASSES[d.labels[j + 1]].1);
        assert_ne!(MOTION_CLASSES[d.labels[j]].2, MOTION_CLASSES[d.labels[j + 1]].2);
        // and the frames do change over time (it is a motion, not a still)
        assert!(fwd.windows(2).any(|w| w[0] != w[1]), "clip {j} is static");
    }
}

/// Hence a model that averages per-frame features (here the linear probe, random weights) gives a
/// clip and its partner the same logits: on the motion task it is at most 50 % on each pair.
#[test]
fn a_frame_averaging_model_cannot_tell_a_motion_clip_from_its_reversal() {
    let dev = Cpu::default();
    let clip = proxy::backbone();
    let cfg = Method::LinearProbe.cfg(&clip, 12, G.frames);
    let model = cfg.build(&dev, &mut Init::seeded(3)).unwrap();
    let d = Dataset::generate(Task::Motion, G, 24, 4);
    let (video, _) = d.batch(&(0..24).collect::<Vec<_>>(), &dev);
    let logits = model.logits(&video, &mut Ctx::eval()).as_vec();
    for j in (0..24).step_by(2) {
        for k in 0..12 {
            let (a, b) = (logits[j * 12 + k], logits[(j + 1) * 12 + k]);
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "clip {j} class {k}: {a} vs {b}");
        }
    }
}

/// The temporal methods can tell them apart: ST-Adapter with non-zero 3×1×1 kernels gives a clip
/// and its reversal different logits (the check that the test above is not vacuous).
#[test]
fn st_adapter_sees_the_order_of_frames() {
    use video_adapters::registry::ModelCfg;
    let dev = Cpu::default();
    let ModelCfg::StAdapter(cfg) = Method::ST_ADAPTER.cfg(&proxy::backbone(), 12, G.frames) else { unreachable!() };
    let mut model = cfg.build::<64, f32, Cpu>(&dev, &mut Init::seeded(3)).unwrap();
    // the official zero init starts as an identity: give every temporal kernel random taps
    let mut init = Init::seeded(9);
    for i in 0..cfg.clip.layers {
        let key = format!("transformer.resblocks.{i}.adapter_pre_mlp.conv.weight");
        let n = video_adapters::testing::param_values(&model, &key).len();
        video_adapters::testing::set_param_values(&mut model, &key, &init.normal(n, 0.5));
    }
    let d = Dataset::generate(Task::Motion, G, 2, 4);
    let (video, _) = d.batch(&[0, 1], &dev);
    let logits = model.forward::<NoneTape>(&video, &mut Ctx::eval()).as_vec();
    let diff: f32 = (0..12).map(|k| (logits[k] - logits[12 + k]).abs()).sum();
    assert!(diff > 1e-4, "ST-Adapter gave a clip and its reversal the same logits");
}

/// The appearance task is balanced: motions (and their reversal) are drawn independently of the label.
#[test]
fn appearance_task_nuisance_motion_is_independent_of_the_label() {
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..1600u64 {
        let (scene, _, label) = Task::Appearance.scene(G, 1, i);
        *counts.entry((label, scene.motion == Motion::Still)).or_insert(0) += 1;
    }
    // every class has still and moving clips, moving about 4 in 5
    for label in 0..8 {
        let still = counts[&(label, true)];
        assert!((20..=60).contains(&still), "class {label}: {still} still clips of 200");
    }
}

/// The contact sheet is a PNG with one row per class.
#[test]
fn contact_sheet_writes_one_row_per_class() {
    let dir = std::env::temp_dir().join(format!("proxy_sheet_{}", std::process::id()));
    let path = dir.join("motion.png");
    proxy::synth::contact_sheet(Task::Motion, G, 7, 2, 1, &path).unwrap();
    let img = image::open(&path).unwrap();
    assert_eq!(img.height() as usize, 12 * (G.size + 2));
    std::fs::remove_dir_all(dir).ok();
}

/// The committed backbone (`fixtures/proxy/backbone.safetensors`, made by
/// `cargo run --release --bin proxy -- pretrain`, commands in `fixtures/proxy/README.md`) loads
/// into the frame-wise model by the kit's strict loader and solves the image task it was
/// pre-trained on: on 960 held-out stills (a stream it never saw) it names the full 192-way label and
/// the shape far above chance (1/192 and 1/8). Pre-training printed 47.0 % (192-way) and 64.5 %
/// (shape) on 1920 other stills (file metadata, `fixtures/proxy/STUDY.md`); the thresholds, 38 % and
/// 55 %, sit about 6 binomial standard deviations (1.6 % and 1.5 % at n = 960) below them, and 73×
/// and 4.4× above chance: a backbone that had not learnt shapes fails.
#[test]
fn committed_backbone_loads_and_solves_the_image_task() {
    use video_adapters::clip::FrameBaseline;
    let dev = Cpu::default();
    let clip = proxy::backbone();
    let mut model =
        FrameBaseline::<64, f32, Cpu>::build(&clip, Task::Shapes.num_classes(), &dev, &mut Init::zeros()).unwrap();
    proxy::load_image_model(&mut model, &proxy::backbone_path()).unwrap();
    let test = Dataset::generate(Task::Shapes, G, 960, 424_242);
    let pred = proxy::predictions(&model, &test, 160);
    let n = test.len() as f64;
    let full = pred.iter().zip(&test.labels).filter(|(p, y)| p == y).count() as f64 / n;
    let shape = pred.iter().zip(&test.labels).filter(|(p, y)| **p / 24 == **y / 24).count() as f64 / n;
    eprintln!("held-out: 192-way {full:.3}, shape {shape:.3}");
    assert!(shape >= SHAPE_THRESHOLD, "shape accuracy {shape:.3} < {SHAPE_THRESHOLD}");
    assert!(full >= FULL_THRESHOLD, "192-way accuracy {full:.3} < {FULL_THRESHOLD}");
}

const SHAPE_THRESHOLD: f64 = 0.55;
const FULL_THRESHOLD: f64 = 0.38;

/// Every method of the study builds on the proxy backbone and takes its encoder weights from the
/// committed file; only the method's own parts (adapters, heads, temporal embedding) stay fresh.
#[test]
fn every_method_loads_the_committed_backbone() {
    use video_adapters::clip::weights::is_clip_key;
    use video_adapters::ops::Kernel3;
    let dev = Cpu::default();
    for m in [
        Method::LinearProbe,
        Method::FullFinetune,
        Method::Houlsby,
        Method::ST_ADAPTER,
        Method::StAdapter(Kernel3::new(1, 3, 3)),
        Method::Aim,
        Method::MstAdapter,
    ] {
        let cfg = m.cfg(&proxy::backbone(), 12, G.frames);
        let mut model = cfg.build(&dev, &mut Init::seeded(1)).unwrap();
        let report = proxy::load_backbone(model.as_mut(), &cfg, &proxy::backbone_path()).unwrap();
        let prefix = cfg.encoder_prefix();
        assert!(report.loaded.iter().all(|k| is_clip_key(k.strip_prefix(prefix).unwrap())), "{}", m.name());
        assert!(
            !report.kept.is_empty() && report.kept.iter().all(|k| !k.strip_prefix(prefix).is_some_and(is_clip_key))
        );
    }
}
