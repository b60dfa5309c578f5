#!/usr/bin/env bash
# Runs the benchmark against PyTorch (when python3 has torch) and the measured cost tables
# (ST-Adapter 6 and 11, AIM 6, 9 and 10) and keeps their output in book/src/measured/ (and the
# benchmark's bar chart in book/src/figures/) for the book's Performance chapter. About an hour on 2
# cores; keep the machine otherwise idle (the ratios are only as good as the quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
echo "== bench" >&2
if python3 -c "import torch" 2>/dev/null; then torch="--torch python3"; else torch=; fi
./target/release/bench --rounds "${ROUNDS:-3}" $torch --save > /dev/null
for t in st_table6_training_cost st_table11_inference_speed aim_table6_backbones aim_table10_evl aim_table9_memory; do
    echo "== $t" >&2
    ./target/release/$t --reps "${REPS:-2}" --no-proxy --format markdown > "book/src/measured/$t.md.tmp"
    mv "book/src/measured/$t.md.tmp" "book/src/measured/$t.md"
done
