//! ST-Adapter Table 5 — ablations: bottleneck width, blocks, position.
//! `cargo run --release --bin st_table5_ablations -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table5_ablations");
}
