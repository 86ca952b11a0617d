"""Embed images in batches under no_grad: the publish stage and training's validation share it."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from .embed_config import DEFAULT_BATCH_SIZE
from .train_core import DeviceSetup, resolve_device


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if torch.is_tensor(images):
        yield from torch.split(images, batch_size)
    else:
        for item in images:
            yield item[0] if isinstance(item, (tuple, list)) else item


@torch.no_grad()
def embed_images(
    model: nn.Module,
    images: torch.Tensor | Iterable[torch.Tensor],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | DeviceSetup = "auto",
    progress: bool = False,
) -> np.ndarray:
    """[N, D] float32 embeddings of a [N, 1, S, S] tensor or an iterable of batches.

    An iterable may yield tensors or (images, ...) tuples. The model is put in eval mode
    for the call and returned to its previous mode afterwards.
    """
    from tqdm import tqdm

    setup = device if isinstance(device, DeviceSetup) else resolve_device(device)
    was_training = model.training
    model = setup.prepare(model).eval()
    out: list[np.ndarray] = []
    try:
        for x in tqdm(_batches(images, batch_size), disable=not progress, unit="batch", leave=False):
            with setup.autocast():
                z = model(setup.images(x))
            out.append(z.float().cpu().numpy())
    finally:
        model.train(was_training)
    dim = getattr(model, "embedding_dim", 0)
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.empty((0, dim), np.float32)
