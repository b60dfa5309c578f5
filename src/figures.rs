//! The book's figures, drawn by our code as SVG (text stays text, no font files): the trainable
//! parameters of the three methods by part on one scale, Kinetics-400 accuracy against tunable
//! parameters (published and ours), every computed figure of every table against the printed one,
//! the measured cost ratios against the published ones, the architecture pictures ([`arch`]), and
//! the embedded benchmark's accuracy and loss curves ([`proxy`]). `cargo run --release --bin book_assets` writes them; tests/book.rs keeps them
//! current.

pub mod arch;
pub mod proxy;

use std::fmt::Write as _;

use arch::{Svg, FONT};

use crate::aim::AimCfg;
use crate::mst_adapter::{Fusion, MstAdapterCfg, Pointwise};
use crate::repro::engine::{Kind, Mark, Value};
use crate::repro::published::{self, Cell};
use crate::st_adapter::{Position, StAdapterCfg};

/// (file name, SVG) of every figure.
pub fn all() -> anyhow::Result<Vec<(String, String)>> {
    Ok(vec![
        ("k400_accuracy_vs_tunable.svg".to_string(), k400_bubbles()?),
        ("breakdown_trainable.svg".to_string(), breakdown_bars()?),
        ("published_vs_ours.svg".to_string(), published_vs_ours()?),
        ("measured_vs_published.svg".to_string(), measured_vs_published()?),
        ("arch_st_adapter.svg".to_string(), arch::st_adapter()),
        ("arch_aim.svg".to_string(), arch::aim()),
        ("arch_mst_adapter.svg".to_string(), arch::mst_adapter()),
        ("arch_overview.svg".to_string(), arch::overview()),
        ("bench_ratios.svg".to_string(), bench_ratios(&crate::bench::Report::load_committed()?)),
        ("proxy_accuracy_vs_tunable.svg".to_string(), proxy::accuracy_vs_tunable(&proxy_runs()?)),
        ("proxy_loss_curves.svg".to_string(), proxy::loss_curves(&proxy_runs()?)),
    ])
}

/// The committed proxy runs (`book/src/measured/proxy_runs.json`).
fn proxy_runs() -> anyhow::Result<crate::proxy::runs::Runs> {
    crate::proxy::runs::Runs::load_committed()
}

// ---------------------------------------------------------------------------------------------
// Axes and labels

/// An axis: data range, pixel range, linear or logarithmic.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    p0: f64,
    p1: f64,
    log: bool,
}

impl Axis {
    fn at(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.p0 + f * (self.p1 - self.p0)
    }
}

fn fmt_tick(v: f64) -> String {
    if v >= 1.0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws the frame, ticks, grid and axis titles of a chart.
fn axes(svg: &mut Svg, x: Axis, y: Axis, xticks: &[f64], yticks: &[f64], xtitle: &str, ytitle: &str) {
    let (l, r, t, b) = (x.p0, x.p1, y.p1, y.p0);
    for &v in xticks {
        let px = x.at(v);
        writeln!(svg.body, "<line x1=\"{px:.1}\" y1=\"{t:.1}\" x2=\"{px:.1}\" y2=\"{b:.1}\" stroke=\"#ddd\"/>")
            .unwrap();
        svg.text(px, b + 18.0, 13.0, "middle", "normal", &fmt_tick(v));
    }
    for &v in yticks {
        let py = y.at(v);
        writeln!(svg.body, "<line x1=\"{l:.1}\" y1=\"{py:.1}\" x2=\"{r:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>")
            .unwrap();
        svg.text(l - 6.0, py + 4.5, 13.0, "end", "normal", &fmt_tick(v));
    }
    writeln!(
        svg.body,
        "<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#444\"/>",
        r - l,
        b - t
    )
    .unwrap();
    svg.text((l + r) / 2.0, b + 40.0, 14.0, "middle", "normal", xtitle);
    let (cx, cy) = (l - 52.0, (t + b) / 2.0);
    writeln!(
        svg.body,
        "<text x=\"{cx:.1}\" y=\"{cy:.1}\" font-size=\"14\" text-anchor=\"middle\" transform=\"rotate(-90 {cx:.1} {cy:.1})\" {FONT}>{}</text>",
        ytitle
    )
    .unwrap();
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A circle (filled or hollow) with a hover title.
fn dot(svg: &mut Svg, x: f64, y: f64, r: f64, fill: &str, stroke: &str, title: &str) {
    writeln!(
        svg.body,
        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r:.1}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.2\"><title>{}</title></circle>",
        esc(title)
    )
    .unwrap();
}

fn square(svg: &mut Svg, x: f64, y: f64, r: f64, fill: &str, title: &str) {
    writeln!(
        svg.body,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" stroke=\"#333\" stroke-width=\"0.6\"><title>{}</title></rect>",
        x - r,
        y - r,
        2.0 * r,
        2.0 * r,
        esc(title)
    )
    .unwrap();
}

/// The rectangle (x0, y0, x1, y1) that text of this size covers when drawn at (x, y) with this
/// anchor: 0.58 of the size per character wide, from one size above the baseline to 2 px below.
fn text_box(x: f64, y: f64, size: f64, anchor: &str, text: &str) -> (f64, f64, f64, f64) {
    let w = 0.58 * size * text.chars().count() as f64;
    let x0 = match anchor {
        "start" => x,
        "end" => x - w,
        _ => x - w / 2.0,
    };
    (x0, y - size, x0 + w, y + 2.0)
}

/// Places labels next to points without overlapping each other or the points: tries eight
/// positions around each point and keeps the first free one (else the least crowded).
struct Labels {
    taken: Vec<(f64, f64, f64, f64)>,
}

impl Labels {
    fn new(points: &[(f64, f64, f64)]) -> Self {
        Labels { taken: points.iter().map(|&(x, y, r)| (x - r, y - r, x + r, y + r)).collect() }
    }

    /// Places the label at the free (else the least crowded) position; with `always` false, only
    /// where it overlaps nothing. Returns whether it placed it.
    fn put(
        &mut self,
        svg: &mut Svg,
        (x, y, r): (f64, f64, f64),
        size: f64,
        text: &str,
        bounds: (f64, f64, f64, f64),
        always: bool,
    ) -> bool {
        let h = size;
        let gap = r + 3.0;
        let candidates = [
            (x + gap, y + h / 2.0 - 2.0, "start"),
            (x - gap, y + h / 2.0 - 2.0, "end"),
            (x, y - gap - 2.0, "middle"),
            (x, y + gap + h, "middle"),
            (x + gap * 0.7, y - gap * 0.7, "start"),
            (x - gap * 0.7, y - gap * 0.7, "end"),
            (x + gap * 0.7, y + gap * 0.7 + h, "start"),
            (x - gap * 0.7, y + gap * 0.7 + h, "end"),
        ];
        let rect = |(tx, ty, a): (f64, f64, &str)| text_box(tx, ty, size, a, text);
        let overlap = |a: (f64, f64, f64, f64), b: &(f64, f64, f64, f64)| {
            (a.2.min(b.2) - a.0.max(b.0)).max(0.0) * (a.3.min(b.3) - a.1.max(b.1)).max(0.0)
        };
        let inside = |a: (f64, f64, f64, f64)| a.0 >= bounds.0 && a.2 <= bounds.2 && a.1 >= bounds.1 && a.3 <= bounds.3;
        let score = |c: (f64, f64, &str)| {
            let b = rect(c);
            self.taken.iter().map(|t| overlap(b, t)).sum::<f64>() + if inside(b) { 0.0 } else { 1e6 }
        };
        let best = candidates.iter().copied().min_by(|a, b| score(*a).total_cmp(&score(*b))).unwrap_or(candidates[0]);
        if !always && score(best) > 0.0 {
            return false;
        }
        self.taken.push(rect(best));
        svg.text(best.0, best.1, size, best.2, "normal", text);
        true
    }

    /// Reserves a rectangle (x0, y0, x1, y1) that no label may cover: fixed text, for example.
    fn block(&mut self, rect: (f64, f64, f64, f64)) {
        self.taken.push(rect);
    }

    fn place(&mut self, svg: &mut Svg, point: (f64, f64, f64), size: f64, text: &str, bounds: (f64, f64, f64, f64)) {
        self.put(svg, point, size, text, bounds, true);
    }

    /// Places the label only where it overlaps nothing; returns whether it did.
    fn place_if_free(
        &mut self,
        svg: &mut Svg,
        point: (f64, f64, f64),
        size: f64,
        text: &str,
        bounds: (f64, f64, f64, f64),
    ) -> bool {
        self.put(svg, point, size, text, bounds, false)
    }
}

fn num(c: Option<&Cell>) -> Option<f64> {
    match c {
        Some(Cell::Num(v)) => Some(*v),
        _ => None,
    }
}

/// "ST-Adapter [25]ViT-B/16" → "ST-Adapter ViT-B/16"; drops citations.
fn short(label: &str) -> String {
    let mut s = String::new();
    let mut depth = 0;
    for ch in label.chars() {
        match ch {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                s.push(' ');
            }
            _ if depth == 0 => s.push(ch),
            _ => {}
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// Kinetics-400: top-1 against tunable parameters

/// Published Kinetics-400 top-1 against tunable parameters (log scale), bubble area ∝ GFLOPs, from
/// the AIM and MST-Adapter K400 tables (rows that print all three numbers); for the rows the kit
/// computes, a hollow bubble at our counted tunable parameters and GFLOPs (same top-1).
fn k400_bubbles() -> anyhow::Result<String> {
    let sources = [
        ("aim", "table2_k400", "aim_table2_k400", "AIM Table 2", "#1f77b4"),
        ("mst_adapter", "table1_k400", "table1_k400", "MST-Adapter Table 1", "#d62728"),
    ];
    struct P {
        tunable: f64,
        top1: f64,
        gflops: f64,
        label: String,
        colour: &'static str,
        source: &'static str,
        ours: Option<(f64, f64)>,
    }
    let mut points = Vec::new();
    for (paper, file, binary, name, colour) in sources {
        let t = published::load(paper, file)?;
        let runner = crate::repro::all().into_iter().find(|(n, _)| *n == binary).map(|(_, r)| r).unwrap();
        let rep = crate::repro::counts_report(runner)?;
        for r in &t.rows {
            let (Some(p), Some(a), Some(g)) =
                (num(r.cells.get("tunable_params")), num(r.cells.get("top1")), num(r.cells.get("gflops")))
            else {
                continue;
            };
            let row = rep.rows.iter().find(|x| x.id == r.id).unwrap();
            let ours = |key| rep.cell_by_key(row, key, &Kind::Ours).and_then(Value::number);
            let ours = ours("tunable_params").zip(ours("gflops"));
            points.push(P { tunable: p, top1: a, gflops: g, label: short(&r.label), colour, source: name, ours });
        }
    }
    let (w, h) = (1000.0, 640.0);
    let mut svg = Svg::new(w, h);
    svg.heading("Kinetics-400: top-1 against tunable parameters; bubble area ∝ GFLOPs", None);
    let lo = points.iter().map(|p| p.tunable).fold(f64::MAX, f64::min);
    let hi = points.iter().map(|p| p.tunable).fold(0.0, f64::max);
    let x = Axis { lo: (lo * 0.5).max(0.01), hi: hi * 2.5, p0: 90.0, p1: w - 30.0, log: true };
    let (ymin, ymax) = points.iter().fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.top1), b.max(p.top1)));
    let y = Axis { lo: ymin.floor() - 1.0, hi: ymax.ceil() + 1.0, p0: h - 150.0, p1: 50.0, log: false };
    let xticks: Vec<f64> = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
        .into_iter()
        .filter(|v| *v >= x.lo && *v <= x.hi)
        .collect();
    let yticks: Vec<f64> = (y.lo as i64..=y.hi as i64).filter(|v| v % 2 == 0).map(|v| v as f64).collect();
    axes(&mut svg, x, y, &xticks, &yticks, "tunable parameters (M, log scale)", "top-1 (%)");
    let radius = |g: f64| (g.sqrt() * 0.36).max(3.0);
    // biggest first, so that small bubbles stay on top
    points.sort_by(|a, b| b.gflops.partial_cmp(&a.gflops).unwrap());
    let mut circles = Vec::new();
    for p in &points {
        let (px, py) = (x.at(p.tunable), y.at(p.top1));
        if let Some((t, g)) = p.ours {
            let (ox, oy) = (x.at(t), py);
            writeln!(svg.body, "<line x1=\"{px:.1}\" y1=\"{py:.1}\" x2=\"{ox:.1}\" y2=\"{oy:.1}\" stroke=\"#333\" stroke-dasharray=\"3 2\"/>")
                .unwrap();
            let title = format!("{} ({}), ours: {t:.2}M tunable, {g:.1} GFLOPs (counted)", p.label, p.source);
            dot(&mut svg, ox, oy, radius(g), "none", "#111", &title);
        }
        let title = format!(
            "{} ({}): {}M tunable, top-1 {}, {} GFLOPs (published)",
            p.label, p.source, p.tunable, p.top1, p.gflops
        );
        writeln!(
            svg.body,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.35\" stroke=\"{}\" stroke-width=\"1.2\"><title>{}</title></circle>",
            radius(p.gflops),
            p.colour,
            p.colour,
            esc(&title)
        )
        .unwrap();
        circles.push((px, py, 2.0));
    }
    // a label for every bubble: a row printed by both tables is labelled once
    let mut labels = Labels::new(&circles);
    let mut done: Vec<String> = Vec::new();
    let bounds = (x.p0, y.p1, x.p1, y.p0);
    for p in points.iter().rev() {
        let key = format!("{}|{}|{}", p.label, p.tunable, p.top1);
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        labels.place(&mut svg, (x.at(p.tunable), y.at(p.top1), radius(p.gflops).min(10.0)), 11.0, &p.label, bounds);
    }
    // legend and size key, under the chart
    let ly = h - 78.0;
    let mut lx = 90.0;
    for (_, _, _, name, colour) in sources {
        writeln!(
            svg.body,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"7\" fill=\"{colour}\" fill-opacity=\"0.35\" stroke=\"{colour}\"/>",
            lx,
            ly - 4.0
        )
        .unwrap();
        svg.text(lx + 12.0, ly, 13.0, "start", "normal", &format!("published, {name}"));
        lx += 250.0;
    }
    dot(&mut svg, lx, ly - 4.0, 7.0, "none", "#111", "ours");
    svg.text(lx + 12.0, ly, 13.0, "start", "normal", "ours: counted tunable and GFLOPs (same top-1)");
    let ky = h - 30.0;
    svg.text(90.0, ky + 4.0, 13.0, "start", "normal", "bubble area: GFLOPs");
    let mut kx = 250.0;
    for g in [300.0, 1000.0, 3000.0, 10000.0] {
        let r = radius(g);
        writeln!(
            svg.body,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\" fill=\"#999\" fill-opacity=\"0.25\" stroke=\"#666\"/>",
            kx + r,
            ky
        )
        .unwrap();
        svg.text(kx + 2.0 * r + 6.0, ky + 4.0, 12.0, "start", "normal", &fmt_tick(g));
        kx += 2.0 * r + 60.0;
    }
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------------------------
// Trainable parameters by part, on one scale

/// (part, parameters) of one adapter position; the parts are split as the configs build them.
type Parts = Vec<(&'static str, u64)>;
/// (model, its trainable count, (position, parts) rows).
type ModelParts = (String, u64, Vec<(String, Parts)>);

/// The parts of the three K400 ViT-B/16 presets: for each position of the block that holds
/// adapters, the adapters' parts summed over the blocks; then the rest (head, embeddings).
fn trainable_parts() -> Vec<ModelParts> {
    let st = StAdapterCfg::vit_b16_12x384();
    let (c, w) = (st.clip.width as u64, st.adapter_width as u64);
    let n = (0..st.clip.layers).filter(|&i| st.blocks.contains(i, st.clip.layers)).count() as u64;
    let head = |cfg_c: u64, classes: usize| cfg_c * classes as u64 + classes as u64;
    let st_parts: Parts = vec![
        ("down (fc1)", n * (c * w + w)),
        ("conv", n * (w * st.kernel.taps() as u64 + w)),
        ("up (fc2)", n * (w * c + c)),
    ];
    let mut st_rows: Vec<(String, Parts)> = st
        .positions
        .iter()
        .map(|p| {
            let name = match p {
                Position::PreAttn => "before attention",
                Position::PreMlp => "between attention and MLP",
                Position::PostMlp => "after the MLP",
            };
            (name.to_string(), st_parts.clone())
        })
        .collect();
    st_rows.push(("head".into(), vec![("head (fc)", head(c, st.num_classes))]));

    let aim = AimCfg::vitclip_base_k400();
    let (c, hd) = (aim.clip.width as u64, aim.hidden() as u64);
    let n = (0..aim.clip.layers).filter(|&i| aim.blocks.contains(i, aim.clip.layers)).count() as u64;
    let adapter: Parts = vec![("down (fc1)", n * (c * hd + hd)), ("up (fc2)", n * (hd * c + c))];
    let mut aim_rows = Vec::new();
    if aim.temporal {
        aim_rows.push(("temporal attention (T_Adapter)".to_string(), adapter.clone()));
    }
    if aim.spatial {
        aim_rows.push(("attention (S_Adapter)".to_string(), adapter.clone()));
    }
    if aim.joint {
        aim_rows.push(("MLP (MLP_Adapter)".to_string(), adapter.clone()));
    }
    aim_rows.push((
        "head and rest".into(),
        vec![("head (fc)", head(c, aim.num_classes)), ("embeddings, LayerNorm", (aim.frames as u64) * c + 2 * c)],
    ));

    let mst = MstAdapterCfg::vit_b16_k400();
    let (c, w) = (mst.clip.width as u64, mst.adapter_width as u64);
    let n = (0..mst.clip.layers).filter(|&i| mst.blocks.contains(i, mst.clip.layers)).count() as u64;
    let taps: u64 = mst.branches.iter().map(|k| w * k.taps() as u64 + w).sum();
    let fusion = match mst.fusion {
        Fusion::Learned { .. } => mst.branches.len() as u64,
        Fusion::Average => 0,
    };
    let pointwise = match mst.pointwise {
        Pointwise::Dense => w * w + w,
        Pointwise::Depthwise => 2 * w,
        Pointwise::None => 0,
    };
    let mst_parts: Parts = vec![
        ("down (fc1)", n * (c * w + w)),
        ("conv", n * (taps + fusion)),
        ("1×1×1 conv", n * pointwise),
        ("up (fc2)", n * (w * c + c)),
    ];
    let mst_rows = vec![
        ("after attention".to_string(), mst_parts.clone()),
        ("after the MLP".to_string(), mst_parts),
        ("head".to_string(), vec![("head (fc)", head(c, mst.num_classes))]),
    ];
    vec![
        ("ST-Adapter".into(), st.breakdown().trainable(), st_rows),
        ("AIM".into(), aim.breakdown().trainable(), aim_rows),
        ("MST-Adapter".into(), mst.breakdown().trainable(), mst_rows),
    ]
}

const PART_COLOURS: [(&str, &str); 7] = [
    ("down (fc1)", "#4e79a7"),
    ("conv", "#f28e2b"),
    ("1×1×1 conv", "#b07aa1"),
    ("up (fc2)", "#59a14f"),
    ("head (fc)", "#9c9c9c"),
    ("embeddings, LayerNorm", "#d4d4d4"),
    ("", "#000"),
];

/// The trainable parameters of the three K400 ViT-B/16 presets, by position in the block and by
/// part, on one scale. The parts are computed from the configs; a test checks they add up to each
/// model's own count.
fn breakdown_bars() -> anyhow::Result<String> {
    let models = trainable_parts();
    for (name, total, rows) in &models {
        let sum: u64 = rows.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| v)).sum();
        anyhow::ensure!(sum == *total, "{name}: the parts add up to {sum}, the model counts {total}");
    }
    let nrows: usize = models.iter().map(|m| m.2.len()).sum();
    let (w, row_h) = (1000.0, 30.0);
    let top = 56.0;
    let h = top + nrows as f64 * row_h + models.len() as f64 * 34.0 + 110.0;
    let mut svg = Svg::new(w, h);
    svg.heading("Trainable parameters of the K400 ViT-B/16 presets, by position and part (one scale)", None);
    let longest =
        models.iter().flat_map(|m| m.2.iter()).map(|r| r.1.iter().map(|p| p.1).sum::<u64>()).max().unwrap_or(1);
    let x = Axis { lo: 0.0, hi: (longest as f64 / 1e6 * 1.1).ceil(), p0: 290.0, p1: w - 30.0, log: false };
    let mut y = top;
    let colour = |part: &str| PART_COLOURS.iter().find(|(p, _)| *p == part).map_or("#000", |(_, c)| c);
    for (name, total, rows) in &models {
        svg.text(20.0, y + 18.0, 14.0, "start", "bold", &format!("{name}: {:.2}M trainable", *total as f64 / 1e6));
        y += 26.0;
        for (pos, parts) in rows {
            svg.text(x.p0 - 8.0, y + 19.0, 13.0, "end", "normal", pos);
            let mut acc = 0.0;
            for (part, v) in parts {
                let m = *v as f64 / 1e6;
                let (x0, x1) = (x.at(acc), x.at(acc + m));
                writeln!(
                    svg.body,
                    "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{name}, {pos}: {part} {m:.3}M</title></rect>",
                    y + 4.0,
                    (x1 - x0).max(0.5),
                    row_h - 8.0,
                    colour(part)
                )
                .unwrap();
                acc += m;
            }
            svg.text(x.at(acc) + 6.0, y + 19.0, 12.0, "start", "normal", &format!("{acc:.2}M"));
            y += row_h;
        }
        y += 8.0;
    }
    let ticks: Vec<f64> = (0..=x.hi as i64).map(|v| v as f64).collect();
    for &t in &ticks {
        let px = x.at(t);
        writeln!(svg.body, "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{y:.1}\" stroke=\"#ccc\" stroke-dasharray=\"2 3\"/>")
            .unwrap();
        svg.text(px, y + 18.0, 13.0, "middle", "normal", &fmt_tick(t));
    }
    svg.text((x.p0 + x.p1) / 2.0, y + 40.0, 14.0, "middle", "normal", "millions of parameters");
    let mut lx = 20.0;
    let ly = y + 72.0;
    for (part, c) in PART_COLOURS.iter().filter(|(p, _)| !p.is_empty()) {
        svg.rect((lx, ly - 11.0, 16.0, 14.0), c, c, false);
        svg.text(lx + 22.0, ly, 13.0, "start", "normal", part);
        lx += 44.0 + 7.8 * part.chars().count() as f64;
    }
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------------------------
// Every computed figure against the printed one

/// For every table, every cell the kit computes next to a printed number: ours ÷ published
/// against the published figure; green ✓, red ✗ (labelled with its note), circles for parameter
/// counts, squares for GFLOPs.
fn published_vs_ours() -> anyhow::Result<String> {
    struct Pt {
        published: f64,
        ratio: f64,
        ok: bool,
        gflops: bool,
        title: String,
        note: Option<String>,
    }
    let mut pts = Vec::new();
    for (_, runner) in crate::repro::all() {
        let rep = crate::repro::counts_report(runner)?;
        for row in &rep.rows {
            for (j, col) in rep.columns.iter().enumerate() {
                let Value::Mark(mark) = &row.cells[j] else { continue };
                let q = col.quantity.as_deref().unwrap_or_default();
                let p = rep.cell(row, q, &Kind::Published).and_then(Value::number);
                let o = rep.cell(row, q, &Kind::Ours).and_then(Value::number);
                let (Some(p), Some(o)) = (p, o) else { continue };
                if p <= 0.0 {
                    continue;
                }
                let note = match mark {
                    Mark::Mismatch(id) => id.clone(),
                    _ => None,
                };
                pts.push(Pt {
                    published: p,
                    ratio: o / p,
                    ok: *mark == Mark::Match,
                    gflops: q.contains("GFLOP"),
                    title: format!("{}, {}: {q} published {p}, ours {o:.2}", rep.table, short(&row.label)),
                    note,
                });
            }
        }
    }
    let (w, h) = (1000.0, 600.0);
    let mut svg = Svg::new(w, h);
    let n_ok = pts.iter().filter(|p| p.ok).count();
    svg.heading(
        &format!("Every computed figure of every table against the printed one: {} ✓, {} ✗", n_ok, pts.len() - n_ok),
        None,
    );
    let lo = pts.iter().map(|p| p.published).fold(f64::MAX, f64::min);
    let hi = pts.iter().map(|p| p.published).fold(0.0, f64::max);
    let x = Axis { lo: lo * 0.6, hi: hi * 1.6, p0: 90.0, p1: w - 30.0, log: true };
    let (rlo, rhi) = pts.iter().fold((1f64, 1f64), |(a, b), p| (a.min(p.ratio), b.max(p.ratio)));
    let y = Axis { lo: (rlo * 0.9).min(0.9), hi: rhi * 1.1, p0: h - 110.0, p1: 50.0, log: true };
    let xticks: Vec<f64> =
        [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0].into_iter().filter(|v| *v >= x.lo && *v <= x.hi).collect();
    let yticks: Vec<f64> = [0.25, 0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0]
        .into_iter()
        .filter(|v| *v >= y.lo && *v <= y.hi)
        .collect();
    axes(
        &mut svg,
        x,
        y,
        &xticks,
        &yticks,
        "published figure (parameters in M, or GFLOPs; log scale)",
        "ours ÷ published (log scale)",
    );
    let one = y.at(1.0);
    writeln!(
        svg.body,
        "<line x1=\"{:.1}\" y1=\"{one:.1}\" x2=\"{:.1}\" y2=\"{one:.1}\" stroke=\"#2ca02c\" stroke-width=\"1.5\"/>",
        x.p0, x.p1
    )
    .unwrap();
    let mut circles = Vec::new();
    for p in &pts {
        let (px, py) = (x.at(p.published), y.at(p.ratio));
        let fill = if p.ok { "#2ca02c" } else { "#d62728" };
        if p.gflops {
            square(&mut svg, px, py, 4.0, fill, &p.title);
        } else {
            dot(&mut svg, px, py, 4.0, fill, "#333", &p.title);
        }
        circles.push((px, py, 4.0));
    }
    // label the ✗ with their notes, once per note and place
    let mut labels = Labels::new(&circles);
    let mut done: Vec<String> = Vec::new();
    for p in pts.iter().filter(|p| !p.ok) {
        let Some(note) = &p.note else { continue };
        let key = format!("{note}{:.0}{:.0}", x.at(p.published) / 20.0, y.at(p.ratio) / 20.0);
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        labels.place(&mut svg, (x.at(p.published), y.at(p.ratio), 4.0), 11.0, note, (x.p0, y.p1, x.p1, y.p0));
    }
    let ly = h - 34.0;
    let items: [(&str, bool, &str); 4] = [
        ("✓ parameters", false, "#2ca02c"),
        ("✓ GFLOPs", true, "#2ca02c"),
        ("✗ parameters", false, "#d62728"),
        ("✗ GFLOPs (labelled with the note that explains it)", true, "#d62728"),
    ];
    let mut lx = 90.0;
    for (label, sq, c) in items {
        if sq {
            square(&mut svg, lx, ly - 4.0, 5.0, c, label);
        } else {
            dot(&mut svg, lx, ly - 4.0, 5.0, c, "#333", label);
        }
        svg.text(lx + 10.0, ly, 13.0, "start", "normal", label);
        lx += 30.0 + 7.0 * label.chars().count() as f64;
    }
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------------------------
// Measured cost ratios against the published ones

/// Each measured ratio (time, memory, latency, throughput: a row ÷ the table's reference row)
/// against the ratio of the printed figures, for every row that has both.
fn measured_vs_published() -> anyhow::Result<String> {
    let mut pts: Vec<(f64, f64, &str, String)> = Vec::new(); // (published, here, quantity, label)
    let kinds = [("time", "#1f77b4"), ("mem", "#d62728"), ("latency", "#2ca02c"), ("throughput", "#9467bd")];
    for rep in crate::repro::measured_reports()? {
        let header = |j: usize| match &rep.columns[j].kind {
            Kind::Measured(h) => h.clone(),
            _ => String::new(),
        };
        for j in 0..rep.columns.len() {
            let h = header(j);
            let Some(stem) = h.strip_suffix(" (here)") else { continue };
            let Some(pj) = (0..rep.columns.len()).find(|&k| header(k) == format!("{stem} (pub)")) else { continue };
            let quantity = kinds.iter().map(|k| k.0).find(|k| stem.starts_with(k)).unwrap_or("time");
            for row in &rep.rows {
                if let (Some(here), Some(published)) = (row.cells[j].number(), row.cells[pj].number()) {
                    if (here - 1.0).abs() < 1e-9 && (published - 1.0).abs() < 1e-9 {
                        continue; // the reference row itself
                    }
                    pts.push((published, here, quantity, format!("{}: {}", rep.table, short(&row.label))));
                }
            }
        }
    }
    let (w, h) = (1000.0, 620.0);
    let mut svg = Svg::new(w, h);
    svg.heading("Cost ratios measured here (CPU) against the published ratios (GPUs)", None);
    let hi = pts.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max) * 1.1;
    let lo = pts.iter().map(|p| p.0.min(p.1)).fold(1.0, f64::min) * 0.9;
    let x = Axis { lo, hi, p0: 90.0, p1: w - 40.0, log: false };
    let y = Axis { lo, hi, p0: h - 110.0, p1: 50.0, log: false };
    let step = if hi - lo > 3.0 { 0.5 } else { 0.25 };
    let ticks: Vec<f64> =
        (0..100).map(|i| (lo / step).ceil() * step + i as f64 * step).take_while(|v| *v <= hi).collect();
    axes(&mut svg, x, y, &ticks, &ticks, "published ratio to the table's reference row", "measured ratio here");
    writeln!(
        svg.body,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"5 4\"/>",
        x.at(lo),
        y.at(lo),
        x.at(hi),
        y.at(hi)
    )
    .unwrap();
    svg.text(x.at(hi) - 6.0, y.at(hi) + 16.0, 12.0, "end", "normal", "measured = published");
    let circles: Vec<(f64, f64, f64)> = pts.iter().map(|p| (x.at(p.0), y.at(p.1), 5.0)).collect();
    let mut labels = Labels::new(&circles);
    for (p, q, quantity, label) in &pts {
        let c = kinds.iter().find(|k| k.0 == *quantity).map_or("#000", |k| k.1);
        dot(
            &mut svg,
            x.at(*p),
            y.at(*q),
            5.0,
            c,
            "#333",
            &format!("{label}, {quantity}: published {p:.2}, measured {q:.2}"),
        );
    }
    for (p, q, quantity, label) in &pts {
        labels.place(
            &mut svg,
            (x.at(*p), y.at(*q), 5.0),
            11.0,
            &format!("{label} ({quantity})"),
            (x.p0, y.p1, x.p1, y.p0),
        );
    }
    let ly = h - 34.0;
    let mut lx = 90.0;
    for (k, c) in kinds {
        dot(&mut svg, lx, ly - 4.0, 5.0, c, "#333", k);
        svg.text(lx + 10.0, ly, 13.0, "start", "normal", k);
        lx += 120.0;
    }
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------------------------
// The kit against PyTorch on this machine

/// The committed benchmark run (`book/src/measured/bench.json`): every ratio kit ÷ PyTorch as a
/// bar, green where its target is met, red where missed, grey without a target; the target as a
/// black tick and 1 (parity) as a dashed line.
pub fn bench_ratios(report: &crate::bench::Report) -> String {
    let data = report.ratios();
    let (w, row_h, top) = (1000.0, 30.0, 64.0);
    let h = top + row_h * data.len().max(1) as f64 + 90.0;
    let mut svg = Svg::new(w, h);
    svg.heading(
        &format!("The kit ÷ PyTorch on the same CPU, {} threads ({})", report.opts.threads, report.date),
        Some("time and memory: lower is better; clips/s: higher is better. Black tick: the target"),
    );
    let hi = (data.iter().map(|d| d.1).fold(1.5f64, f64::max) * 1.1 * 4.0).ceil() / 4.0;
    let x = Axis { lo: 0.0, hi, p0: 470.0, p1: w - 70.0, log: false };
    let bottom = top + row_h * data.len() as f64;
    let step = if hi > 3.0 { 0.5 } else { 0.25 };
    for i in 0..=(hi / step).round() as usize {
        let v = i as f64 * step;
        let px = x.at(v);
        writeln!(svg.body, "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>")
            .unwrap();
        svg.text(px, bottom + 18.0, 13.0, "middle", "normal", &fmt_tick(v));
    }
    for (i, (label, r, target)) in data.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let colour = match target.map(|t| t.met(*r)) {
            Some(true) => "#2ca02c",
            Some(false) => "#d62728",
            None => "#999",
        };
        svg.text(x.p0 - 8.0, y + 19.0, 12.0, "end", "normal", label);
        writeln!(
            svg.body,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {r:.2}</title></rect>",
            x.p0,
            y + 5.0,
            (x.at(*r) - x.p0).max(0.5),
            row_h - 10.0,
            esc(label)
        )
        .unwrap();
        let tick = target.map_or(String::new(), |t| format!(" (target {})", t.text()));
        svg.text(x.at(*r) + 6.0, y + 19.0, 12.0, "start", "normal", &format!("{r:.2}{tick}"));
        if let Some(t) = target {
            let tx = x.at(t.value());
            writeln!(
                svg.body,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"2.5\"/>",
                y + 2.0,
                y + row_h - 2.0
            )
            .unwrap();
        }
    }
    let px = x.at(1.0);
    writeln!(
        svg.body,
        "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{bottom:.1}\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>"
    )
    .unwrap();
    svg.text((x.p0 + x.p1) / 2.0, bottom + 40.0, 14.0, "middle", "normal", "kit ÷ PyTorch");
    let ly = bottom + 68.0;
    let mut lx = 20.0;
    for (label, c) in [("target met", "#2ca02c"), ("target missed", "#d62728"), ("no target", "#999")] {
        svg.rect((lx, ly - 11.0, 16.0, 14.0), c, c, false);
        svg.text(lx + 22.0, ly, 13.0, "start", "normal", label);
        lx += 44.0 + 7.8 * label.chars().count() as f64;
    }
    svg.finish()
}

#[cfg(test)]
mod tests {
    /// The parts drawn in the breakdown chart, computed from the configs term by term, add up to
    /// each model's trainable count (the breakdown the count tests check against the built module).
    #[test]
    fn breakdown_parts_add_up_to_each_models_trainable_count() {
        for (name, total, rows) in super::trainable_parts() {
            let sum: u64 = rows.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| v)).sum();
            assert_eq!(sum, total, "{name}");
        }
    }
}
