"""Train-time augmentation for chest films: small affine moves, crops, brightness, contrast, gamma.

Real radiographs differ in patient position, collimation and exposure, not in handedness: the
heart is on the left. So the default recipe ("chest") jitters geometry a little (a few degrees of
rotation, a few percent of scale and shift, which also crops the border) and intensity (brightness,
contrast, gamma), and never flips left-right. Everything runs on the batch tensor, on the training
device, with a generator seeded by (seed, step): a resumed run draws the same augmentations as an
uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transforms (0 disables one)."""

    rotate_deg: float = 0.0  # uniform in ±rotate_deg
    scale: float = 0.0  # zoom factor uniform in [1 - scale, 1 + scale]
    shift: float = 0.0  # translation uniform in ±shift of the side
    brightness: float = 0.0  # additive, uniform in ±brightness (images are in [0, 1])
    contrast: float = 0.0  # multiplicative about the image mean, uniform in [1 - c, 1 + c]
    gamma: float = 0.0  # exponent exp(uniform(±log(1 + gamma)))
    hflip: bool = False  # left-right flips: off for chest films (situs), on only if a site asks

    @property
    def active(self) -> bool:
        return any((self.rotate_deg, self.scale, self.shift, self.brightness, self.contrast, self.gamma, self.hflip))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a float batch [B, 1, H, W] in [0, 1]; returns a new tensor of the same shape."""
        if not self.active:
            return x
        b = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(b, generator=generator, device=generator.device)

        if self.rotate_deg or self.scale or self.shift or self.hflip:
            angle = uniform(-self.rotate_deg, self.rotate_deg) * (math.pi / 180.0)
            zoom = uniform(1.0 - self.scale, 1.0 + self.scale)
            tx, ty = uniform(-self.shift, self.shift) * 2.0, uniform(-self.shift, self.shift) * 2.0
            flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b, device=x.device)
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * uniform(1.0 - self.contrast, 1.0 + self.contrast).view(b, 1, 1, 1) + mean
        if self.brightness:
            x = x + uniform(-self.brightness, self.brightness).view(b, 1, 1, 1)
        x = x.clamp(0.0, 1.0)
        if self.gamma:
            g = torch.exp(uniform(-math.log1p(self.gamma), math.log1p(self.gamma))).view(b, 1, 1, 1)
            x = x.clamp_min(1e-6).pow(g)
        return x


AUGMENTATIONS: dict[str, Augmentation] = {
    "none": Augmentation(),
    # the default for real films: chosen on nih-dev (bench/bench_real.py ablation)
    "chest": Augmentation(rotate_deg=7.0, scale=0.1, shift=0.06, brightness=0.1, contrast=0.15, gamma=0.25),
    "mild": Augmentation(rotate_deg=3.0, scale=0.05, shift=0.03, brightness=0.05, contrast=0.1, gamma=0.1),
    "strong": Augmentation(rotate_deg=12.0, scale=0.2, shift=0.1, brightness=0.15, contrast=0.25, gamma=0.4),
}


def augmentation(name: str) -> Augmentation:
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        from radsim.data_contracts import UsageError

        raise UsageError(f"unknown augmentation {name!r}: choose one of {', '.join(AUGMENTATIONS)}") from None


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The augmentation generator of one optimiser step: a function of (seed, step) only."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
    return g
