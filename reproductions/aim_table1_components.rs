//! AIM Table 1 — spatial, temporal and joint adaptation.
//! `cargo run --release --bin aim_table1_components -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table1_components");
}
