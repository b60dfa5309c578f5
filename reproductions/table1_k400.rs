//! MST-Adapter Table 1 — Kinetics-400: ST-Adapter, AIM and MST-Adapter side by side (the front door).
//! `cargo run --release --bin table1_k400 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("table1_k400");
}
