"""Scheduler, device choice and batched embedding on a toy problem (the loop itself: test_train)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radsim.data_contracts import UsageError
from radsim.model.embed import embed_images
from radsim.model.encoders import build_encoder
from radsim.model.train_core import cosine_with_warmup, resolve_device


def toy_images(n=96, size=32, seed=0):
    """no_finding / A (bright top-left square) / B (bright bottom-right) / A+B, plus noise."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.arange(n) % 4
    x = torch.rand(n, 1, size, size, generator=g) * 0.5
    a = (kind == 1) | (kind == 3)
    b = (kind == 2) | (kind == 3)
    x[a, :, 2:12, 2:12] += 1.0
    x[b, :, 20:30, 20:30] += 1.0
    labels = torch.stack([(kind == 0), a, b], 1).float()
    return x, labels


def test_cosine_schedule_with_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0)  # cosine starts at the peak
    assert lrs[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_device_choice():
    assert resolve_device("cpu").device.type == "cpu"
    auto = resolve_device("auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")


def test_embed_accepts_an_iterable_of_batches_and_restores_mode():
    torch.manual_seed(0)
    images, labels = toy_images(n=10)
    model = build_encoder("small", embedding_dim=8).train()
    whole = embed_images(model, images, batch_size=4, device="cpu")
    parts = embed_images(model, [(images[:6], labels[:6]), (images[6:], labels[6:])], device="cpu")
    assert whole.shape == (10, 8) and np.allclose(whole, parts, atol=1e-5)
    assert model.training
    assert embed_images(model, [], device="cpu").shape == (0, 8)


def test_train_config_choices_are_the_registries():
    from typing import get_args

    from radsim.model.config import Backbone, Loss
    from radsim.model.encoders import BACKBONES
    from radsim.model.losses import LOSSES

    assert set(get_args(Backbone)) == set(BACKBONES) and set(get_args(Loss)) == set(LOSSES)
