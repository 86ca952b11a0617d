"""Training step/epoch, scheduler, device choice and batched embedding on a toy problem."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.reducers import MeanReducer

from radsim.data_contracts import UsageError
from radsim.evaluation import precision_at_k, precision_at_k_chance
from radsim.model.embed import embed_images
from radsim.model.encoders import build_encoder
from radsim.model.losses import ML2Loss
from radsim.model.sampler import MultiLabelBatchSampler
from radsim.model.train_core import (
    NonFiniteLossError,
    cosine_with_warmup,
    resolve_device,
    train_epoch,
    train_step,
)


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


def test_a_few_epochs_learn_a_separable_toy():
    torch.manual_seed(0)
    images, labels = toy_images()
    model = build_encoder("small", embedding_dim=16)
    loss_fn = ML2Loss(margin=0.5, mining="all")
    mean_loss = ML2Loss(margin=0.5, mining="all", reducer=MeanReducer())  # AvgNonZero is no progress measure
    setup = resolve_device("cpu")
    assert setup.amp_dtype is None and not setup.channels_last
    model = setup.prepare(model)
    before = embed_images(model, images, batch_size=40, device=setup)
    with torch.no_grad():
        model.eval()
        loss_before = mean_loss(model(images), labels).item()
    sampler = MultiLabelBatchSampler(labels.numpy(), batch_size=24, findings_per_batch=3, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = cosine_with_warmup(opt, total_steps=5 * len(sampler), warmup_steps=3)
    step = 0
    for epoch in range(5):
        sampler.set_epoch(epoch)
        stats = train_epoch(model, loss_fn, opt, ((images[b], labels[b]) for b in sampler), setup,
                            start_step=step, scheduler=sched)
        step = stats.last_step
    assert step == 5 * len(sampler) and stats.images == 24 * len(sampler) and stats.images_per_s > 0
    after = embed_images(model, images, batch_size=40, device=setup)
    with torch.no_grad():
        model.eval()
        loss_after = mean_loss(model(images), labels).item()
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
    # Bright squares are easy even for random weights, so P@10 starts high; it must not drop.
    assert precision_at_k(after, labels.numpy(), k=10) >= max(0.95, precision_at_k(before, labels.numpy(), k=10))
    assert precision_at_k_chance(labels.numpy()) < 0.5
    assert np.allclose(np.linalg.norm(after, axis=1), 1, atol=1e-5)


def test_non_finite_loss_names_the_step_and_leaves_weights_alone():
    torch.manual_seed(0)
    images, labels = toy_images(n=8)
    model = build_encoder("small", embedding_dim=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    setup = resolve_device("cpu")
    calls = {"n": 0}

    def flaky(emb, lab):
        calls["n"] += 1
        return emb.sum() * (float("nan") if calls["n"] == 3 else 1.0)

    train_step(model, flaky, opt, images, labels, setup, step=1)
    train_step(model, flaky, opt, images, labels, setup, step=2)
    snapshot = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train_epoch(model, flaky, opt, [(images, labels)], setup, start_step=2)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) or "running" in k for k, v in snapshot.items())


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
