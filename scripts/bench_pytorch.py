#!/usr/bin/env python3
"""PyTorch side of `cargo run --release --bin bench -- --torch python3` (optional: needs torch).

Measures one case in this process and prints one line `BENCH_RESULT {json}` with the samples of
each metric (seconds; GFLOP/s for `gemm`), the peak resident memory (VmHWM) and the torch version.
The bench starts it once per case and round, interleaved with the kit's own measurement.

The models are compact re-implementations written for this benchmark, not the official code. They
compute what the kit computes (the kit's parity tests, tests/parity.rs, tie the kit to the official
code), in PyTorch's fastest CPU form: packed in_proj and F.scaled_dot_product_attention (what
nn.MultiheadAttention runs inside with need_weights=False), batch-first tokens (B*T, L, C).
- CLIP ViT-B/16 and its block follow openai/CLIP clip/model.py (VisionTransformer,
  ResidualAttentionBlock: pre-LN, QuickGELU, CLS + positional embedding, ln_pre, ln_post).
- ST-Adapter follows linziyi96/st-adapter models_adapter.py (clip_vit_base_patch16_adapter12x384):
  one adapter per block before the MLP, fc1 -> depthwise Conv3d (3,1,1) -> fc2 on the patch tokens,
  no activation; head: mean of the per-frame CLS over T, ln_post (frozen), dropout 0.5, fc.
- AIM follows taoyang1122/adapt-image-models mmaction/models/backbones/vit_clip.py (ViT_CLIP,
  vitclip_base_k400): T-MSA (the block's own ln_1 + attention over T, CLS included) + T_Adapter,
  S_Adapter (with skip) on the spatial attention, MLP_Adapter (scale 0.5) beside the MLP, exact GELU,
  DropPath 0..0.2 per token position, temporal_embedding; head: ln_post per frame, mean over T,
  dropout 0.5, fc_cls (mmaction2 I3DHead).
- MST-Adapter has no released code: this follows the kit's src/mst_adapter.rs (vit_b16_k400): two
  adapters per block after the attention and MLP residuals, down -> three depthwise temporal convs
  (3,5,7 x1x1) fused by learned weights onto the input -> + dense 1x1x1 conv -> up, patch tokens
  only; [CLS] shift of 1/8 + 1/8 channels from the next and previous frame before each attention.
- Full fine-tuning: the frame-wise CLIP ViT-B/16 (mean CLS, ln_post, dropout, fc), every weight trained.
- The small preset: ST-Adapter on every block of a small CLIP-style ViT (shape from the flags).
Frozen backbones have requires_grad=False; AdamW(lr=1e-3, weight_decay=0.05) over the trainable set.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def vm(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """nn.MultiheadAttention's parameters (in_proj_weight rows q; k; v, out_proj), batch-first,
    with sequences along the tokens of a frame or, for AIM's T-MSA, along the frames."""

    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * c, c))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * c))
        self.out_proj = nn.Linear(c, c)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x):  # (N, S, C)
        n, s, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(n, s, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, s, c)
        return self.out_proj(o)


class Block(nn.Module):
    """CLIP's ResidualAttentionBlock: x += attn(ln_1(x)); x += mlp(ln_2(x))."""

    def __init__(self, c, heads):
        super().__init__()
        self.attn = Attention(c, heads)
        self.ln_1 = nn.LayerNorm(c)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(c, 4 * c))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * c, c))
        self.ln_2 = nn.LayerNorm(c)

    def forward(self, x, grid=None):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def to_grid(p, t, g):  # (B*T, H*W, W_a) -> (B, W_a, T, H, W)
    bt, hw, w = p.shape
    return p.view(bt // t, t, g, g, w).permute(0, 4, 1, 2, 3)


def from_grid(y):  # (B, W_a, T, H, W) -> (B*T, H*W, W_a)
    b, w, t, h, ww = y.shape
    return y.permute(0, 2, 3, 4, 1).reshape(b * t, h * ww, w)


class StAdapter(nn.Module):
    """fc1 -> depthwise Conv3d (3,1,1) -> fc2 on the patch tokens, residual; CLS untouched."""

    def __init__(self, c, w, kernel=(3, 1, 1)):
        super().__init__()
        self.fc1 = nn.Linear(c, w)
        self.conv = nn.Conv3d(w, w, kernel, padding=tuple(k // 2 for k in kernel), groups=w)
        self.fc2 = nn.Linear(w, c)
        for p in (self.conv.weight, self.conv.bias, self.fc1.bias, self.fc2.bias):
            nn.init.zeros_(p)

    def forward(self, x, grid):
        t, g = grid
        cls, p = x[:, :1], x[:, 1:]
        y = self.fc2(from_grid(self.conv(to_grid(self.fc1(p), t, g))))
        return torch.cat([cls, p + y], 1)


class StBlock(Block):
    def __init__(self, c, heads, w):
        super().__init__(c, heads)
        self.adapter_pre_mlp = StAdapter(c, w)

    def forward(self, x, grid):
        x = x + self.attn(self.ln_1(x))
        x = self.adapter_pre_mlp(x, grid)
        return x + self.mlp(self.ln_2(x))


class DropPath(nn.Module):
    """timm DropPath on AIM's sequence-first tensors: one mask entry per token position."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):  # (B*T, L, C): mask per token position l
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(1, x.shape[1], 1).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class AimAdapter(nn.Module):
    def __init__(self, c, hidden, skip):
        super().__init__()
        self.skip = skip
        self.D_fc1 = nn.Linear(c, hidden)
        self.act = nn.GELU()
        self.D_fc2 = nn.Linear(hidden, c)
        nn.init.zeros_(self.D_fc2.weight)
        nn.init.zeros_(self.D_fc2.bias)

    def forward(self, x):
        y = self.D_fc2(self.act(self.D_fc1(x)))
        return x + y if self.skip else y


class AimBlock(Block):
    def __init__(self, c, heads, t, scale, drop_path):
        super().__init__(c, heads)
        self.t = t
        self.scale = scale
        self.T_Adapter = AimAdapter(c, c // 4, False)
        self.S_Adapter = AimAdapter(c, c // 4, True)
        self.MLP_Adapter = AimAdapter(c, c // 4, False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, grid):
        bt, n, c = x.shape
        b = bt // self.t
        # temporal: (b t) n c -> (b n) t c, the block's own ln_1 + attention over T
        xt = x.view(b, self.t, n, c).transpose(1, 2).reshape(b * n, self.t, c)
        xt = self.T_Adapter(self.attn(self.ln_1(xt)))
        xt = xt.view(b, n, self.t, c).transpose(1, 2).reshape(bt, n, c)
        x = x + self.drop_path(xt)
        x = x + self.S_Adapter(self.attn(self.ln_1(x)))
        xn = self.ln_2(x)
        return x + self.mlp(xn) + self.drop_path(self.scale * self.MLP_Adapter(xn))


class MstAdapter(nn.Module):
    def __init__(self, c, w, kernels=(3, 5, 7)):
        super().__init__()
        self.down = nn.Linear(c, w)
        self.branches = nn.ModuleList([nn.Conv3d(w, w, (k, 1, 1), padding=(k // 2, 0, 0), groups=w) for k in kernels])
        self.fusion = nn.Parameter(torch.full((len(kernels),), 0.33))
        self.pointwise = nn.Linear(w, w)
        self.up = nn.Linear(w, c)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x, grid):
        t, g = grid
        cls, p = x[:, :1], x[:, 1:]
        v = self.down(p)
        vg = to_grid(v, t, g)
        z = v + from_grid(sum(wi * conv(vg) for wi, conv in zip(self.fusion, self.branches)))
        y = z + self.pointwise(z)
        return torch.cat([cls, p + self.up(y)], 1)


def cls_shift(x, t, nxt, prv):
    """CLS channels [0, nxt) from frame t+1, [nxt, nxt+prv) from frame t-1, zero at the clip ends."""
    bt, n, c = x.shape
    cls = x[:, 0].view(bt // t, t, c)
    out = cls.clone()
    out[:, :-1, :nxt] = cls[:, 1:, :nxt]
    out[:, -1, :nxt] = 0
    out[:, 1:, nxt : nxt + prv] = cls[:, :-1, nxt : nxt + prv]
    out[:, 0, nxt : nxt + prv] = 0
    return torch.cat([out.view(bt, 1, c), x[:, 1:]], 1)


class MstBlock(Block):
    def __init__(self, c, heads, w):
        super().__init__(c, heads)
        self.adapter_attn = MstAdapter(c, w)
        self.adapter_mlp = MstAdapter(c, w)
        self.shift = (c // 8, c // 8)

    def forward(self, x, grid):
        x = x + self.attn(self.ln_1(cls_shift(x, grid[0], *self.shift)))
        x = self.adapter_attn(x, grid)
        x = x + self.mlp(self.ln_2(x))
        return self.adapter_mlp(x, grid)


class VideoViT(nn.Module):
    """CLIP's VisionTransformer on every frame; head per `head` ('st': mean CLS, ln_post, dropout,
    fc; 'aim': ln_post per frame, mean, dropout, fc_cls)."""

    def __init__(self, res, patch, c, layers, heads, classes, frames, block, head="st", temporal=False):
        super().__init__()
        g = res // patch
        self.patch, self.g, self.frames, self.head = patch, g, frames, head
        self.conv1 = nn.Conv2d(3, c, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(c**-0.5 * torch.randn(c))
        self.positional_embedding = nn.Parameter(c**-0.5 * torch.randn(g * g + 1, c))
        self.temporal_embedding = nn.Parameter(torch.zeros(1, frames, c)) if temporal else None
        self.ln_pre = nn.LayerNorm(c)
        self.resblocks = nn.ModuleList([block(i) for i in range(layers)])
        self.ln_post = nn.LayerNorm(c)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(c, classes)

    def forward(self, video):  # (B, 3, T, H, W)
        b, _, t, h, w = video.shape
        x = self.conv1(video.transpose(1, 2).reshape(b * t, 3, h, w)).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b * t, 1, -1), x], 1) + self.positional_embedding
        if self.temporal_embedding is not None:
            x = (x.view(b, t, -1, x.shape[-1]) + self.temporal_embedding.unsqueeze(2)).view(b * t, -1, x.shape[-1])
        x = self.ln_pre(x)
        for blk in self.resblocks:
            x = blk(x, (t, self.g))
        cls = x[:, 0]
        if self.head == "aim":
            x = self.ln_post(cls).view(b, t, -1).mean(1)
        else:
            x = self.ln_post(cls.view(b, t, -1).mean(1))
        return self.fc(self.dropout(x))


def build(name, a):
    c, layers, heads, classes, frames, res, patch = 768, 12, 12, 400, 8, 224, 16
    if name == "small":
        c, layers, heads, patch, res = a.small_width, a.small_layers, a.small_heads, a.small_patch, a.small_resolution
        classes, frames = a.small_classes, a.small_frames
    if name in ("st", "small"):
        w = a.small_adapter if name == "small" else 384
        m = VideoViT(res, patch, c, layers, heads, classes, frames, lambda i: StBlock(c, heads, w))
        train = lambda k: ".adapter_pre_mlp." in k or k.startswith("fc.")
    elif name == "aim":
        rates = [0.2 * i / (layers - 1) for i in range(layers)]
        m = VideoViT(
            res, patch, c, layers, heads, classes, frames,
            lambda i: AimBlock(c, heads, frames, 0.5, rates[i]), head="aim", temporal=True,
        )
        train = lambda k: "_Adapter." in k or k.startswith(("fc.", "ln_post.", "temporal_embedding"))
    elif name == "mst":
        m = VideoViT(res, patch, c, layers, heads, classes, frames, lambda i: MstBlock(c, heads, 384))
        train = lambda k: ".adapter_" in k or k.startswith("fc.")
    elif name == "full":
        m = VideoViT(res, patch, c, layers, heads, classes, frames, lambda i: Block(c, heads))
        train = lambda k: True
    else:
        raise SystemExit(f"no model {name}")
    for k, p in m.named_parameters():
        p.requires_grad_(train(k))
    return m, frames, res


def secs(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def timed(metrics, name, warm_up, f):
    """Wall-clock and process CPU seconds of f() into metrics[name] and metrics[name + '_cpu']."""
    c = time.process_time()
    t = secs(f)
    c = time.process_time() - c
    if not warm_up:
        metrics.setdefault(name, []).append(t)
        metrics.setdefault(name + "_cpu", []).append(c)


# Each GEMM shape is timed over this many products (as in src/bench.rs).
GEMM_REPEATS = 5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=1)
    ap.add_argument("--eval-batch", type=int, default=1)
    for k, v in dict(width=64, layers=4, heads=4, patch=4, resolution=32, frames=8, batch=32, adapter=16, classes=10).items():
        ap.add_argument(f"--small-{k}", type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    reps = max(a.reps, 1)
    out = {"metrics": {}, "version": torch.__version__}
    kind, _, model = a.case.partition(":")
    if kind == "gemm":
        out["base_mb"] = vm("VmRSS:")
        vals, vals_cpu = [], []
        for i in range(reps + 1):
            best, best_cpu = 0.0, 0.0
            for m, n, k in [(1576, 2304, 768), (1576, 3072, 768), (1576, 768, 3072)]:
                x, y = torch.rand(m, k), torch.rand(k, n)
                c = time.process_time()
                t = secs(lambda: [x @ y for _ in range(GEMM_REPEATS)])
                c = time.process_time() - c
                flop = 2 * m * n * k * GEMM_REPEATS
                best, best_cpu = max(best, flop / t / 1e9), max(best_cpu, flop / c / 1e9)
            if i > 0:
                vals.append(best)
                vals_cpu.append(best_cpu)
        # GFLOP per second of wall-clock time, and per second of CPU time (all threads)
        out["metrics"]["gflops"] = vals
        out["metrics"]["gflops_cpu"] = vals_cpu
    elif kind == "block":
        blk = Block(768, 12)
        frozen = Block(768, 12)
        frozen.load_state_dict(blk.state_dict())
        frozen.requires_grad_(False)
        x0 = torch.randn(8, 197, 768)

        def fwd_bwd(m):
            x = x0.clone().requires_grad_(True)
            m(x).sum().backward()
            m.zero_grad(set_to_none=True)

        def fwd():
            with torch.no_grad():
                blk(x0)

        for i in range(reps + 1):
            timed(out["metrics"], "forward", i == 0, fwd)
            timed(out["metrics"], "fwd_bwd_trained", i == 0, lambda: fwd_bwd(blk))
            timed(out["metrics"], "fwd_bwd_frozen", i == 0, lambda: fwd_bwd(frozen))
        out["base_mb"] = vm("VmRSS:")
    elif kind in ("step", "eval"):
        m, frames, res = build(model, a)
        batch = a.small_batch if model == "small" else (a.clips if kind == "step" else a.eval_batch)
        video = torch.randn(batch, 3, frames, res, res)
        labels = torch.arange(batch) % m.fc.out_features
        out["base_mb"] = vm("VmRSS:")
        if kind == "step":
            m.train()
            opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)

            def step():
                loss = F.cross_entropy(m(video), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for i in range(reps + 1):
                timed(out["metrics"], "step", i == 0, step)
        else:
            m.eval()
            with torch.no_grad():
                for i in range(reps + 1):
                    timed(out["metrics"], "forward", i == 0, lambda: m(video))
    else:
        raise SystemExit(f"no case {a.case}")
    out["peak_mb"] = vm("VmHWM:")
    print("BENCH_RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
