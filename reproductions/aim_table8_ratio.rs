//! AIM Table 8 — the bottleneck ratio.
//! `cargo run --release --bin aim_table8_ratio -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table8_ratio");
}
