//! AIM Table 10 — AIM and EVL.
//! `cargo run --release --bin aim_table10_evl -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table10_evl");
}
