//! AIM Table 7 — where the adapters go.
//! `cargo run --release --bin aim_table7_position -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table7_position");
}
