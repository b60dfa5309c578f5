//! Pictures of the three methods, drawn from the model configs (SVG written by hand: boxes,
//! arrows, and text kept as text). For each method: the CLIP block with its adapters where the
//! K400 and the SSv2 presets put them, the adapter's insides with the shapes at ViT-B/16, and the
//! T×H×W token grid with what the method does along it (ST-Adapter's and MST-Adapter's temporal
//! kernels, AIM's two attentions, MST-Adapter's [CLS] shift). A changed preset changes its
//! picture; tests/book.rs keeps the committed SVGs current.

use std::fmt::Write as _;

use crate::aim::AimCfg;
use crate::mst_adapter::{Fusion, MstAdapterCfg, Placement, Pointwise};
use crate::st_adapter::{Position, StAdapterCfg};

// ---------------------------------------------------------------------------------------------
// A small SVG writer

pub(super) const FONT: &str = "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\"";
const FROZEN: &str = "#e8e8e8";
const ADAPTER: &str = "#fdd9a8";
const ADAPTER_EDGE: &str = "#d9822b";
const FREE: &str = "#ffffff";
pub(super) const STREAM: &str = "#555555";

/// What a box is: a frozen CLIP part, a trainable adapter, or a step without parameters.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Part {
    Frozen,
    Adapter,
    Free,
}

/// An SVG document being written (also used by the charts in `figures.rs`).
pub(super) struct Svg {
    pub(super) w: f64,
    pub(super) h: f64,
    pub(super) body: String,
}

impl Svg {
    pub(super) fn new(w: f64, h: f64) -> Self {
        Svg { w, h, body: String::new() }
    }

    /// The figure's title (bold, top left) and, when given, the line under it: every figure's
    /// first two lines, at the same places.
    pub(super) fn heading(&mut self, title: &str, subtitle: Option<&str>) {
        self.text(20.0, 26.0, 17.0, "start", "bold", title);
        if let Some(line) = subtitle {
            self.text(20.0, 46.0, 12.0, "start", "normal", line);
        }
    }

    pub(super) fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, weight: &str, s: &str) {
        let s = s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\" font-weight=\"{weight}\" {FONT}>{s}</text>"
        )
        .unwrap();
    }

    pub(super) fn rect(&mut self, (x, y, w, h): (f64, f64, f64, f64), fill: &str, stroke: &str, dash: bool) {
        let dash = if dash { " stroke-dasharray=\"4 3\"" } else { "" };
        writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\"{dash}/>"
        )
        .unwrap();
    }

    pub(super) fn cell(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\" stroke=\"#999\" stroke-width=\"0.4\"/>"
        )
        .unwrap();
    }

    pub(super) fn line(&mut self, pts: &[(f64, f64)], arrow: bool, color: &str) {
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let head = if arrow { " marker-end=\"url(#arrow)\"" } else { "" };
        writeln!(
            self.body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.4\"{head}/>",
            p.join(" ")
        )
        .unwrap();
    }

    pub(super) fn plus(&mut self, x: f64, y: f64) {
        writeln!(self.body, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"7\" fill=\"#fff\" stroke=\"{STREAM}\"/>").unwrap();
        self.line(&[(x - 4.0, y), (x + 4.0, y)], false, STREAM);
        self.line(&[(x, y - 4.0), (x, y + 4.0)], false, STREAM);
    }

    /// A labelled box centred at x, top at y; returns its bottom.
    pub(super) fn part(&mut self, cx: f64, y: f64, w: f64, label: &str, sub: &str, part: Part) -> f64 {
        let h = if sub.is_empty() { 26.0 } else { 38.0 };
        let (fill, stroke) = match part {
            Part::Frozen => (FROZEN, "#888"),
            Part::Adapter => (ADAPTER, ADAPTER_EDGE),
            Part::Free => (FREE, "#888"),
        };
        self.rect((cx - w / 2.0, y, w, h), fill, stroke, part == Part::Free);
        self.text(cx, y + 17.0, 13.0, "middle", "normal", label);
        if !sub.is_empty() {
            self.text(cx, y + 31.0, 11.0, "middle", "normal", sub);
        }
        y + h
    }

    pub(super) fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{STREAM}\"/></marker></defs>\n\
<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n{}</svg>\n",
            self.body,
            w = self.w,
            h = self.h.ceil()
        )
    }

    pub(super) fn legend(&mut self, x: f64, y: f64) {
        let mut x = x;
        for (label, part) in
            [("frozen CLIP", Part::Frozen), ("trained adapter", Part::Adapter), ("no parameters", Part::Free)]
        {
            let (fill, stroke) = match part {
                Part::Frozen => (FROZEN, "#888"),
                Part::Adapter => (ADAPTER, ADAPTER_EDGE),
                Part::Free => (FREE, "#888"),
            };
            self.rect((x, y - 11.0, 22.0, 14.0), fill, stroke, part == Part::Free);
            self.text(x + 28.0, y, 12.0, "start", "normal", label);
            x += 40.0 + 7.5 * label.len() as f64;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The block: the residual stream, its two branches, and the adapters where a preset puts them

/// A box of a block picture.
struct Box_ {
    label: String,
    sub: String,
    part: Part,
}

fn b(label: &str, sub: &str, part: Part) -> Box_ {
    Box_ { label: label.into(), sub: sub.into(), part }
}

/// One step of the residual stream.
enum Step {
    /// A box the stream passes through.
    Stream(Box_),
    /// `x + chain(x)`; a second chain in parallel joins the same sum, weighted by its label.
    Branch { chain: Vec<Box_>, parallel: Option<(Vec<Box_>, String)> },
}

const STREAM_W: f64 = 172.0;
const BRANCH_W: f64 = 150.0;

/// Draws a block's steps in a column starting at (x, y); returns the bottom.
fn draw_block(svg: &mut Svg, x: f64, y: f64, title: &str, steps: &[Step]) -> f64 {
    let sx = x + 80.0; // the residual stream
    let bx = sx + 165.0; // the branch column
    let px = bx + 160.0; // a parallel branch
    svg.text(x, y, 14.0, "start", "bold", title);
    let mut y = y + 16.0;
    svg.text(sx, y + 10.0, 12.0, "middle", "normal", "tokens in");
    y += 16.0;
    for step in steps {
        match step {
            Step::Stream(bx_) => {
                svg.line(&[(sx, y), (sx, y + 12.0)], true, STREAM);
                y = svg.part(sx, y + 12.0, STREAM_W, &bx_.label, &bx_.sub, bx_.part);
            }
            Step::Branch { chain, parallel } => {
                let fork = y + 10.0;
                svg.line(&[(sx, y), (sx, fork)], false, STREAM);
                // the chain, down the branch column
                svg.line(&[(sx, fork), (bx, fork), (bx, fork + 10.0)], true, STREAM);
                let mut by = fork + 10.0;
                for (i, c) in chain.iter().enumerate() {
                    if i > 0 {
                        svg.line(&[(bx, by), (bx, by + 10.0)], true, STREAM);
                        by += 10.0;
                    }
                    by = svg.part(bx, by, BRANCH_W, &c.label, &c.sub, c.part);
                }
                let mut bottom = by;
                if let Some((pchain, weight)) = parallel {
                    // the parallel chain reads the chain's first box's output (AIM: ln_2)
                    let first_bottom = fork + 10.0 + if chain[0].sub.is_empty() { 26.0 } else { 38.0 };
                    let branch_y = first_bottom + 5.0;
                    svg.line(&[(bx, branch_y), (px, branch_y), (px, branch_y + 10.0)], true, STREAM);
                    let mut py = branch_y + 10.0;
                    for (i, c) in pchain.iter().enumerate() {
                        if i > 0 {
                            svg.line(&[(px, py), (px, py + 10.0)], true, STREAM);
                            py += 10.0;
                        }
                        py = svg.part(px, py, BRANCH_W, &c.label, &c.sub, c.part);
                    }
                    bottom = bottom.max(py);
                    let join = bottom + 18.0;
                    svg.line(&[(px, py), (px, join), (sx + 8.0, join)], true, STREAM);
                    svg.text(px + 6.0, join - 5.0, 12.0, "start", "bold", weight);
                }
                let join = bottom + 18.0;
                svg.line(&[(bx, by), (bx, join), (sx + 8.0, join)], true, STREAM);
                svg.line(&[(sx, fork), (sx, join - 7.0)], true, STREAM);
                svg.plus(sx, join);
                y = join + 7.0;
            }
        }
    }
    svg.line(&[(sx, y), (sx, y + 14.0)], true, STREAM);
    svg.text(sx, y + 28.0, 12.0, "middle", "normal", "tokens out");
    y + 34.0
}

fn attn_branch(pre: Option<Box_>, post: Option<Box_>) -> Step {
    let mut chain = vec![b("ln_1", "LayerNorm", Part::Frozen)];
    chain.extend(pre);
    chain.push(b("attn", "MHSA over the tokens", Part::Frozen));
    chain.extend(post);
    Step::Branch { chain, parallel: None }
}

fn mlp_branch() -> Step {
    Step::Branch {
        chain: vec![b("ln_2", "LayerNorm", Part::Frozen), b("mlp", "c_fc, QuickGELU, c_proj", Part::Frozen)],
        parallel: None,
    }
}

/// ST-Adapter's block from its positions (K400: before the MLP; SSv2: before attention and MLP).
fn st_steps(cfg: &StAdapterCfg) -> Vec<Step> {
    let adapter = |key: &str| {
        b(
            &format!("adapter_{key}"),
            &format!("fc1, DWConv3D {}×{}×{}, fc2", cfg.kernel.t, cfg.kernel.h, cfg.kernel.w),
            Part::Adapter,
        )
    };
    let mut steps = Vec::new();
    if cfg.positions.contains(&Position::PreAttn) {
        steps.push(Step::Stream(adapter("pre_attn")));
    }
    steps.push(attn_branch(None, None));
    if cfg.positions.contains(&Position::PreMlp) {
        steps.push(Step::Stream(adapter("pre_mlp")));
    }
    steps.push(mlp_branch());
    if cfg.positions.contains(&Position::PostMlp) {
        steps.push(Step::Stream(adapter("post_mlp")));
    }
    steps
}

/// AIM's block from its components: T-MSA with T_Adapter (and T_Adapter_in for SSv2), S-MSA with
/// S_Adapter, MLP_Adapter beside the MLP weighted by s.
fn aim_steps(cfg: &AimCfg) -> Vec<Step> {
    let h = cfg.hidden();
    let c = cfg.clip.width;
    let mut steps = Vec::new();
    if cfg.temporal {
        let mut chain = vec![b("ln_1", "the same LayerNorm", Part::Frozen)];
        if cfg.num_tadapter == 2 {
            chain.push(b("T_Adapter_in", &format!("{c}→{h}→{c}, with skip"), Part::Adapter));
        }
        chain.push(b("attn as T-MSA", "over the T frames", Part::Frozen));
        chain.push(b("T_Adapter", &format!("{c}→{h}→{c}, no skip"), Part::Adapter));
        steps.push(Step::Branch { chain, parallel: None });
    }
    let s_adapter = cfg.spatial.then(|| b("S_Adapter", &format!("{c}→{h}→{c}, with skip"), Part::Adapter));
    steps.push(attn_branch(None, s_adapter));
    let mut mlp = mlp_branch();
    if cfg.joint {
        if let Step::Branch { parallel, .. } = &mut mlp {
            *parallel = Some((
                vec![b("MLP_Adapter", &format!("{c}→{h}→{c}, no skip"), Part::Adapter)],
                format!("× s = {}", cfg.adapter_scale),
            ));
        }
    }
    steps.push(mlp);
    steps
}

/// MST-Adapter's block: the [CLS] shift before the attention, adapters where its placement says.
fn mst_steps(cfg: &MstAdapterCfg) -> Vec<Step> {
    let adapter = |key: &str| b(&format!("MST-Adapter ({key})"), "down, 3 branches, 1×1×1, up", Part::Adapter);
    let mut steps = Vec::new();
    if let Some((next, prev)) = cfg.shift_channels() {
        steps.push(Step::Stream(b(
            "[CLS] shift",
            &format!("{next} + {prev} of {} channels", cfg.clip.width),
            Part::Free,
        )));
    }
    match cfg.placement {
        Placement::PostResidual => {
            steps.push(attn_branch(None, None));
            steps.push(Step::Stream(adapter("attn")));
            steps.push(mlp_branch());
            steps.push(Step::Stream(adapter("mlp")));
        }
        Placement::PriorLn => {
            steps.push(Step::Stream(adapter("attn")));
            steps.push(attn_branch(None, None));
            steps.push(Step::Stream(adapter("mlp")));
            steps.push(mlp_branch());
        }
        Placement::PriorBranch | Placement::PostBranch => {
            let pre = cfg.placement == Placement::PriorBranch;
            let a = |k| Some(adapter(k));
            steps.push(if pre { attn_branch(a("attn"), None) } else { attn_branch(None, a("attn")) });
            let mut chain = vec![b("ln_2", "LayerNorm", Part::Frozen)];
            if pre {
                chain.push(adapter("mlp"));
            }
            chain.push(b("mlp", "c_fc, QuickGELU, c_proj", Part::Frozen));
            if !pre {
                chain.push(adapter("mlp"));
            }
            steps.push(Step::Branch { chain, parallel: None });
        }
    }
    steps
}

/// The height a block picture needs.
fn block_height(steps: &[Step]) -> f64 {
    let mut svg = Svg::new(0.0, 0.0);
    draw_block(&mut svg, 0.0, 0.0, "", steps)
}

// ---------------------------------------------------------------------------------------------
// The adapter's insides: a left-to-right pipeline, shapes under the arrows

/// A stage of an adapter: one box, or several side by side (branches), then the shape after it.
struct Stage {
    boxes: Vec<Box_>,
    shape: String,
}

fn stage(boxes: Vec<Box_>, shape: impl Into<String>) -> Stage {
    Stage { boxes, shape: shape.into() }
}

/// Draws stages left to right, in as many rows as the width needs, each stage's output shape
/// under it; returns the bottom.
fn draw_pipeline(svg: &mut Svg, x: f64, y: f64, title: &str, input: &str, stages: &[Stage], note: &str) -> f64 {
    svg.text(x, y, 14.0, "start", "bold", title);
    let bw = 156.0;
    let gap = 44.0;
    let per_row = ((svg.w - x - 20.0 + gap) / (bw + gap)).floor().max(1.0) as usize;
    let mut y = y + 16.0;
    svg.text(x, y + 12.0, 12.0, "start", "normal", &format!("in: {input}"));
    y += 26.0;
    for (r, row) in stages.chunks(per_row).enumerate() {
        let n = row.iter().map(|s| s.boxes.len()).max().unwrap_or(1) as f64;
        let row_h = n * 46.0;
        let mid = y + row_h / 2.0;
        if r > 0 {
            svg.line(&[(x - 16.0, mid), (x - 2.0, mid)], true, STREAM);
        }
        for (i, s) in row.iter().enumerate() {
            let cx = x + bw / 2.0 + i as f64 * (bw + gap);
            let k = s.boxes.len() as f64;
            let side = if k > 1.0 { 10.0 } else { 0.0 };
            for (j, bx) in s.boxes.iter().enumerate() {
                let top = mid - k * 23.0 + j as f64 * 46.0 + 4.0;
                svg.part(cx, top, bw - 2.0 * side, &bx.label, &bx.sub, bx.part);
                if k > 1.0 {
                    let (l, r) = (cx - bw / 2.0, cx + bw / 2.0);
                    svg.line(&[(l, mid), (l, top + 19.0), (l + side, top + 19.0)], false, STREAM);
                    svg.line(&[(r - side, top + 19.0), (r, top + 19.0), (r, mid)], false, STREAM);
                }
            }
            let last = i + 1 == row.len();
            let x1 = cx + bw / 2.0;
            let x2 = if last { x1 + 14.0 } else { x1 + gap };
            svg.line(&[(x1, mid), (x2, mid)], true, STREAM);
            svg.text(cx, mid + k * 23.0 + 16.0, 11.0, "middle", "normal", &format!("→ {}", s.shape));
        }
        y += row_h + 40.0;
    }
    if !note.is_empty() {
        for (i, l) in note.split('\n').enumerate() {
            svg.text(x, y + 4.0 + 16.0 * i as f64, 12.0, "start", "normal", l);
        }
        y += 16.0 * note.split('\n').count() as f64 + 4.0;
    }
    y
}

fn st_adapter_stages(cfg: &StAdapterCfg) -> (String, Vec<Stage>, String) {
    let (c, w) = (cfg.clip.width, cfg.adapter_width);
    let g = cfg.clip.input_resolution / cfg.clip.patch_size;
    let t = cfg.frames;
    let k = cfg.kernel;
    (
        format!("x (B·T, {}, {c}) with T = {t}: 1 [CLS] + {g}×{g} patch tokens per frame", 1 + g * g),
        vec![
            stage(vec![b("patch tokens", "x[:, 1:, :]", Part::Free)], format!("(B·T, {}, {c})", g * g)),
            stage(vec![b("fc1", &format!("{c} → {w}"), Part::Adapter)], format!("(B·T, {}, {w})", g * g)),
            stage(vec![b("to the grid", "reshape, permute", Part::Free)], format!("(B, {w}, {t}, {g}, {g})")),
            stage(vec![b("conv", &format!("DWConv3D {}×{}×{}", k.t, k.h, k.w), Part::Adapter)], format!("(B, {w}, {t}, {g}, {g})")),
            stage(vec![b("fc2", &format!("{w} → {c}"), Part::Adapter)], format!("(B·T, {}, {c})", g * g)),
            stage(vec![b("add to x[:, 1:, :]", "the CLS row untouched", Part::Free)], format!("(B·T, {}, {c})", 1 + g * g)),
        ],
        "No activation between fc1 and fc2 (the official code has none, the paper's f). The conv and all biases start at zero: a fresh adapter is an identity.".into(),
    )
}

fn aim_stages(cfg: &AimCfg) -> (String, Vec<Stage>, String) {
    let (c, h) = (cfg.clip.width, cfg.hidden());
    (
        format!("the block's tokens, (B·T, L, {c}) or, for T_Adapter, (L·B, T, {c})"),
        vec![
            stage(vec![b("D_fc1", &format!("{c} → {h}"), Part::Adapter)], format!("(…, {h})")),
            stage(vec![b("GELU", "exact (erf)", Part::Free)], format!("(…, {h})")),
            stage(vec![b("D_fc2", &format!("{h} → {c}, zero init"), Part::Adapter)], format!("(…, {c})")),
            stage(vec![b("+ x", "with skip only", Part::Free)], format!("(…, {c})")),
        ],
        format!(
            "Hidden width {h} = {c} × {} (mlp_ratio). S_Adapter and T_Adapter_in add their input back (skip); T_Adapter and\nMLP_Adapter do not: their outputs go to the block's residual sums.",
            cfg.mlp_ratio
        ),
    )
}

fn mst_stages(cfg: &MstAdapterCfg) -> (String, Vec<Stage>, String) {
    let (c, w) = (cfg.clip.width, cfg.adapter_width);
    let g = cfg.clip.input_resolution / cfg.clip.patch_size;
    let t = cfg.frames;
    let fusion = match cfg.fusion {
        Fusion::Learned { init } => format!("× Wᵢ (learned, {init})"),
        Fusion::Average => "averaged".into(),
    };
    let mut branches: Vec<Box_> =
        cfg.branches.iter().map(|k| b(&format!("DWConv3D {}×{}×{}", k.t, k.h, k.w), &fusion, Part::Adapter)).collect();
    branches.push(b("identity", "V_down", Part::Free));
    let pointwise = match cfg.pointwise {
        Pointwise::Dense => Some(b("1×1×1 conv, dense", &format!("{w} → {w}, + z"), Part::Adapter)),
        Pointwise::Depthwise => Some(b("1×1×1 conv, depthwise", &format!("{w} scales, + z"), Part::Adapter)),
        Pointwise::None => None,
    };
    let mut stages = vec![
        stage(vec![b("patch tokens", "x[:, 1:, :]", Part::Free)], format!("(B·T, {}, {c})", g * g)),
        stage(vec![b("downProjection", &format!("{c} → {w}"), Part::Adapter)], format!("(B, {w}, {t}, {g}, {g})")),
        stage(branches, format!("z = Σ, (B, {w}, {t}, {g}, {g})")),
    ];
    if let Some(p) = pointwise {
        stages.push(stage(vec![p], format!("y, (B, {w}, {t}, {g}, {g})")));
    }
    stages.push(stage(
        vec![b("upProjection", &format!("{w} → {c}, zero init"), Part::Adapter)],
        format!("(B·T, {}, {c})", g * g),
    ));
    stages.push(stage(
        vec![b("add to x[:, 1:, :]", "the CLS row untouched", Part::Free)],
        format!("(B·T, {}, {c})", 1 + g * g),
    ));
    (
        format!("V, (B·T, {}, {c}) with T = {t}", 1 + g * g),
        stages,
        "Branch kernels, the 1×1×1 conv's kind and the zero init are the kit's assumptions (no code was released; see the chapter).".into(),
    )
}

// ---------------------------------------------------------------------------------------------
// The token grid: T frames of 1 CLS + H×W patch tokens

/// What to mark on the grid.
enum GridMark {
    /// A temporal kernel at one patch position: (kT, colour, label) per kernel.
    Kernels(Vec<(usize, &'static str, String)>),
    /// AIM: T-MSA along one position's frames (CLS included), S-MSA over one frame.
    Attention,
}

const CELL: f64 = 5.0;

fn draw_grid(svg: &mut Svg, x: f64, y: f64, title: &str, frames: usize, g: usize, mark: &GridMark) -> f64 {
    svg.text(x, y, 14.0, "start", "bold", title);
    let y0 = y + 34.0;
    let fw = g as f64 * CELL;
    let step = fw + 26.0;
    let (pi, pj) = (g / 2, g / 2); // the marked patch position
    let centre = frames / 2;
    for t in 0..frames {
        let fx = x + 30.0 + t as f64 * step;
        svg.text(fx + fw / 2.0, y0 - 16.0, 11.0, "middle", "normal", &format!("t = {}", t + 1));
        // the CLS token, above the grid
        let cls_fill = match mark {
            GridMark::Attention => "#9ecae1",
            _ => "#fff",
        };
        svg.cell(fx + fw / 2.0 - CELL, y0 - 10.0, 2.0 * CELL, 2.0 * CELL * 0.6, cls_fill);
        for i in 0..g {
            for j in 0..g {
                let mut fill = "#fff";
                match mark {
                    GridMark::Kernels(ks) => {
                        for (k, (kt, colour, _)) in ks.iter().enumerate().rev() {
                            let half = kt / 2;
                            let row = pi + k; // each kernel on its own row, to tell them apart
                            if i == row && j == pj && t + half >= centre && t <= centre + half {
                                fill = colour;
                            }
                        }
                    }
                    GridMark::Attention => {
                        if t == centre {
                            fill = "#fdd9a8";
                        }
                        if i == pi && j == pj {
                            fill = "#9ecae1";
                        }
                    }
                }
                svg.cell(fx + j as f64 * CELL, y0 + 4.0 + i as f64 * CELL, CELL, CELL, fill);
            }
        }
    }
    let mut y = y0 + 4.0 + fw + 20.0;
    let legend: Vec<(String, &str)> = match mark {
        GridMark::Kernels(ks) => ks.iter().map(|(_, c, l)| (l.clone(), *c)).collect(),
        GridMark::Attention => vec![
            ("T-MSA: one token position (and the CLS tokens) across the T frames".into(), "#9ecae1"),
            (format!("S-MSA: the 1 + {g}×{g} tokens of one frame"), "#fdd9a8"),
        ],
    };
    for (label, colour) in legend {
        svg.cell(x + 30.0, y - 10.0, 12.0, 12.0, colour);
        svg.text(x + 50.0, y, 12.0, "start", "normal", &label);
        y += 18.0;
    }
    svg.text(
        x + 30.0,
        y + 4.0,
        12.0,
        "start",
        "normal",
        &format!("{frames} frames × (1 [CLS] + {g}×{g} patches), frame t of video b in row b·T + t of the (B·T, L, C) stream"),
    );
    y + 14.0
}

/// MST-Adapter's [CLS] shift: the CLS channels of frames t−1, t, t+1 and where frame t's come from.
fn draw_cls_shift(svg: &mut Svg, x: f64, y: f64, cfg: &MstAdapterCfg) -> f64 {
    let Some((next, prev)) = cfg.shift_channels() else { return y };
    let c = cfg.clip.width;
    svg.text(x, y, 14.0, "start", "bold", "The [CLS] token shift (before each block's attention)");
    let bar = 520.0;
    let px = |ch: usize| x + 110.0 + bar * ch as f64 / c as f64;
    let rows = [("frame t − 1", 0.0), ("frame t", 1.0), ("frame t + 1", 2.0)];
    let y0 = y + 22.0;
    for (label, r) in rows {
        let ry = y0 + r * 38.0;
        svg.text(x + 100.0, ry + 13.0, 12.0, "end", "normal", label);
        svg.cell(px(0), ry, px(next) - px(0), 18.0, "#9ecae1");
        svg.cell(px(next), ry, px(next + prev) - px(next), 18.0, "#c7e9c0");
        svg.cell(px(next + prev), ry, px(c) - px(next + prev), 18.0, "#f4f4f4");
    }
    // frame t takes channels [0, next) from t+1 and [next, next+prev) from t−1
    let ty = y0 + 38.0;
    svg.line(&[(px(next / 2), y0 + 2.0 * 38.0), (px(next / 2), ty + 20.0)], true, STREAM);
    svg.line(&[(px(next + prev / 2), y0 + 18.0), (px(next + prev / 2), ty - 2.0)], true, STREAM);
    svg.text(px(0), ty + 34.0 + 38.0, 11.0, "start", "normal", &format!("channels 0–{}: from frame t + 1", next - 1));
    svg.text(
        px(next) + 10.0,
        y0 - 5.0,
        11.0,
        "start",
        "normal",
        &format!("channels {}–{}: from frame t − 1", next, next + prev - 1),
    );
    svg.text(
        px(c),
        ty + 34.0 + 38.0,
        11.0,
        "end",
        "normal",
        &format!("channels {}–{} and every patch token: unchanged", next + prev, c - 1),
    );
    ty + 34.0 + 38.0 + 20.0
}

// ---------------------------------------------------------------------------------------------
// The pictures

const WIDTH: f64 = 1000.0;

/// Two block pictures side by side (K400 and SSv2 presets), then the adapter, then the grid.
fn method_picture(
    name: &str,
    k400: (&str, Vec<Step>),
    ssv2: (&str, Vec<Step>),
    adapter: (String, Vec<Stage>, String),
    grid: (usize, usize, GridMark),
    extra: Option<&MstAdapterCfg>,
) -> String {
    // measure, then draw
    let block_h = block_height(&k400.1).max(block_height(&ssv2.1));
    let mut probe = Svg::new(WIDTH, 0.0);
    let pipe_h = draw_pipeline(&mut probe, 20.0, 0.0, "", &adapter.0, &adapter.1, &adapter.2);
    let grid_h = draw_grid(&mut probe, 20.0, 0.0, "", grid.0, grid.1, &grid.2);
    let shift_h = extra.map_or(0.0, |c| draw_cls_shift(&mut probe, 20.0, 0.0, c) + 20.0);
    let h = 40.0 + block_h + 40.0 + pipe_h + 40.0 + grid_h + shift_h + 50.0;
    let mut svg = Svg::new(WIDTH, h);
    svg.heading(&format!("{name}: where the adapters go, what is inside, and along which axes"), None);
    let y = 56.0;
    draw_block(&mut svg, 20.0, y, k400.0, &k400.1);
    draw_block(&mut svg, WIDTH / 2.0 + 10.0, y, ssv2.0, &ssv2.1);
    let y = y + block_h + 30.0;
    let y = draw_pipeline(
        &mut svg,
        20.0,
        y,
        "The adapter, with its shapes at ViT-B/16 (B videos, T frames)",
        &adapter.0,
        &adapter.1,
        &adapter.2,
    );
    let y = draw_grid(&mut svg, 20.0, y + 30.0, "The token grid", grid.0, grid.1, &grid.2);
    let y = match extra {
        Some(c) => draw_cls_shift(&mut svg, 20.0, y + 30.0, c),
        None => y,
    };
    svg.legend(20.0, y + 30.0);
    svg.finish()
}

/// ST-Adapter: `clip_vit_base_patch16_adapter12x384` (K400) and `…24x384` (SSv2).
pub fn st_adapter() -> String {
    let k400 = StAdapterCfg::vit_b16_12x384();
    let ssv2 = StAdapterCfg::vit_b16_24x384();
    let g = k400.clip.input_resolution / k400.clip.patch_size;
    let k = k400.kernel;
    method_picture(
        "ST-Adapter",
        ("K400 preset (vit_b16_12x384)", st_steps(&k400)),
        ("SSv2 preset (vit_b16_24x384)", st_steps(&ssv2)),
        st_adapter_stages(&k400),
        (
            k400.frames,
            g,
            GridMark::Kernels(vec![(
                k.t,
                "#fdae6b",
                format!(
                    "DWConv3D {}×{}×{}: one channel, one patch position, {} frames (the CLS token is not in the grid)",
                    k.t, k.h, k.w, k.t
                ),
            )]),
        ),
        None,
    )
}

/// AIM: `vitclip_base_k400` and `vitclip_base_sthv2`.
pub fn aim() -> String {
    let k400 = AimCfg::vitclip_base_k400();
    let ssv2 = AimCfg::vitclip_base_sthv2();
    let g = k400.clip.input_resolution / k400.clip.patch_size;
    method_picture(
        "AIM",
        ("K400 preset (vitclip_base_k400)", aim_steps(&k400)),
        ("SSv2 preset (vitclip_base_sthv2)", aim_steps(&ssv2)),
        aim_stages(&k400),
        (k400.frames, g, GridMark::Attention),
        None,
    )
}

/// MST-Adapter: `vit_b16_k400` and `vit_b16_ssv2` (the same placement; the paper gives one).
pub fn mst_adapter() -> String {
    let k400 = MstAdapterCfg::vit_b16_k400();
    let ssv2 = MstAdapterCfg::vit_b16_ssv2();
    let g = k400.clip.input_resolution / k400.clip.patch_size;
    let colours = ["#fdae6b", "#a1d99b", "#bcbddc", "#fdd0a2"];
    let kernels = k400
        .branches
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.t,
                colours[i % colours.len()],
                format!("branch {}: DWConv3D {}×{}×{} ({} frames)", i + 1, k.t, k.h, k.w, k.t),
            )
        })
        .collect();
    method_picture(
        "MST-Adapter",
        ("K400 preset (vit_b16_k400)", mst_steps(&k400)),
        ("SSv2 preset (vit_b16_ssv2)", mst_steps(&ssv2)),
        mst_stages(&k400),
        (k400.frames, g, GridMark::Kernels(kernels)),
        Some(&k400),
    )
}

/// The three K400 blocks side by side, for the introduction.
pub fn overview() -> String {
    let cols: [(&str, Vec<Step>); 3] = [
        ("ST-Adapter (K400)", st_steps(&StAdapterCfg::vit_b16_12x384())),
        ("AIM (K400)", aim_steps(&AimCfg::vitclip_base_k400())),
        ("MST-Adapter (K400)", mst_steps(&MstAdapterCfg::vit_b16_k400())),
    ];
    // AIM's block needs a parallel column: about 330, 480 and 330 px
    let xs = [10.0, 350.0, 840.0];
    let h = cols.iter().map(|c| block_height(&c.1)).fold(0.0, f64::max) + 90.0;
    let mut svg = Svg::new(1180.0, h);
    svg.text(10.0, 24.0, 17.0, "start", "bold", "One CLIP block, three ways to adapt it (K400 presets)");
    for (x, (title, steps)) in xs.iter().zip(&cols) {
        draw_block(&mut svg, *x, 54.0, title, steps);
    }
    svg.legend(10.0, h - 14.0);
    svg.finish()
}
