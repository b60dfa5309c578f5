//! AIM Table 9 — training memory of ViT-L (measured here).
//! `cargo run --release --bin aim_table9_memory -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table9_memory");
}
