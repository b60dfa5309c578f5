//! ST-Adapter Table 9 — other foundation models (SWAG).
//! `cargo run --release --bin st_table9_foundation_models -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table9_foundation_models");
}
