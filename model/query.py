"""Embed a new radiograph on the fly for `radsim similar --image` (no shard, no report needed).

The file goes through exactly the sharding path (decode → square 8-bit image at the
model's size → [0, 1] floats), so its vector is comparable with the published ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radsim.data_contracts import UsageError

from .checkpoint import LoadedModel, load_model
from .data import float_images_at
from .embed import embed_images


def image_tensor(path: str | Path, image_size: int, source_size: int | None = None) -> torch.Tensor:
    """[1, 1, S, S] float tensor of an image file, or a UsageError naming the reason.

    The image is normalised as sharding does (at the shards' size, `source_size`), then resized
    as training does, so a query matches the published embeddings of the same image.
    """
    from radsim.imaging.decode import ImageRejected, read_image
    from radsim.imaging.normalise import square_image

    stored = int(source_size or image_size)
    try:
        decoded = read_image(path, output_size=stored)  # as the shards were decoded: reduced where it can be
    except ImageRejected as exc:
        raise UsageError(f"cannot use {path} as a query image: {exc.message} ({exc.reason_code})") from None
    pixels = square_image(decoded.pixels, stored, decoded.geometry).astype(np.float32) / 255.0
    return float_images_at(torch.from_numpy(pixels)[None, None], int(image_size))


def embed_image_file(model: LoadedModel | str | Path, path: str | Path, *, device: str = "cpu") -> np.ndarray:
    """The [D] float32 embedding of one radiograph under a model (a folder or a loaded model)."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    x = image_tensor(path, loaded.card.image_size, loaded.card.training.get("source_image_size"))
    return embed_images(loaded.model, x, batch_size=1, device=device)[0]
