//! The embedded benchmark's tools: contact sheets of the synthetic tasks, pre-training of the small
//! backbone (the committed `fixtures/proxy/backbone.safetensors`), and the design study's runs.
//!
//! ```text
//! cargo run --release --bin proxy -- sheets
//! cargo run --release --bin proxy -- pretrain            # regenerates fixtures/proxy/backbone.safetensors
//! cargo run --release --bin proxy -- study --task motion --method st --seeds 1,2,3
//! cargo run --release --bin proxy -- runs                # book/src/measured/proxy_runs.json
//! cargo run --release --features video --bin proxy -- export --task motion --split test --n 48 --out DIR
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use dfdx::prelude::*;
use video_adapters::clip::weights::{named_params, write_safetensors};
use video_adapters::clip::ClipCfg;
use video_adapters::clip::FrameBaseline;
use video_adapters::init::Init;
use video_adapters::input::count;
use video_adapters::ops::Kernel3;
use video_adapters::optim::{AdamW, AdamWCfg};
use video_adapters::proxy::synth::{contact_sheet, Dataset, Geometry, Rng, Task, MOTION_CLASSES};
use video_adapters::proxy::{self, Method};
use video_adapters::registry::VideoModel;
use video_adapters::Ctx;

/// The embedded benchmark's tools: contact sheets of the synthetic tasks, the backbone's
/// pre-training, the benchmark and study runs, the book's proxy figures, and the clips as video files.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Backbone shape overrides (defaults: `proxy::backbone()`).
#[derive(clap::Args, Clone)]
struct Shape {
    #[arg(long, default_value_t = 32, value_parser = count(1..=512))]
    size: usize,
    #[arg(long, default_value_t = 8, value_parser = count(1..=512))]
    patch: usize,
    #[arg(long, default_value_t = 4, value_parser = count(1..=64))]
    layers: usize,
    #[arg(long, default_value_t = 4, value_parser = count(1..=256))]
    frames: usize,
}

impl Shape {
    fn clip(&self) -> ClipCfg {
        ClipCfg { input_resolution: self.size, patch_size: self.patch, layers: self.layers, ..proxy::backbone() }
    }
    fn geometry(&self) -> Geometry {
        Geometry { size: self.size, frames: self.frames }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// PNG contact sheets of every task (a few clips per class).
    Sheets {
        #[arg(long, default_value = "book/src/figures")]
        out: PathBuf,
        #[arg(long, default_value_t = 2, value_parser = count(1..=100))]
        per_class: usize,
    },
    /// Pre-trains the backbone on the image task (every weight trained) and writes it.
    Pretrain {
        #[command(flatten)]
        shape: Shape,
        #[arg(long, default_value_t = 3000, value_parser = count(1..=10_000_000))]
        steps: usize,
        #[arg(long, default_value_t = 64, value_parser = count(1..=4096))]
        batch: usize,
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "fixtures/proxy/backbone.safetensors")]
        out: PathBuf,
        /// continue from these weights (a file this command wrote) instead of a fresh init
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// Runs the benchmark itself (the kit's trainer and evaluator, the default budgets, the cache):
    /// one JSON line per run, then mean ± std per method.
    Bench {
        #[arg(long, default_value = "motion")]
        task: String,
        /// linear, full, houlsby, st, st133, st111, aim, mst, mst-noshift (comma-separated)
        #[arg(long, default_value = "linear,st,aim,mst")]
        method: String,
        #[arg(long, default_value = "1,2,3")]
        seeds: String,
        /// scales the default steps
        #[arg(long, default_value_t = 1.0)]
        budget: f64,
        /// peak learning rate instead of the default
        #[arg(long)]
        lr: Option<f64>,
        /// do not read or write the cache
        #[arg(long)]
        no_cache: bool,
    },
    /// Runs (or reads from the cache) the runs behind the book's proxy figures (every charted method
    /// on the motion task, seeds 1-3, default budget) and writes them as JSON, then the figures.
    Runs {
        #[arg(long, default_value = "book/src/measured/proxy_runs.json")]
        out: PathBuf,
    },
    /// Writes a split's clips as video files (lossless 4:4:4 H.264 in Matroska) with a list file
    /// in the official `<path> <label>` format (`--data list:OUT/SPLIT.txt` for the kit's tools).
    #[cfg(feature = "video")]
    Export {
        #[arg(long, default_value = "motion")]
        task: String,
        /// train or test (the benchmark's splits)
        #[arg(long, default_value = "test")]
        split: String,
        /// clips 0..n of the split
        #[arg(long, default_value_t = 48, value_parser = count(1..=1_000_000))]
        n: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Trains methods on a task from the pre-trained backbone; one JSON line per run.
    Study {
        #[command(flatten)]
        shape: Shape,
        #[arg(long, default_value = "motion")]
        task: String,
        /// linear, full, houlsby, st, st133, st111, aim, mst, mst-noshift (comma-separated)
        #[arg(long, default_value = "st")]
        method: String,
        #[arg(long, default_value = "1,2,3")]
        seeds: String,
        #[arg(long, default_value_t = 300, value_parser = count(1..=10_000_000))]
        steps: usize,
        #[arg(long, default_value_t = 32, value_parser = count(1..=4096))]
        batch: usize,
        #[arg(long, default_value_t = 5e-3)]
        lr: f64,
        /// lr for full fine-tuning's encoder weights, as a multiple of lr
        #[arg(long, default_value_t = 0.1)]
        full_mult: f64,
        #[arg(long, default_value_t = 2000, value_parser = count(1..=10_000_000))]
        train_n: usize,
        #[arg(long, default_value_t = 600, value_parser = count(1..=10_000_000))]
        test_n: usize,
        #[arg(long)]
        backbone: Option<PathBuf>,
        /// also evaluate after these steps (comma-separated), for accuracy-vs-steps curves
        #[arg(long, default_value = "")]
        eval_at: String,
        /// the head's dropout (the papers' 0.5 unless given)
        #[arg(long)]
        dropout: Option<f64>,
        /// motion task: a scene of its own for every training clip (the test split stays paired)
        #[arg(long)]
        unpaired: bool,
    },
}

fn main() {
    video_adapters::device::tune_host_allocator();
    if let Err(e) = cli(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn cli(args: Args) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Sheets { out, per_class } => {
            for task in [Task::Shapes, Task::Appearance, Task::Motion] {
                let (g, n) =
                    if task == Task::Shapes { (Geometry::PROXY.still(), 8) } else { (Geometry::PROXY, per_class) };
                let path = out.join(format!("proxy_sheet_{}.png", task.name()));
                let seed = 7;
                if task == Task::Shapes {
                    shapes_sheet(g, seed, &path)?;
                } else {
                    contact_sheet(task, g, seed, n, 2, &path)?;
                }
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Cmd::Pretrain { shape, steps, batch, lr, seed, out, init } => {
            pretrain(&shape, steps, batch, lr, seed, &out, init.as_deref())
        }
        Cmd::Bench { task, method, seeds, budget, lr, no_cache } => {
            use video_adapters::proxy::bench;
            let task = parse_task(&task)?;
            anyhow::ensure!(budget.is_finite() && budget > 0.0, "--budget must be positive, is {budget}");
            let mut b = bench::Budget::default_for(task).scaled(budget);
            if let Some(lr) = lr {
                anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number, is {lr}");
                b.lr = lr;
            }
            let seeds: Vec<u64> = seeds
                .split(',')
                .map(|s| s.trim().parse().map_err(|e| anyhow::anyhow!("--seeds `{s}`: {e}")))
                .collect::<anyhow::Result<_>>()?;
            let methods: Vec<Method> = method.split(',').map(parse_method).collect::<anyhow::Result<_>>()?;
            let keys: Vec<bench::RunKey> = methods
                .iter()
                .flat_map(|&m| seeds.iter().map(move |&seed| bench::RunKey { method: m, task, budget: b, seed }))
                .collect();
            let cache = bench::default_cache_dir();
            let results = bench::run_all(&keys, (!no_cache).then_some(cache.as_path()), true)?;
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
            for m in &methods {
                let of = |f: &dyn Fn(&bench::RunResult) -> Option<f64>| {
                    let v: Vec<f64> = results.iter().filter(|r| r.key.method == *m).filter_map(f).collect();
                    video_adapters::proxy::claims::mean_std(&v)
                };
                let fmt = |x: Option<(f64, f64)>| x.map_or("—".into(), |(m, s)| format!("{m:.1} ± {s:.1}"));
                println!(
                    "{:<20} top-1 {:>12}  kind {:>12}  direction {:>12}  wall {:>8} s",
                    m.name(),
                    fmt(of(&|r| Some(r.top1))),
                    fmt(of(&|r| r.kind)),
                    fmt(of(&|r| r.direction)),
                    fmt(of(&|r| Some(r.wall_seconds)))
                );
            }
            Ok(())
        }
        #[cfg(feature = "video")]
        Cmd::Export { task, split, n, out } => {
            use video_adapters::proxy::export::{export, Split};
            let split = match split.as_str() {
                "train" => Split::Train,
                "test" => Split::Test,
                s => anyhow::bail!("unknown split `{s}` (train, test)"),
            };
            let e = export(parse_task(&task)?, split, n, &out)?;
            println!("wrote {} videos and {} (use --data list:{})", e.videos.len(), e.list.display(), e.list.display());
            Ok(())
        }
        Cmd::Runs { out } => {
            use video_adapters::proxy::{bench, runs};
            let cache = bench::default_cache_dir();
            let results = runs::collect(&runs::keys(), Some(&cache))?;
            let file = runs::Runs {
                made_by: "cargo run --release --bin proxy -- runs".into(),
                bench_version: bench::BENCH_VERSION,
                runs: results,
            };
            video_adapters::io::write_atomic(&out, (serde_json::to_string_pretty(&file)? + "\n").as_bytes())?;
            println!("wrote {} ({} runs); now: cargo run --release --bin book_assets", out.display(), file.runs.len());
            Ok(())
        }
        Cmd::Study {
            shape,
            task,
            method,
            seeds,
            steps,
            batch,
            lr,
            full_mult,
            train_n,
            test_n,
            backbone,
            eval_at,
            dropout,
            unpaired,
        } => {
            let eval_at: Vec<usize> = eval_at
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().parse().map_err(|e| anyhow::anyhow!("--eval-at `{s}`: {e}")))
                .collect::<anyhow::Result<_>>()?;
            if let Some(d) = dropout {
                anyhow::ensure!((0.0..1.0).contains(&d), "--dropout must lie in [0, 1), is {d}");
            }
            anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number, is {lr}");
            let task = parse_task(&task)?;
            let g = shape.geometry();
            let t0 = Instant::now();
            let train = Dataset::generate_range_paired(task, g, 0, train_n, 1000, !unpaired);
            let test = Dataset::generate(task, g, test_n, 2000);
            eprintln!("data: {} + {} clips in {:.1} s", train_n, test_n, t0.elapsed().as_secs_f64());
            let backbone = backbone.unwrap_or_else(proxy::backbone_path);
            for m in method.split(',') {
                let m = parse_method(m)?;
                for s in seeds.split(',') {
                    let seed: u64 = s.trim().parse().map_err(|e| anyhow::anyhow!("--seeds `{s}`: {e}"))?;
                    let r =
                        run(&shape, m, &train, &test, seed, steps, batch, lr, full_mult, &backbone, &eval_at, dropout)?;
                    println!("{}", serde_json::to_string(&r)?);
                }
            }
            Ok(())
        }
    }
}

fn parse_task(t: &str) -> anyhow::Result<Task> {
    Ok(match t {
        "motion" => Task::Motion,
        "appearance" => Task::Appearance,
        t => anyhow::bail!("unknown task `{t}` (motion, appearance)"),
    })
}

fn parse_method(m: &str) -> anyhow::Result<Method> {
    Ok(match m.trim() {
        "linear" => Method::LinearProbe,
        "full" => Method::FullFinetune,
        "houlsby" => Method::Houlsby,
        "st" => Method::ST_ADAPTER,
        "st133" => Method::StAdapter(Kernel3::new(1, 3, 3)),
        "st111" => Method::StAdapter(Kernel3::new(1, 1, 1)),
        "aim" => Method::Aim,
        "mst" => Method::MstAdapter,
        "mst-noshift" => Method::MstAdapterNoShift,
        m => anyhow::bail!("unknown method `{m}`"),
    })
}

/// The shapes sheet: 8 rows (one per shape), each 16 stills of that shape in random colours/textures.
fn shapes_sheet(g: Geometry, seed: u64, path: &std::path::Path) -> anyhow::Result<()> {
    let zoom = 2;
    let (cols, rows) = (16usize, 8usize);
    let mut img = image::RgbImage::from_pixel(
        (cols * (g.size + 2) * zoom) as u32,
        (rows * (g.size + 2) * zoom) as u32,
        image::Rgb([255, 255, 255]),
    );
    for r in 0..rows {
        for c in 0..cols {
            // label = shape·24 + colour·3 + texture: pick shape r, varied colour and texture
            let label = r * 24 + (c % 8) * 3 + (c / 8 + c) % 3;
            let (frames, _) = Task::Shapes.clip(g, seed, (c as u64 / 8) * 192 + label as u64);
            let f = &frames[0];
            for y in 0..g.size {
                for x in 0..g.size {
                    let i = (y * g.size + x) * 3;
                    for zy in 0..zoom {
                        for zx in 0..zoom {
                            img.put_pixel(
                                ((c * (g.size + 2) + x) * zoom + zx) as u32,
                                ((r * (g.size + 2) + y) * zoom + zy) as u32,
                                image::Rgb([f.rgb[i], f.rgb[i + 1], f.rgb[i + 2]]),
                            );
                        }
                    }
                }
            }
        }
    }
    img.save(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Warm-up (5 %) then cosine decay to 0.
fn lr_at(base: f64, step: usize, steps: usize) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        base * (step + 1) as f64 / warm as f64
    } else {
        let p = (step - warm) as f64 / (steps - warm).max(1) as f64;
        base * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

fn pretrain(
    shape: &Shape,
    steps: usize,
    batch: usize,
    lr: f64,
    seed: u64,
    out: &std::path::Path,
    init: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let dev = Cpu::default();
    let clip = shape.clip();
    anyhow::ensure!(clip.width == 64, "pre-training is compiled for width 64");
    let mut model =
        FrameBaseline::<64, f32, Cpu>::build(&clip, Task::Shapes.num_classes(), &dev, &mut Init::seeded(seed))?;
    if let Some(path) = init {
        proxy::load_image_model(&mut model, path)?;
    }
    model.set_trainable(&|_| true);
    // no dropout on the 64 features before the 192-way head: with it (the video recipe's 0.5) the
    // image task learnt about 4x slower (STUDY.md)
    model.dropout = 0.0;
    let g = shape.geometry().still();
    let test = Dataset::generate(Task::Shapes, g, 1920, 9_000_001);
    let no_decay = |k: &str| k.contains("ln_") || k.contains("embedding") || k.ends_with(".bias");
    let mut opt = AdamW::new(AdamWCfg { lr, weight_decay: 0.05, ..AdamWCfg::default() })
        .with_groups(Box::new(move |k| (1.0, if no_decay(k) { 0.0 } else { 1.0 })));
    let t0 = Instant::now();
    let mut loss_avg = 0.0;
    for step in 0..steps {
        // fresh stills every step: clips step·batch .. (step+1)·batch of the training stream
        let data = Dataset::generate_range(Task::Shapes, g, (step * batch) as u64, batch, 1_000_000 + seed);
        let (video, labels) = data.batch(&(0..batch).collect::<Vec<_>>(), &dev);
        opt.cfg.lr = lr_at(lr, step, steps);
        let loss = model.train_step(&video, &labels, &mut opt, &mut Ctx::train(seed * 1_000_003 + step as u64));
        loss_avg = if step == 0 { loss as f64 } else { 0.98 * loss_avg + 0.02 * loss as f64 };
        if (step + 1) % 250 == 0 || step + 1 == steps {
            let acc = proxy::accuracy(&model, &test, 128);
            eprintln!(
                "step {:5}  loss {:.3}  held-out accuracy {:.3}  {:.0} s",
                step + 1,
                loss_avg,
                acc,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let acc = proxy::accuracy(&model, &test, 128);
    let shapes_acc = shape_accuracy(&model, &test);
    let mut meta = BTreeMap::new();
    meta.insert(
        "command".to_string(),
        format!(
            "cargo run --release --bin proxy -- pretrain --size {} --patch {} --layers {} --steps {steps} --batch {batch} --lr {lr} --seed {seed}{}",
            shape.size,
            shape.patch,
            shape.layers,
            init.map(|p| format!(" --init {}", p.display())).unwrap_or_default()
        ),
    );
    meta.insert("clip_cfg".into(), serde_json::to_string(&clip)?);
    meta.insert("heldout_accuracy_192".into(), format!("{acc:.4}"));
    meta.insert("heldout_shape_accuracy".into(), format!("{shapes_acc:.4}"));
    meta.insert("seconds".into(), format!("{:.0}", t0.elapsed().as_secs_f64()));
    let mut tensors = named_params(&model, false);
    for t in &mut tensors {
        t.name = proxy::backbone_file_key(&t.name);
    }
    write_safetensors(out, &tensors, Some(meta))?;
    println!(
        "wrote {} ({} tensors): held-out accuracy {acc:.4} (192 classes), shape {shapes_acc:.4}, {:.0} s",
        out.display(),
        tensors.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Accuracy of the shape part of the 192-way label.
fn shape_accuracy(model: &dyn VideoModel, data: &Dataset) -> f64 {
    let pred = proxy::predictions(model, data, 128);
    let ok = pred.iter().zip(&data.labels).filter(|(p, y)| **p / 24 == **y / 24).count();
    ok as f64 / data.len() as f64
}

#[derive(serde::Serialize)]
struct RunResult {
    dropout: Option<f64>,
    task: &'static str,
    method: String,
    seed: u64,
    size: usize,
    patch: usize,
    layers: usize,
    frames: usize,
    steps: usize,
    batch: usize,
    lr: f64,
    train_n: usize,
    test_n: usize,
    accuracy: f64,
    /// motion task: accuracy on the pair (kind) level, and direction accuracy given the right kind
    kind_accuracy: Option<f64>,
    direction_given_kind: Option<f64>,
    train_seconds: f64,
    step_ms_median: f64,
    eval_seconds: f64,
    final_loss: f64,
    /// (step, accuracy) at the --eval-at steps
    curve: Vec<(usize, f64)>,
    threads: usize,
}

#[allow(clippy::too_many_arguments)]
fn run(
    shape: &Shape,
    m: Method,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
    steps: usize,
    batch: usize,
    lr: f64,
    full_mult: f64,
    backbone: &std::path::Path,
    eval_at: &[usize],
    dropout: Option<f64>,
) -> anyhow::Result<RunResult> {
    let dev = Cpu::default();
    let task = train.task;
    let cfg = m.cfg(&shape.clip(), task.num_classes(), shape.frames);
    let mut model = match dropout {
        None => cfg.build(&dev, &mut Init::seeded(seed))?,
        Some(d) => proxy::build_with_dropout(&cfg, d, seed)?,
    };
    // `--backbone none`: a randomly initialised frozen encoder (a control)
    if backbone.as_os_str() != "none" {
        proxy::load_backbone(model.as_mut(), &cfg, backbone)?;
    }
    let prefix = cfg.encoder_prefix();
    let is_encoder = move |k: &str| k.strip_prefix(prefix).is_some_and(video_adapters::clip::weights::is_clip_key);
    let mult = if m == Method::FullFinetune { full_mult } else { 1.0 };
    let mut opt = AdamW::new(AdamWCfg { lr, weight_decay: 0.05, ..AdamWCfg::default() })
        .with_groups(Box::new(move |k| (if is_encoder(k) { mult } else { 1.0 }, 1.0)));
    let mut rng = Rng::new(seed ^ 0xabcdef);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut pos = train.len();
    let mut times = vec![];
    let t0 = Instant::now();
    let mut last = 0.0;
    let mut curve = vec![];
    let mut curve_secs = 0.0;
    for step in 0..steps {
        let mut idx = Vec::with_capacity(batch);
        while idx.len() < batch {
            if pos == order.len() {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                pos = 0;
            }
            idx.push(order[pos]);
            pos += 1;
        }
        let (video, labels) = train.batch(&idx, &dev);
        opt.cfg.lr = lr_at(lr, step, steps);
        let ts = Instant::now();
        let loss = model.train_step(&video, &labels, &mut opt, &mut Ctx::train(seed * 7919 + step as u64));
        times.push(ts.elapsed().as_secs_f64() * 1e3);
        last = if step == 0 { loss as f64 } else { 0.95 * last + 0.05 * loss as f64 };
        if eval_at.contains(&(step + 1)) && step + 1 < steps {
            let te = Instant::now();
            curve.push((step + 1, proxy::accuracy(model.as_ref(), test, 64)));
            curve_secs += te.elapsed().as_secs_f64();
        }
    }
    let train_seconds = t0.elapsed().as_secs_f64() - curve_secs;
    let t1 = Instant::now();
    let pred = proxy::predictions(model.as_ref(), test, 64);
    let eval_seconds = t1.elapsed().as_secs_f64();
    let n = test.len() as f64;
    let accuracy = pred.iter().zip(&test.labels).filter(|(p, y)| p == y).count() as f64 / n;
    let (kind_accuracy, direction_given_kind) = if task == Task::Motion {
        let same_kind = |p: usize, y: usize| MOTION_CLASSES[p].1 == MOTION_CLASSES[y].1;
        let kind_ok = pred.iter().zip(&test.labels).filter(|(p, y)| same_kind(**p, **y)).count();
        let dir_ok = pred.iter().zip(&test.labels).filter(|(p, y)| p == y).count();
        (Some(kind_ok as f64 / n), Some(dir_ok as f64 / kind_ok.max(1) as f64))
    } else {
        (None, None)
    };
    times.sort_by(f64::total_cmp);
    eprintln!(
        "{} {} seed {seed}: accuracy {accuracy:.3} ({train_seconds:.0} s train, {eval_seconds:.1} s eval)",
        task.name(),
        m.name()
    );
    Ok(RunResult {
        dropout,
        task: task.name(),
        method: m.name(),
        seed,
        size: shape.size,
        patch: shape.patch,
        layers: shape.layers,
        frames: shape.frames,
        steps,
        batch,
        lr,
        train_n: train.len(),
        test_n: test.len(),
        accuracy,
        kind_accuracy,
        direction_given_kind,
        train_seconds,
        step_ms_median: times.get(times.len() / 2).copied().unwrap_or(0.0),
        eval_seconds,
        final_loss: last,
        curve,
        threads: rayon::current_num_threads(),
    })
}
