//! Every op and every model preset on CUDA against the CPU (the reference): forward outputs, logits,
//! and the gradients of the inputs and of every trainable parameter, at stated f32 tolerances.
//!
//! Feature `cuda`. Each test skips with one line on stderr (`SKIPPED <test>: <why>`) when the machine
//! has no CUDA device (no GPU is lent to the project's CI: there the CUDA build is compiled and these
//! tests skip; `scripts/gpu-check` runs them on a GPU machine).
//!
//! Tolerances: the two devices sum in different orders (cuBLAS vs our GEMM, one thread per row vs
//! SIMD lanes), so f32 results differ by rounding. An op's outputs and gradients must agree within
//! `|gpu − cpu| ≤ 1e-4 · (1 + max |cpu|)`; a whole model (12 layers of ViT-B/16) within
//! `1e-3 · (1 + max |cpu|)` for logits and for each parameter's gradient.
#![cfg(all(feature = "cuda", not(feature = "ci-check")))]

use dfdx::prelude::*;
use dfdx::tensor::Cuda;
use video_adapters::device::{cuda_devices, host, KitDevice};
use video_adapters::init::Init;
use video_adapters::ops::layer_norm::LayerNorm;
use video_adapters::ops::{self, Grid, Kernel3, SeqAxis};
use video_adapters::optim::GradSums;
use video_adapters::param::Param;
use video_adapters::registry::{presets, ModelCfg};
use video_adapters::Ctx;

const OP_TOL: f32 = 1e-4;
const MODEL_TOL: f32 = 1e-3;

/// The CUDA device, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<Cuda> {
    match cuda_devices() {
        Ok(_) => Some(Cuda::try_build(0, 0).expect("a CUDA device the driver reports opens")),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// `|b − a| ≤ tol · (1 + max |a|)` elementwise; the message names what and where.
fn assert_close(what: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: {} values on the CPU, {} on the GPU", cpu.len(), gpu.len());
    let scale = 1.0 + cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: cpu {a} vs gpu {b} (tolerance {} )", tol * scale);
    }
}

fn values(seed: u64, n: usize) -> Vec<f32> {
    Init::seeded(seed).normal(n, 1.0).into_iter().map(|x| x as f32).collect()
}

fn param<S: Shape, D: KitDevice<f32>>(dev: &D, seed: u64, shape: S, trainable: bool) -> Param<S, f32, D> {
    Param::new(dev.tensor_from_vec(values(seed, shape.num_elements()), shape), trainable)
}

/// What one op case gives on a device: the output and every gradient, by name.
type Run = Vec<(String, Vec<f32>)>;

/// Parameters whose gradients a case reads, by name.
type Named<'a, D> = &'a [(&'a str, &'a Tensor<(usize,), f32, D>)];

/// Runs `op` traced on an input of `shape` (seeded values), then `sum(y · r)` backward for fixed
/// weights r; returns the output, the input's gradient, and the gradients of `params` (by name).
fn run_op<S: Shape, S2: Shape, D: KitDevice<f32>>(
    dev: &D,
    shape: S,
    op: impl FnOnce(Tensor<S, f32, D, OwnedTape<f32, D>>) -> Tensor<S2, f32, D, OwnedTape<f32, D>>,
    params: Named<'_, D>,
) -> Run {
    let x = dev.tensor_from_vec(values(1, shape.num_elements()), shape);
    let y = op(x.clone().traced(Gradients::leaky()));
    let out = host(&y);
    let n = out.len();
    let r = dev.tensor_from_vec(values(2, n), (n,));
    let g = (y.reshape_like(&(n,)) * r).sum::<Rank0, _>().backward();
    let mut run = vec![("output".to_string(), out), ("input gradient".to_string(), g.get(&x).as_vec())];
    for (name, p) in params {
        run.push((format!("{name} gradient"), g.get(*p).as_vec()));
    }
    run
}

fn compare(test: &str, cpu: Run, gpu: Run, tol: f32) {
    for ((name, a), (_, b)) in cpu.iter().zip(&gpu) {
        assert_close(&format!("{test}: {name}"), a, b, tol);
    }
}

macro_rules! op_test {
    ($(#[$doc:meta])* $name:ident, |$dev:ident| $body:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            let Some(g) = gpu(stringify!($name)) else { return };
            fn case<D: KitDevice<f32>>($dev: &D) -> Run {
                $body
            }
            compare(stringify!($name), case(&Cpu::default()), case(&g), OP_TOL);
        }
    };
}

op_test!(
    /// QuickGELU and exact GELU (act_fwd / act_bwd).
    activations_match_the_cpu,
    |dev| {
        let mut r = run_op(dev, (5usize, 7usize), |x| ops::quick_gelu(x), &[]);
        r.extend(run_op(dev, (5usize, 7usize), |x| ops::gelu(x), &[]));
        r
    }
);

op_test!(
    /// LayerNorm with trainable γ, β (ln_stats, ln_apply, ln_bwd_x, ln_bwd_params).
    layer_norm_matches_the_cpu,
    |dev| {
        let ln = LayerNorm { weight: param(dev, 3, (Const::<8>,), true), bias: param(dev, 4, (Const::<8>,), true), eps: 1e-5 };
        let (w, b) = (ln.weight.value.clone(), ln.bias.value.clone());
        let x_shape = (3usize, 5usize, Const::<8>);
        let x = dev.tensor_from_vec(values(1, 120), x_shape);
        let y = ops::layer_norm(x.clone().traced(Gradients::leaky()), &ln);
        let out = host(&y);
        let r = dev.tensor_from_vec(values(2, 120), (120usize,));
        let g = (y.reshape_like(&(120usize,)) * r).sum::<Rank0, _>().backward();
        vec![("output".into(), out), ("x".into(), g.get(&x).as_vec()), ("γ".into(), g.get(&w).as_vec()), ("β".into(), g.get(&b).as_vec())]
    }
);

op_test!(
    /// The depthwise 3D conv with kernel 3x3x3 (all taps reach the padding) and trainable weight and bias.
    dwconv3d_matches_the_cpu,
    |dev| {
        let (b, t, h, w, c) = (2, 4, 3, 3, 5);
        let k = Kernel3::new(3, 3, 3);
        let weight = param(dev, 3, (c, k.taps()), true);
        let bias = param(dev, 4, (c,), true);
        let mut r = run_op(dev, (b * t, h * w, c), |x| ops::dwconv3d(x, &weight, &bias, k, Grid { b, t, h, w }), &[("bias", &bias.value)]);
        // the weight gradient, read through a flat view of the same tensor
        let x = dev.tensor_from_vec(values(1, b * t * h * w * c), (b * t, h * w, c));
        let y = ops::dwconv3d(x.traced(Gradients::leaky()), &weight, &bias, k, Grid { b, t, h, w });
        let g = y.reshape_like(&(b * t * h * w * c,)).sum::<Rank0, _>().backward();
        r.push(("weight gradient".into(), g.get(&weight.value).as_vec()));
        r
    }
);

op_test!(
    /// Residual add, dropout-style masks and the mean over frames.
    elementwise_ops_match_the_cpu,
    |dev| {
        let other = dev.tensor_from_vec(values(5, 24), (4usize, 6usize));
        let mut r = run_op(dev, (4usize, 6usize), |x| ops::add(x, other.clone()), &[]);
        let factors: Vec<f32> = (0..4).map(|i| if i % 2 == 0 { 0.0 } else { 2.0 }).collect();
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::drop_rows(x, factors.clone()), &[]));
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::scale(x, 0.5), &[]));
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::mean_over_frames(x, 2), &[]));
        r
    }
);

op_test!(
    /// A trainable linear layer (cuBLAS y = x·Wᵀ + b, dW, db, dx) and a frozen one (dx only).
    linear_layers_match_the_cpu,
    |dev| {
        let w = param(dev, 3, (7usize, 5usize), true);
        let b = param(dev, 4, (7usize,), true);
        let mut r = run_op(dev, (2usize, 3usize, 5usize), |x| ops::linear(x, &w, Some(&b)), &[("bias", &b.value)]);
        let x = dev.tensor_from_vec(values(1, 30), (6usize, 5usize));
        let g = ops::linear(x.traced(Gradients::leaky()), &w, Some(&b)).sum::<Rank0, _>().backward();
        r.push(("weight gradient".into(), g.get(&w.value).as_vec()));
        r.extend(run_op(dev, (6usize, 5usize), |x| ops::frozen_linear(x, &w.value, Some(&b.value)), &[]));
        r
    }
);

op_test!(
    /// Attention over the tokens of a frame and over the frames of a token (AIM's T-MSA), 2 heads.
    attention_matches_the_cpu,
    |dev| {
        let (n, l, c) = (4usize, 5usize, 8usize);
        let mut r = run_op(dev, (n, l, 3 * c), |x| ops::self_attention(x, 2, SeqAxis::Tokens, c), &[]);
        r.extend(run_op(dev, (n, l, 3 * c), |x| ops::self_attention(x, 2, SeqAxis::Frames { frames: 2 }, c), &[]));
        r
    }
);

op_test!(
    /// Token ops: CLS / patch split and join, temporal shift, CLS averaging.
    token_ops_match_the_cpu,
    |dev| {
        let s = (4usize, 5usize, 6usize);
        let mut r = run_op(dev, s, |x| ops::cls_tokens(x), &[]);
        r.extend(run_op(dev, s, |x| ops::patch_tokens(x), &[]));
        let delta = dev.tensor_from_vec(values(7, 4 * 4 * 6), (4usize, 4usize, 6usize));
        r.extend(run_op(dev, s, |x| ops::add_to_patches(x, delta.clone().retaped::<OwnedTape<f32, D>>()), &[]));
        r.extend(run_op(dev, s, |x| ops::cls_shift(x, 2, 2, 2), &[]));
        r.extend(run_op(dev, s, |x| ops::average_cls(x, 2), &[]));
        r
    }
);

op_test!(
    /// Attention on cuBLAS at shapes where a softmax row spans several warp passes (50 tokens, more
    /// than a warp's 32 lanes), 4 heads of 16, and AIM's temporal attention over 8 frames of 2 videos
    /// (a batched GEMM per video and head, frames 7 token rows apart).
    attention_matches_the_cpu_at_longer_sequences,
    |dev| {
        let c = 64usize;
        let mut r = run_op(dev, (3usize, 50usize, 3 * c), |x| ops::self_attention(x, 4, SeqAxis::Tokens, c), &[]);
        r.extend(run_op(dev, (16usize, 7usize, 3 * c), |x| ops::self_attention(x, 4, SeqAxis::Frames { frames: 8 }, c), &[]));
        r
    }
);

/// Reads one gradient out of a backward pass.
type Reader<'a, D> = &'a dyn Fn(&Gradients<f32, D>) -> Vec<f32>;

/// `sum(y · r)` backward for fixed weights r: the gradients of `inputs`, by name.
fn grads_of<S: Shape, D: KitDevice<f32>>(
    y: Tensor<S, f32, D, OwnedTape<f32, D>>,
    inputs: &[(&str, Reader<'_, D>)],
) -> Run {
    let n = y.shape().num_elements();
    let mut run = vec![("output".to_string(), host(&y))];
    let r = y.device().tensor_from_vec(values(2, n), (n,));
    let g = (y.reshape_like(&(n,)) * r).sum::<Rank0, _>().backward();
    for (name, get) in inputs {
        run.push((format!("{name} gradient"), get(&g)));
    }
    run
}

op_test!(
    /// The token embedding (trainable class, positional and temporal embeddings; the temporal one
    /// on the patches only, on every token, and absent), VPT prompts (trainable) and patchify.
    embedding_prompts_and_patchify_match_the_cpu,
    |dev| {
        let (n, p, c, frames) = (4usize, 5usize, 6usize, 2usize);
        let cls = param(dev, 3, (c,), true);
        let pos = param(dev, 4, (p + 1, c), true);
        let tem = param(dev, 5, (frames, c), true);
        let x = dev.tensor_from_vec(values(1, n * p * c), (n, p, c));
        let mut r = Vec::new();
        for (on_cls, tem) in [(false, Some(&tem)), (true, Some(&tem)), (false, None)] {
            let y = ops::embed_tokens(x.clone().traced(Gradients::leaky()), &cls, &pos, tem, on_cls);
            r.extend(grads_of(
                y,
                &[
                    ("patches", &|g| g.get(&x).as_vec()),
                    ("class embedding", &|g| g.get(&cls.value).as_vec()),
                    ("positional embedding", &|g| g.get(&pos.value).as_vec()),
                ],
            ));
            if let Some(t) = tem {
                let y = ops::embed_tokens(x.clone().traced(Gradients::leaky()), &cls, &pos, Some(t), on_cls);
                r.extend(grads_of(y, &[("temporal embedding", &|g| g.get(&t.value).as_vec())]));
            }
        }
        let prompts = param(dev, 6, (3usize, c), true);
        let xp = dev.tensor_from_vec(values(7, n * 6 * c), (n, 6usize, c));
        let y = ops::set_prompts(xp.clone().traced(Gradients::leaky()), 2, &prompts);
        r.extend(grads_of(y, &[("x", &|g| g.get(&xp).as_vec()), ("prompts", &|g| g.get(&prompts.value).as_vec())]));
        let video = dev.tensor_from_vec(values(8, 2 * 3 * 2 * 8 * 8), (2usize, Const::<3>, 2usize, 8usize, 8usize));
        r.push(("patchify".into(), host(&video_adapters::clip::vit::patchify(&video, 4))));
        r
    }
);

/// The cross-entropy with label smoothing: loss and logit gradients.
#[test]
fn cross_entropy_matches_the_cpu() {
    let Some(g) = gpu("cross_entropy_matches_the_cpu") else { return };
    fn case<D: KitDevice<f32>>(dev: &D) -> Run {
        let z = dev.tensor_from_vec(values(1, 15), (3usize, 5usize));
        let loss = ops::cross_entropy(z.clone().traced(Gradients::leaky()), &[0, 4, 2], 0.1);
        let value = host(&loss);
        let grads = loss.backward();
        vec![("loss".into(), value), ("logit gradient".into(), grads.get(&z).as_vec())]
    }
    compare("cross_entropy", case(&Cpu::default()), case(&g), OP_TOL);
}

/// A model on a device: its logits (eval) and its trainable parameters' gradients for one batch.
fn model_run<D: KitDevice<f32>>(cfg: &ModelCfg, dev: &D, batch: usize) -> (Vec<f32>, GradSums<f32>) {
    let m = cfg.build_on(dev, &mut Init::seeded(7)).expect("the preset builds");
    let (t, res) = (cfg.frames(), cfg.clip().input_resolution);
    let video = Cpu::default().tensor_from_vec(values(9, batch * 3 * t * res * res), (batch, Const::<3>, t, res, res));
    let logits = m.logits(&video, &mut Ctx::eval()).as_vec();
    let mut sums = GradSums::new();
    let labels: Vec<usize> = (0..batch).map(|i| i % cfg.num_classes()).collect();
    // eval context: no dropout, so both devices see the same function
    m.accumulate(&video, &labels, 0.1, 1.0, &mut sums, &mut Ctx::eval());
    (logits, sums)
}

fn compare_models(test: &str, filter: impl Fn(&str) -> bool, batch: usize) {
    let Some(g) = gpu(test) else { return };
    let chosen: Vec<(String, ModelCfg)> = presets().into_iter().filter(|(n, _)| filter(n)).collect();
    assert!(!chosen.is_empty(), "{test}: no preset chosen");
    for (name, cfg) in chosen {
        let (lc, gc) = model_run(&cfg, &Cpu::default(), batch);
        let (lg, gg) = model_run(&cfg, &g, batch);
        assert_close(&format!("{name}: logits"), &lc, &lg, MODEL_TOL);
        assert_eq!(gc.keys().collect::<Vec<_>>(), gg.keys().collect::<Vec<_>>(), "{name}: trainable sets differ");
        assert!(!gc.is_empty(), "{name}: no trainable parameter");
        for (key, a) in &gc {
            assert_close(&format!("{name}: gradient of {key}"), a, &gg[key], MODEL_TOL);
        }
    }
}

/// Every tiny preset (baseline, ST-Adapter, AIM, MST-Adapter): logits and every trainable
/// parameter's gradient on CUDA match the CPU.
#[test]
fn tiny_presets_match_the_cpu() {
    compare_models("tiny_presets_match_the_cpu", |n| n.starts_with("tiny_"), 2);
}

/// The ViT-B/16 presets of the three papers and the frame-wise baseline, batch 1: logits and every
/// trainable parameter's gradient on CUDA match the CPU.
#[test]
fn vit_b16_presets_match_the_cpu() {
    let b16 =
        ["clip_baseline_vit_b16", "st_adapter_vit_b16_12x384", "aim_vitclip_base_k400", "mst_adapter_vit_b16_k400"];
    compare_models("vit_b16_presets_match_the_cpu", |n| b16.contains(&n), 1);
}

/// Issue 11: `bench --device cuda` measures the kit on the GPU (the small preset's step and
/// evaluation here, one round) and says so in its header; a measured cost table (ST-Adapter
/// Table 11) measures its rows there too and says so in its note.
#[test]
fn bench_and_cost_tables_run_on_the_gpu() {
    let Some(_g) = gpu("bench_and_cost_tables_run_on_the_gpu") else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--device", "cuda", "--only", "step:small,eval:small", "--rounds", "1", "--reps", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("The kit on device cuda:0") && text.contains("GPU memory in use"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_st_table11_inference_speed"))
        .args(["--device", "cuda", "--reps", "1", "--no-proxy", "--format", "markdown"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("cuda:0, wall-clock time after a device synchronisation"), "{text}");
}

/// `gpu_check` refuses the CPU, an unknown flag and (on a machine without a GPU) says there is no
/// device, without panicking.
#[test]
fn gpu_check_names_what_is_wrong() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_gpu_check")).args(args).output().unwrap();
    let out = run(&["--out", "/nonexistent-dir/x", "--device", "cpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("measures a CUDA device"), "{err}");
    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    if let Err(why) = cuda_devices() {
        let out = run(&["--out", "/tmp/gpu-check-test"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&why) && !err.contains("panicked"), "{err}");
    }
}
