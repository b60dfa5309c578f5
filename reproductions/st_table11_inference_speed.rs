//! ST-Adapter Table 11 — inference latency and throughput (measured here as ratios).
//! `cargo run --release --bin st_table11_inference_speed -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table11_inference_speed");
}
