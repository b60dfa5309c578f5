//! ST-Adapter Table 10 — Swin-B (reference rows).
//! `cargo run --release --bin st_table10_swin -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table10_swin");
}
