//! AIM Table 4 — Kinetics-700.
//! `cargo run --release --bin aim_table4_k700 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table4_k700");
}
