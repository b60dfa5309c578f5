//! ST-Adapter Table 1 — the fine-tuning benchmark on ViT-B/16.
//! `cargo run --release --bin st_table1_benchmark -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table1_benchmark");
}
