"""`--init-weights PATH`: load a local torchvision-named state dict into an encoder's backbone.

Safety and clarity over convenience: the file is read with `weights_only=True` (no
arbitrary pickles), an RGB first conv is adapted to one channel by summing its weights
(a gray image x replicated to RGB gives the same response), classifier heads are
ignored, and every key that is missing, unexpected or of the wrong shape is reported.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from radsim.data_contracts import UsageError

# Old torchvision DenseNet checkpoints name 'denselayer1.norm.1.weight' for 'denselayer1.norm1.weight'.
_OLD_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every backbone tensor came from the file."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 5) -> str:
        def few(keys: list[str]) -> str:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        parts = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        if self.adapted:
            parts.append(f"adapted {few(self.adapted)}")
        if self.ignored:
            parts.append(f"ignored head {few(self.ignored)}")
        if self.missing:
            parts.append(f"missing (kept random init) {few(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected {few(self.unexpected)}")
        if self.mismatched:
            parts.append(
                "shape mismatch " + few([f"{k} file{tuple(a)} vs model{tuple(b)}" for k, a, b in self.mismatched])
            )
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a local file (unwraps {'state_dict': ...}, strips 'module.')."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"init weights file not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"init weights {p} cannot be loaded with weights_only=True (not a plain state dict): {first}"
        ) from None
    except Exception as exc:  # zip/EOF/format errors from torch.load
        raise UsageError(
            f"cannot read init weights {p}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise UsageError(f"init weights {p} is not a state dict of named tensors")
    out = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        key = _OLD_DENSENET.sub(r"\1\2", key)
        out[key] = value
    return out


def load_init_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> LoadReport:
    """Load `path` into `model.backbone` (or `model` itself when it has no `.backbone`).

    Raises UsageError when no tensor matches (wrong architecture), or with `strict=True`
    when anything is missing, unexpected or mismatched. Otherwise returns the report.
    """
    target = getattr(model, "backbone", model)
    source = read_state_dict(path)
    own = target.state_dict()
    report = LoadReport(path=str(path))
    first_conv = getattr(target, "first_conv_key", None)
    heads = tuple(getattr(target, "head_prefixes", ()))
    new_state: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key not in own:
            (report.ignored if key.startswith(heads) and heads else report.unexpected).append(key)
            continue
        want = own[key]
        if key == first_conv and value.ndim == 4 and want.ndim == 4 and value.shape[1] != want.shape[1] \
                and want.shape[1] == 1 and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]:
            value = value.sum(dim=1, keepdim=True)
            report.adapted.append(f"{key} ({tuple(source[key].shape)[1]} channels summed to 1)")
        if tuple(value.shape) != tuple(want.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(want.shape)))
            continue
        new_state[key] = value.to(want.dtype)
        report.loaded.append(key)
    # Old checkpoints lack BN's num_batches_tracked; that is not a real gap.
    wrong_shape = {m[0] for m in report.mismatched}
    report.missing = [k for k in own if k not in new_state and k not in wrong_shape
                      and not k.endswith("num_batches_tracked")]
    if not report.loaded:
        raise UsageError(
            f"no tensor in {path} matches backbone {type(target).__name__}: "
            f"file has e.g. {', '.join(list(source)[:3]) or 'nothing'}; model expects e.g. {', '.join(list(own)[:3])}"
        )
    if strict and not report.ok:
        raise UsageError(f"init weights do not fit the backbone: {report.summary()}")
    target.load_state_dict(new_state, strict=False)
    return report
