//! AIM Table 5 — Diving-48.
//! `cargo run --release --bin aim_table5_diving48 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table5_diving48");
}
