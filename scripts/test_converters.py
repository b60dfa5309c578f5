#!/usr/bin/env python3
"""Optional check of the converters (needs torch): builds a TorchScript "CLIP" whose visual tensors
are the tiny parity fixture's, and ST/AIM-style .pth checkpoints from the same fixture, converts
them, and runs them through the `forward` binary, comparing logits with the official ones.

  python scripts/test_converters.py   (from the repository root; builds the forward binary)
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAR = os.path.join(ROOT, "fixtures", "parity")


class Holder(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        self.visual = torch.nn.Module()
        for k, v in tensors.items():
            mod = self.visual
            *path, leaf = k.split(".")
            for p in path:
                if not hasattr(mod, p):
                    mod.add_module(p, torch.nn.Module())
                mod = getattr(mod, p)
            mod.register_parameter(leaf, torch.nn.Parameter(v, requires_grad=False))

    def forward(self, x):
        return x


def run(args):
    print("+", " ".join(args))
    subprocess.run(args, check=True, cwd=ROOT)


def logits_close(out, fixture):
    ours = load_file(out)["logits"]
    want = load_file(os.path.join(PAR, fixture, "expected.safetensors"))["logits"]
    d = (ours - want).abs().max().item()
    print(f"{fixture}: max |Δlogits| = {d:.2e}")
    return d < 1e-2  # the CLIP part went through fp16 (weights rounded: ~1e-3 on these logits)


def main():
    run(["cargo", "build", "--release", "--bin", "forward"])
    fwd = os.path.join(ROOT, "target", "release", "forward")
    tmp = tempfile.mkdtemp()
    ok = True
    # ST-Adapter: CLIP (fp16, TorchScript, with proj) + trainable-only checkpoint under "model"
    w = load_file(os.path.join(PAR, "st_adapter_k400", "weights.safetensors"))
    clip = {k: v.half() for k, v in w.items() if "adapter" not in k and not k.startswith("fc.")}
    clip["proj"] = torch.zeros(64, 32, dtype=torch.half)
    torch.jit.save(torch.jit.script(Holder(clip)), os.path.join(tmp, "clip.pt"))
    torch.save({"model": {"module." + k: v for k, v in w.items() if "adapter" in k or k.startswith("fc.")}, "epoch": 3}, os.path.join(tmp, "st.pth"))
    run([sys.executable, "scripts/convert_clip.py", os.path.join(tmp, "clip.pt"), os.path.join(tmp, "clip.safetensors")])
    run([sys.executable, "scripts/convert_checkpoint.py", "st", os.path.join(tmp, "st.pth"), os.path.join(tmp, "st.safetensors")])
    out = os.path.join(tmp, "st_out.safetensors")
    run([fwd, "--model", "fixtures/configs/tiny_st_adapter_k400.ron", "--clip", os.path.join(tmp, "clip.safetensors"),
         "--checkpoint", os.path.join(tmp, "st.safetensors"), "--input", os.path.join(PAR, "st_adapter_k400", "input.safetensors"), "--output", out])
    ok &= logits_close(out, "st_adapter_k400")
    # AIM: mmcv checkpoint with the whole state dict under "state_dict"
    w = load_file(os.path.join(PAR, "aim_k400", "weights.safetensors"))
    torch.save({"meta": {}, "state_dict": dict(w)}, os.path.join(tmp, "aim.pth"))
    run([sys.executable, "scripts/convert_checkpoint.py", "aim", os.path.join(tmp, "aim.pth"), os.path.join(tmp, "aim.safetensors")])
    out = os.path.join(tmp, "aim_out.safetensors")
    run([fwd, "--model", "fixtures/configs/tiny_aim_k400.ron", "--weights", os.path.join(tmp, "aim.safetensors"),
         "--input", os.path.join(PAR, "aim_k400", "input.safetensors"), "--output", out])
    ok &= logits_close(out, "aim_k400")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
