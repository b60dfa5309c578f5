#!/usr/bin/env python3
"""Convert a released ST-Adapter or AIM checkpoint to safetensors under the official keys.

ST-Adapter (linziyi96/st-adapter) saves only the trainable tensors (adapters and `fc`) in a dict
under "model"; load it on top of CLIP weights:

  python scripts/convert_checkpoint.py st k400_vitb16_8f.pth st_k400.safetensors
  cargo run --release --bin forward -- --model fixtures/configs/st_adapter_vit_b16_12x384.ron \
      --clip ViT-B-16.visual.safetensors --checkpoint st_k400.safetensors ...

AIM (taoyang1122/adapt-image-models) saves mmcv checkpoints: the whole model under "state_dict"
(`backbone.*`, `cls_head.fc_cls.*`, CLIP weights included); load it alone:

  python scripts/convert_checkpoint.py aim aim_vitb16_k400.pth aim_k400.safetensors
  cargo run --release --bin forward -- --model fixtures/configs/aim_vitclip_base_k400.ron \
      --weights aim_k400.safetensors ...

A `module.` prefix (DistributedDataParallel) is removed. Tensors keep their dtype. Needs torch.
"""
import argparse
import sys

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["st", "aim"])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    a = ap.parse_args()
    obj = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    key = "model" if a.kind == "st" else "state_dict"
    if not isinstance(obj, dict) or key not in obj:
        sys.exit(f"{a.checkpoint}: expected a dict with `{key}` (found {list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__})")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj[key].items() if torch.is_tensor(v)}
    save_file({k: v.contiguous() for k, v in sd.items()}, a.output, metadata={"source": a.checkpoint, "kind": a.kind})
    print(f"wrote {len(sd)} tensors to {a.output}")


if __name__ == "__main__":
    main()
