//! The embedded benchmark's figures, drawn from the committed runs file only
//! (`book/src/measured/proxy_runs.json`, [`crate::proxy::runs`]): accuracy on the motion task
//! against tunable parameters for every charted method, and the training-loss curves.

use std::fmt::Write as _;

use super::arch::Svg;
use super::{axes, esc, text_box, Axis, Labels};
use crate::proxy::claims::mean_std;
use crate::proxy::runs::{chart_methods, curve_methods, Runs};
use crate::proxy::Method;

/// One colour per charted method (cycled if the list grows past it).
const PALETTE: [&str; 17] = [
    "#7f7f7f", "#8c564b", "#bcbd22", "#9edae5", "#17becf", "#1f77b4", "#393b79", "#2ca02c", "#d62728", "#ff9896",
    "#c49c94", "#dbdb8d", "#c7c7c7", "#9467bd", "#c5b0d5", "#e377c2", "#f7b6d2",
];

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// The seeds of the runs, sorted.
fn seeds(runs: &Runs) -> Vec<String> {
    let mut s: Vec<u64> = runs.runs.iter().map(|r| r.key.seed).collect();
    s.sort_unstable();
    s.dedup();
    s.iter().map(u64::to_string).collect()
}

/// (mean, std) of a field over the runs of a method; None when no run has it.
fn stat(runs: &Runs, m: Method, f: impl Fn(&crate::proxy::bench::RunResult) -> Option<f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = runs.of(m).into_iter().filter_map(f).collect();
    mean_std(&v)
}

/// Motion task: top-1 and direction given the right kind (mean ± std over the seeds, as error bars)
/// against the trainable parameters (log scale), one marker per method of [`chart_methods`] that
/// has runs in the file.
pub fn accuracy_vs_tunable(runs: &Runs) -> String {
    let methods: Vec<(usize, Method)> =
        chart_methods().into_iter().enumerate().filter(|(_, m)| !runs.of(*m).is_empty()).collect();
    let seeds = seeds(runs);
    let b = runs.runs.first().map(|r| r.key.budget);
    let (w, h) = (1100.0, 660.0);
    let mut svg = Svg::new(w, h);
    let subtitle = format!(
        "mean ± std over seeds {} (error bars; methods with equal counts drawn side by side); {}; not comparable with any published figure",
        seeds.join(", "),
        b.map_or(String::new(), |b| format!("{} steps × {} clips, lr {}", b.steps, b.batch, b.lr))
    );
    svg.heading(
        "Embedded benchmark, motion task (SSv2 stand-in): accuracy against trainable parameters",
        Some(&subtitle),
    );
    let tunable: Vec<f64> = methods.iter().filter_map(|(_, m)| runs.of(*m).first().map(|r| r.tunable as f64)).collect();
    let (lo, hi) = tunable.iter().fold((f64::MAX, 0f64), |(a, b), &t| (a.min(t), b.max(t)));
    let (lo, hi) = if tunable.is_empty() { (1e3, 1e5) } else { (lo / 1e3 / 2.0, hi / 1e3 * 2.0) };
    let xticks: Vec<f64> = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0]
        .into_iter()
        .filter(|v| *v >= lo && *v <= hi)
        .collect();
    type Field = fn(&crate::proxy::bench::RunResult) -> Option<f64>;
    let panels: [(&str, f64, Field, f64, f64); 2] = [
        ("top-1 (%)", 100.0 / 12.0, |r| Some(r.top1), 80.0, 510.0),
        ("direction given the right kind (%)", 50.0, |r| r.direction, 650.0, 1080.0),
    ];
    for (title, chance, field, p0, p1) in panels {
        let stats: Vec<(usize, Method, f64, (f64, f64))> = methods
            .iter()
            .filter_map(|&(i, m)| Some((i, m, runs.of(m).first()?.tunable as f64 / 1e3, stat(runs, m, field)?)))
            .collect();
        let ymax = stats.iter().map(|s| s.3 .0 + s.3 .1).fold(chance, f64::max);
        let ymin = stats.iter().map(|s| s.3 .0 - s.3 .1).fold(chance, f64::min);
        let (ylo, yhi) = (((ymin - 5.0) / 10.0).floor() * 10.0, ((ymax + 5.0) / 10.0).ceil() * 10.0);
        let (ylo, yhi) = (ylo.max(0.0), yhi.min(100.0));
        let x = Axis { lo, hi, p0, p1, log: true };
        let y = Axis { lo: ylo, hi: yhi, p0: h - 150.0, p1: 70.0, log: false };
        let yticks: Vec<f64> = (0..=10).map(|k| k as f64 * 10.0).filter(|v| *v >= ylo && *v <= yhi).collect();
        axes(&mut svg, x, y, &xticks, &yticks, "trainable parameters (thousands, log scale)", title);
        let cy = y.at(chance);
        writeln!(
            svg.body,
            "<line x1=\"{:.1}\" y1=\"{cy:.1}\" x2=\"{:.1}\" y2=\"{cy:.1}\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>",
            x.p0, x.p1
        )
        .unwrap();
        let chance_text = format!("chance {chance:.1}");
        svg.text(x.p0 + 4.0, cy - 4.0, 11.0, "start", "normal", &chance_text);
        let mut points = Vec::new();
        for (j, &(i, m, t, (mean, std))) in stats.iter().enumerate() {
            // methods with the same count side by side, 7 px apart (dodged, not moved in value)
            let same = stats.iter().filter(|s| s.2 == t).count();
            let rank = stats[..j].iter().filter(|s| s.2 == t).count();
            let dodge = 7.0 * (rank as f64 - (same as f64 - 1.0) / 2.0);
            let (px, py) = (x.at(t) + dodge, y.at(mean));
            let (top, bottom) = (y.at((mean + std).min(yhi)), y.at((mean - std).max(ylo)));
            let c = colour(i);
            writeln!(
                svg.body,
                "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{bottom:.1}\" stroke=\"{c}\" stroke-width=\"1.6\"/>\
                 <line x1=\"{:.1}\" y1=\"{top:.1}\" x2=\"{:.1}\" y2=\"{top:.1}\" stroke=\"{c}\" stroke-width=\"1.6\"/>\
                 <line x1=\"{:.1}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"{c}\" stroke-width=\"1.6\"/>",
                px - 4.0,
                px + 4.0,
                px - 4.0,
                px + 4.0
            )
            .unwrap();
            let each: Vec<String> = runs.of(m).iter().filter_map(|r| field(r)).map(|v| format!("{v:.1}")).collect();
            let hover = format!("{}: {mean:.1} ± {std:.1} ({}), {:.0} trainable", m.name(), each.join(", "), t * 1e3);
            writeln!(
                svg.body,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"5\" fill=\"{c}\" stroke=\"#222\" stroke-width=\"0.8\"><title>{}</title></circle>",
                esc(&hover)
            )
            .unwrap();
            points.push((px, py, 5.0));
        }
        let mut labels = Labels::new(&points);
        labels.block(text_box(x.p0 + 4.0, cy - 4.0, 11.0, "start", &chance_text));
        // a method's name where it overlaps nothing, else its number in the legend
        let bounds = (x.p0, y.p1, x.p1, y.p0);
        for (&(i, m, _, _), &p) in stats.iter().zip(&points) {
            if !labels.place_if_free(&mut svg, p, 11.0, &m.name(), bounds) {
                labels.place(&mut svg, p, 10.0, &(i + 1).to_string(), bounds);
            }
        }
    }
    // legend: every method's colour, under both panels
    let (mut lx, mut ly) = (80.0, h - 86.0);
    for &(i, m) in &methods {
        let name = format!("{} {}", i + 1, m.name());
        let width = 30.0 + 6.6 * name.chars().count() as f64;
        if lx + width > w - 20.0 {
            lx = 80.0;
            ly += 20.0;
        }
        writeln!(
            svg.body,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.8\"/>",
            lx,
            ly - 4.0,
            colour(i)
        )
        .unwrap();
        svg.text(lx + 10.0, ly, 12.0, "start", "normal", &name);
        lx += width;
    }
    svg.finish()
}

/// Training loss (mean of every [`crate::proxy::bench::CURVE_EVERY`] steps) of the methods of
/// [`curve_methods`] on the motion task: the mean over seeds as a line, ± std as a band.
pub fn loss_curves(runs: &Runs) -> String {
    let every = crate::proxy::bench::CURVE_EVERY as f64;
    struct Curve {
        index: usize,
        name: String,
        mean: Vec<f64>,
        std: Vec<f64>,
    }
    let all = chart_methods();
    let mut curves = Vec::new();
    for m in curve_methods() {
        let rs: Vec<&Vec<f64>> = runs.of(m).into_iter().map(|r| &r.curve).filter(|c| !c.is_empty()).collect();
        let Some(n) = rs.iter().map(|c| c.len()).min() else { continue };
        let (mut mean, mut std) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for k in 0..n {
            let (a, s) = mean_std(&rs.iter().map(|c| c[k]).collect::<Vec<_>>()).unwrap_or((f64::NAN, 0.0));
            mean.push(a);
            std.push(s);
        }
        let index = all.iter().position(|x| *x == m).unwrap_or(curves.len());
        curves.push(Curve { index, name: m.name(), mean, std });
    }
    let (w, h) = (1000.0, 560.0);
    let mut svg = Svg::new(w, h);
    let subtitle = format!(
        "cross-entropy, mean of every {every:.0} steps; line: mean over seeds {}, band: ± std; dashed: ln 12 = {:.2}, a uniform guess",
        seeds(runs).join(", "),
        12f64.ln()
    );
    svg.heading("Embedded benchmark, motion task: training loss", Some(&subtitle));
    let steps = curves.iter().map(|c| c.mean.len()).max().unwrap_or(1) as f64 * every;
    let yhi = curves
        .iter()
        .flat_map(|c| c.mean.iter().zip(&c.std).map(|(m, s)| m + s))
        .filter(|v| v.is_finite())
        .fold(12f64.ln(), f64::max);
    let x = Axis { lo: 0.0, hi: steps, p0: 80.0, p1: 700.0, log: false };
    let y = Axis { lo: 0.0, hi: (yhi * 2.0).ceil() / 2.0, p0: h - 80.0, p1: 70.0, log: false };
    let xticks: Vec<f64> = (0..=(steps / 50.0) as usize).map(|k| k as f64 * 50.0).collect();
    let yticks: Vec<f64> = (0..=(y.hi / 0.5) as usize).map(|k| k as f64 * 0.5).collect();
    axes(&mut svg, x, y, &xticks, &yticks, "training step", "training loss");
    let cy = y.at(12f64.ln());
    writeln!(
        svg.body,
        "<line x1=\"{:.1}\" y1=\"{cy:.1}\" x2=\"{:.1}\" y2=\"{cy:.1}\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>",
        x.p0, x.p1
    )
    .unwrap();
    // a point at the middle of its steps: steps 1–10 at 5.5
    let at = |k: usize| x.at(k as f64 * every + (every + 1.0) / 2.0);
    for c in &curves {
        let col = colour(c.index);
        let upper: Vec<String> = c
            .mean
            .iter()
            .zip(&c.std)
            .enumerate()
            .map(|(k, (m, s))| format!("{:.1},{:.1}", at(k), y.at(m + s)))
            .collect();
        let lower: Vec<String> = c
            .mean
            .iter()
            .zip(&c.std)
            .enumerate()
            .rev()
            .map(|(k, (m, s))| format!("{:.1},{:.1}", at(k), y.at((m - s).max(0.0))))
            .collect();
        writeln!(
            svg.body,
            "<polygon points=\"{} {}\" fill=\"{col}\" fill-opacity=\"0.18\" stroke=\"none\"/>",
            upper.join(" "),
            lower.join(" ")
        )
        .unwrap();
    }
    for c in &curves {
        let col = colour(c.index);
        let pts: Vec<String> =
            c.mean.iter().enumerate().map(|(k, m)| format!("{:.1},{:.1}", at(k), y.at(*m))).collect();
        let last = c.mean.last().copied().unwrap_or(f64::NAN);
        writeln!(
            svg.body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"><title>{}: last {every:.0} steps {last:.3}</title></polyline>",
            pts.join(" "),
            esc(&c.name)
        )
        .unwrap();
    }
    // legend at the right, in the order of the last value (highest first), with that value
    let mut order: Vec<&Curve> = curves.iter().collect();
    order.sort_by(|a, b| {
        let l = |c: &Curve| c.mean.last().copied().unwrap_or(f64::NAN);
        l(b).total_cmp(&l(a))
    });
    svg.text(720.0, 84.0, 12.0, "start", "bold", &format!("loss over the last {every:.0} steps"));
    for (j, c) in order.iter().enumerate() {
        let ly = 108.0 + 22.0 * j as f64;
        writeln!(
            svg.body,
            "<line x1=\"720\" y1=\"{:.1}\" x2=\"744\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"3\"/>",
            ly - 4.0,
            ly - 4.0,
            colour(c.index)
        )
        .unwrap();
        let (m, s) = (c.mean.last().copied().unwrap_or(f64::NAN), c.std.last().copied().unwrap_or(f64::NAN));
        svg.text(750.0, ly, 12.0, "start", "normal", &format!("{}: {m:.2} ± {s:.2}", c.name));
    }
    svg.finish()
}
