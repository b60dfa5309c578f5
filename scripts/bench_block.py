#!/usr/bin/env python3
"""PyTorch side of `bench_block --torch`: one CLIP ViT-B/16 block (pre-LN, QuickGELU, packed
in_proj through F.scaled_dot_product_attention), forward+backward and forward, on CPU. Prints one
JSON line with the median seconds of each. Optional (needs torch)."""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c, h, s = 768, 12, 197
    ln1, ln2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
    in_proj, out_proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
    c_fc, c_proj = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c)

    def block(x):
        b = x.shape[0]
        qkv = in_proj(ln1(x)).view(b, s, 3 * h, c // h).permute(0, 2, 1, 3)
        q, k, v = qkv.split([h, h, h], dim=1)
        o = F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).flatten(-2)
        x = x + out_proj(o)
        f = c_fc(ln2(x))
        return x + c_proj(f * torch.sigmoid(1.702 * f))

    x = torch.randn(a.frames, s, c)
    fb, fw = [], []
    for i in range(a.reps + 1):
        xi = x.clone().requires_grad_(True)
        t = time.perf_counter()
        block(xi).sum().backward()
        t1 = time.perf_counter()
        with torch.no_grad():
            block(x)
        t2 = time.perf_counter()
        if i > 0:
            fb.append(t1 - t)
            fw.append(t2 - t1)
    med = lambda v: sorted(v)[len(v) // 2]
    print(json.dumps({"fwd_bwd": med(fb), "fwd": med(fw)}))


if __name__ == "__main__":
    main()
