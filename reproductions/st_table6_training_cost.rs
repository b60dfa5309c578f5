//! ST-Adapter Table 6 — training time and memory (measured here as ratios).
//! `cargo run --release --bin st_table6_training_cost -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table6_training_cost");
}
