//! ST-Adapter Table 7 — effect of the depthwise kernel shape.
//! `cargo run --release --bin st_table7_kernel -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table7_kernel");
}
