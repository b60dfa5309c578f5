//! AIM Table 6 — other backbones and pre-training (memory and time measured here as ratios).
//! `cargo run --release --bin aim_table6_backbones -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table6_backbones");
}
