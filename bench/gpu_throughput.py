"""Training throughput of the big backbones: bf16 autocast + channels_last on a GPU (issue 14).

One optimiser step per batch of random 1-channel images with multi-label targets, through the
real step (`radsim.model.train_core.optimizer_step`: ML2 loss, augmentation, clipping). Published
anchors to compare with: about 2,470 img/s for ResNet-50 with AMP on an A100, 914 img/s for
DenseNet-121 on an RTX 3090 (both at 224 px).

    python -m bench.gpu_throughput                       # cuda, 224 px, resnet50 and densenet121
    python -m bench.gpu_throughput --device cpu --size 64 --steps 2 --batch-size 4   # a dry run
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def throughput(backbone: str, *, device: str, size: int, batch_size: int, steps: int, warmup: int) -> dict:
    import torch

    from radsim.model.augment import augmentation
    from radsim.model.distributed import DistContext
    from radsim.model.encoders import build_encoder
    from radsim.model.losses import build_loss
    from radsim.model.train_core import cosine_with_warmup, optimizer_step, resolve_device

    setup = resolve_device(device)
    torch.manual_seed(0)
    model = setup.prepare(build_encoder(backbone, embedding_dim=128))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = cosine_with_warmup(opt, warmup + steps, 0)
    loss = build_loss("ml2")
    x = torch.rand(batch_size, 1, size, size)
    y = (torch.rand(batch_size, 6) < 0.3).float()
    y[:, 0] = 1.0  # every item shares a label: the loss has positives
    ctx, aug = DistContext(), augmentation("chest")
    if setup.device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    for step in range(warmup + steps):
        if step == warmup:
            if setup.device.type == "cuda":
                torch.cuda.synchronize(setup.device)
            t0 = time.perf_counter()
        optimizer_step(model, loss, opt, sched, [(x, y)], setup, step=step + 1, clip_norm=1.0, ctx=ctx, augment=aug)
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    seconds = time.perf_counter() - t0
    return {"backbone": backbone, "device": str(setup.device), "amp": str(setup.amp_dtype), "channels_last":
            setup.channels_last, "size": size, "batch_size": batch_size, "steps": steps,
            "images_per_s": round(batch_size * steps / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbones", default="resnet50,densenet121")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    for backbone in args.backbones.split(","):
        print(json.dumps(throughput(backbone, device=args.device, size=args.size, batch_size=args.batch_size,
                                    steps=args.steps, warmup=args.warmup)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
