//! The book's figures, drawn by our code as SVG (plotters' SVG backend: text stays text, no font
//! files). `cargo run --release --bin book_figures` writes them; a test keeps them current.

pub mod arch;

use plotters::prelude::*;

use crate::count::Breakdown;
use crate::repro::published::{self, Cell};

/// (file name, SVG) of every figure.
pub fn all() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![
        ("k400_accuracy_vs_tunable.svg".to_string(), k400_bubbles()?),
        ("arch_st_adapter.svg".to_string(), arch::st_adapter()),
        ("arch_aim.svg".to_string(), arch::aim()),
        ("arch_mst_adapter.svg".to_string(), arch::mst_adapter()),
        ("arch_overview.svg".to_string(), arch::overview()),
    ];
    for (name, b) in [
        ("st_adapter", crate::st_adapter::StAdapterCfg::vit_b16_12x384().breakdown()),
        ("aim", crate::aim::AimCfg::vitclip_base_k400().breakdown()),
        ("mst_adapter", crate::mst_adapter::MstAdapterCfg::vit_b16_k400().breakdown()),
    ] {
        out.push((format!("breakdown_{name}.svg"), breakdown_bars(&b)?));
    }
    Ok(out)
}

fn num(c: Option<&Cell>) -> Option<f64> {
    match c {
        Some(Cell::Num(v)) => Some(*v),
        _ => None,
    }
}

/// Published Kinetics-400 top-1 against tunable parameters (log scale), bubble area ∝ GFLOPs,
/// from the three papers' K400 tables (rows that print all three numbers).
fn k400_bubbles() -> anyhow::Result<String> {
    let sources = [
        ("aim", "table2_k400", "AIM Table 2", RGBColor(31, 119, 180)),
        ("mst_adapter", "table1_k400", "MST-Adapter Table 1", RGBColor(214, 39, 40)),
    ];
    let mut points = Vec::new();
    for (paper, file, name, color) in sources {
        let t = published::load(paper, file)?;
        for r in &t.rows {
            if let (Some(p), Some(a), Some(g)) =
                (num(r.cells.get("tunable_params")), num(r.cells.get("top1")), num(r.cells.get("gflops")))
            {
                points.push((p, a, g, r.label.clone(), name, color));
            }
        }
    }
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (760, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Kinetics-400: published top-1 vs tunable parameters (bubble area ∝ GFLOPs)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((3f64..1000f64).log_scale(), 76f64..89f64)?;
        chart.configure_mesh().x_desc("tunable parameters (M, log scale)").y_desc("top-1 (%)").draw()?;
        for (_, _, _, _, name, color) in
            points.iter().fold(Vec::new(), |mut v: Vec<&(f64, f64, f64, String, &str, RGBColor)>, p| {
                if !v.iter().any(|q| q.4 == p.4) {
                    v.push(p);
                }
                v
            })
        {
            let c = *color;
            chart
                .draw_series(points.iter().filter(|p| p.4 == *name).map(|(p, a, g, _, _, _)| {
                    Circle::new((*p, *a), (g.sqrt() / 8.0).clamp(3.0, 28.0) as i32, c.mix(0.35).filled())
                }))?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x, y), 5, c.filled()));
        }
        // label each of the three methods (and the CLIP baseline) once, at its best point
        let mut labelled: Vec<String> = Vec::new();
        let mut sorted: Vec<_> = points.iter().collect();
        sorted.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap());
        for (p, a, _, label, src, _) in sorted {
            let key = label.replace(" [25]", " ").replace(" [28]", " ");
            let own = (label.starts_with("AIM ViT") && src.starts_with("AIM"))
                || (src.starts_with("MST") && !label.starts_with("AIM"));
            if own
                && ["MST", "AIM", "ST-Adapter", "CLIP*"].iter().any(|m| label.contains(m))
                && !labelled.iter().any(|l| l == &key)
            {
                let dy = if src.starts_with("AIM") { 0.3 } else { -0.3 };
                chart.draw_series([Text::new(key.clone(), (*p * 1.12, *a + dy), ("sans-serif", 10))])?;
                labelled.push(key);
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        root.present()?;
    }
    Ok(s)
}

/// A model's trainable parameters by component (horizontal bars, millions).
fn breakdown_bars(b: &Breakdown) -> anyhow::Result<String> {
    let lines: Vec<(String, f64)> =
        b.lines.iter().filter(|l| l.trainable > 0).map(|l| (l.name.clone(), l.trainable as f64 / 1e6)).collect();
    let max = lines.iter().map(|l| l.1).fold(0.0, f64::max) * 1.15;
    let h = 90 + 34 * lines.len() as u32;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (760, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: trainable parameters by component ({:.2}M of {:.2}M)",
                    b.model,
                    b.trainable() as f64 / 1e6,
                    b.params() as f64 / 1e6
                ),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..max, 0f64..lines.len() as f64)?;
        chart.configure_mesh().disable_y_mesh().disable_y_axis().x_desc("millions").draw()?;
        for (i, (name, v)) in lines.iter().enumerate() {
            let y = (lines.len() - 1 - i) as f64;
            chart.draw_series([Rectangle::new(
                [(0.0, y + 0.15), (*v, y + 0.85)],
                RGBColor(44, 160, 44).mix(0.6).filled(),
            )])?;
            chart.draw_series([Text::new(format!("{name}: {v:.3}M"), (max * 0.01, y + 0.62), ("sans-serif", 12))])?;
        }
        root.present()?;
    }
    Ok(s)
}
