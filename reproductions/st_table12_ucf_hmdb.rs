//! ST-Adapter Table 12 — UCF-101 and HMDB-51.
//! `cargo run --release --bin st_table12_ucf_hmdb -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table12_ucf_hmdb");
}
