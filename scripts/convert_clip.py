#!/usr/bin/env python3
"""Convert OpenAI's released CLIP checkpoints to safetensors for video-adapters.

OpenAI distributes `ViT-B-16.pt` and `ViT-L-14.pt` as TorchScript archives (what `clip.load`
downloads to ~/.cache/clip). This keeps the image encoder's tensors under their own keys with the
`visual.` prefix stripped (so the file holds `conv1.weight`, `class_embedding`, ...,
`transformer.resblocks.{i}.attn.in_proj_weight`, ..., `ln_post.*`, `proj`) in their stored dtype
(fp16). The kit ignores `proj` and converts fp16 to f32 when it loads.

  python scripts/convert_clip.py ~/.cache/clip/ViT-B-16.pt ViT-B-16.visual.safetensors
  cargo run --release --bin forward -- --model fixtures/configs/st_adapter_vit_b16_12x384.ron \
      --clip ViT-B-16.visual.safetensors --checkpoint st_k400.safetensors --input clip.safetensors --output out.safetensors

Also accepts a plain state dict (.pt/.pth) with `visual.` keys. Needs torch and safetensors.
"""
import argparse
import sys

import torch
from safetensors.torch import save_file


def load_state_dict(path):
    try:
        model = torch.jit.load(path, map_location="cpu")
        return {k: v for k, v in model.state_dict().items()}
    except RuntimeError:
        obj = torch.load(path, map_location="cpu")
        return obj.get("state_dict", obj) if isinstance(obj, dict) else obj.state_dict()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="OpenAI CLIP .pt (TorchScript) or a state dict")
    ap.add_argument("output", help="output .safetensors")
    ap.add_argument("--keep-prefix", action="store_true", help="keep the `visual.` prefix (then pass --clip-prefix visual.)")
    a = ap.parse_args()
    sd = load_state_dict(a.checkpoint)
    visual = {k: v for k, v in sd.items() if k.startswith("visual.")}
    if not visual:
        sys.exit(f"{a.checkpoint}: no `visual.*` tensors (keys start with {sorted(sd)[:3]} ...)")
    out = {(k if a.keep_prefix else k[len("visual."):]): v.contiguous() for k, v in visual.items()}
    save_file(out, a.output, metadata={"source": a.checkpoint, "converted_by": "video-adapters scripts/convert_clip.py"})
    dtypes = sorted({str(v.dtype) for v in out.values()})
    print(f"wrote {len(out)} tensors ({', '.join(dtypes)}) to {a.output}")


if __name__ == "__main__":
    main()
