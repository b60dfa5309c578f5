//! MST-Adapter Table 5 — where the adapters sit in the block.
//! `cargo run --release --bin mst_table5_position -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("mst_table5_position");
}
