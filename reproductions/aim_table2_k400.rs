//! AIM Table 2 — Kinetics-400.
//! `cargo run --release --bin aim_table2_k400 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table2_k400");
}
