"""The evaluation report's pictures (DESIGN §9): a 2-D map, P@k curves, per-finding bars, a query gallery.

matplotlib with the Agg backend (no display), numpy and scikit-learn only. Everything is
seeded and sized to stay fast: the map uses at most `MAP_POINTS` exams, metric MDS on
cosine distances for up to `MDS_POINTS` and PCA beyond.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DEFAULT_SEED
from .neighbours import l2_normalise, nearest_neighbours
from .retrieval import DEFAULT_K

if TYPE_CHECKING:  # pragma: no cover
    from .evalset import EvalSet
    from .records import MetricRecord

MAP_POINTS = 2000
MDS_POINTS = 600
GALLERY_QUERIES = 6
GALLERY_K = 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def project_2d(embeddings: np.ndarray, method: str = "auto", seed: int = DEFAULT_SEED) -> tuple[np.ndarray, str]:
    """2-D coordinates: metric MDS of cosine distances (small n) or PCA (any n)."""
    x = l2_normalise(np.asarray(embeddings, dtype=np.float32))
    n = x.shape[0]
    if method == "auto":
        method = "mds" if n <= MDS_POINTS else "pca"
    if n < 3:
        return np.zeros((n, 2), np.float32), method
    if method == "mds":
        from sklearn.manifold import MDS

        dist = np.clip(1.0 - x @ x.T, 0.0, 2.0).astype(np.float64)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        import inspect

        params = inspect.signature(MDS).parameters
        kwargs: dict[str, Any] = dict(n_components=2, random_state=seed, n_init=1, max_iter=200)
        if "metric_mds" in params:  # scikit-learn >= 1.8: `metric` names the dissimilarity
            kwargs.update(metric="precomputed", metric_mds=True, init="classical_mds")
        else:
            kwargs.update(dissimilarity="precomputed")
        if "normalized_stress" in params:
            kwargs["normalized_stress"] = "auto"
        mds = MDS(**kwargs)
        return mds.fit_transform(dist).astype(np.float32), "MDS"
    centred = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:2].T).astype(np.float32), "PCA"


def _primary_finding(labels: np.ndarray, findings: Sequence[str], top: Sequence[str]) -> list[str]:
    """Colour class per item: its rarest finding among `top`, 'normal', or 'other'."""
    counts = labels.sum(0)
    idx = {f: j for j, f in enumerate(findings)}
    order = sorted(top, key=lambda f: counts[idx[f]])
    out = []
    for row in labels:
        hit = next((f for f in order if row[idx[f]]), None)
        if hit is None:
            hit = "normal" if "no_finding" in idx and row[idx["no_finding"]] else "other"
        out.append(hit)
    return out


def embedding_map(data: EvalSet, path: Path, *, seed: int = DEFAULT_SEED, method: str = "auto") -> Path:
    """Two panels of the same 2-D map: normal vs abnormal, and coloured by finding."""
    plt = _pyplot()
    n = len(data)
    rows = np.arange(n)
    if n > MAP_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(n, MAP_POINTS, replace=False))
    xy, used = project_2d(data.embeddings[rows], method, seed)
    labels = data.labels[rows]
    findings = list(data.findings)
    normal = labels[:, findings.index("no_finding")] if "no_finding" in findings else np.zeros(len(rows), bool)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    ax = axes[0]
    ax.scatter(xy[~normal, 0], xy[~normal, 1], s=9, c="#d62728", alpha=0.7, label=f"abnormal ({int((~normal).sum())})")
    ax.scatter(xy[normal, 0], xy[normal, 1], s=9, c="#1f77b4", alpha=0.7, label=f"normal ({int(normal.sum())})")
    ax.set_title(f"{used} map, normal vs abnormal")
    ax.legend(loc="best", fontsize=8)
    abnormal = [f for f in findings if f != "no_finding"]
    counts = labels.sum(0)
    top = [f for f in sorted(abnormal, key=lambda f: -counts[findings.index(f)]) if counts[findings.index(f)] > 0][:9]
    classes = _primary_finding(labels, findings, top)
    cmap = plt.get_cmap("tab10")
    ax = axes[1]
    for i, name in enumerate(["normal", *top, "other"]):
        m = np.array([c == name for c in classes])
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=9, alpha=0.75, color="#bbbbbb" if name == "normal" else cmap(i % 10),
                       label=f"{name} ({int(m.sum())})")
    ax.set_title(f"{used} map by finding (rarest finding shown)")
    ax.legend(loc="best", fontsize=7, markerscale=1.5)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"model version {data.model_version}, split {data.split}, {len(rows)} exams")
    return _save(fig, path)


def precision_curve_plot(curve: dict[str, Any], path: Path, model_version: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(curve["k"], curve["model"], "o-", label=f"model {model_version}")
    ax.plot(curve["k"], curve["random"], "s--", label="random embeddings")
    ax.plot(curve["k"], curve["chance"], ":", color="black", label="chance (random ranking)")
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("P@k (shares >= 1 label)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Precision at k")
    return _save(fig, path)


def finding_bars(records: Sequence[MetricRecord], path: Path) -> Path:
    plt = _pyplot()
    recs = sorted(records, key=lambda r: r.value if r.value == r.value else -1)
    names = [r.metric.split("/", 1)[1] for r in recs]
    y = np.arange(len(recs))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(recs) + 1.2))
    ax.barh(y, [r.value for r in recs], color="#1f77b4", label="model")
    ax.scatter([r.chance_value for r in recs], y, marker="|", s=200, color="black", label="chance", zorder=3)
    ax.scatter([r.random_value for r in recs], y, marker="x", color="#d62728", label="random embeddings", zorder=3)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"P@{recs[0].k if recs else DEFAULT_K} (neighbour has the finding)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _short(labels: np.ndarray, findings: Sequence[str]) -> str:
    names = [f for f, v in zip(findings, labels) if v]
    text = ", ".join("normal" if f == "no_finding" else f.replace("_", " ") for f in names) or "-"
    return text if len(text) <= 34 else text[:32] + "…"


def _load_images(shards: str | Path, wanted: set[tuple[str, int]], split: str) -> dict[tuple[str, int], np.ndarray]:
    from radsim.imaging.reader import iter_manifest_samples

    out: dict[tuple[str, int], np.ndarray] = {}
    for sample in iter_manifest_samples(shards, split=None if split == "all" else split, as_tensor=False):
        key = (sample["exam_key"], int(sample["image_index"]))
        if key in wanted:
            out[key] = sample["image"]
            if len(out) == len(wanted):
                break
    return out


def gallery(data: EvalSet, shards: str | Path, path: Path, *, seed: int = DEFAULT_SEED,
            n_queries: int = GALLERY_QUERIES, k: int = GALLERY_K) -> tuple[Path | None, str | None]:
    """Rows of query → its k nearest exams with their findings; (None, note) when images are missing."""
    n = len(data)
    if n < k + 1:
        return None, f"no query gallery: {n} exams are too few for {k} neighbours"
    findings = list(data.findings)
    rng = np.random.default_rng(seed)
    normal = data.labels[:, findings.index("no_finding")] if "no_finding" in findings else np.zeros(n, bool)
    pools = [np.flatnonzero(~normal), np.flatnonzero(normal)]
    picks: list[int] = []
    for i in range(n_queries):
        pool = [p for p in pools[i % 2] if p not in picks] or [p for p in range(n) if p not in picks]
        if pool:
            picks.append(int(rng.choice(pool)))
    q = np.array(picks, dtype=np.int64)
    nn_idx, nn_sim = nearest_neighbours(data.embeddings, k, queries=q)
    wanted = {(data.exam_keys[i], int(data.image_index[i])) for i in [*q.tolist(), *nn_idx.ravel().tolist()]}
    try:
        images = _load_images(shards, wanted, data.split)
    except Exception as exc:  # noqa: BLE001 - a gallery must not fail the evaluation
        return None, f"no query gallery: cannot read shards in {shards} ({str(exc).splitlines()[0]})"
    if len(images) < len(wanted):
        return None, f"no query gallery: {len(wanted) - len(images)} image(s) not found in {shards} (other shards?)"
    plt = _pyplot()
    fig, axes = plt.subplots(len(q), k + 1, figsize=(2.1 * (k + 1), 2.35 * len(q)), squeeze=False)
    for r, qi in enumerate(q):
        cells = [(int(qi), None)] + [(int(j), float(s)) for j, s in zip(nn_idx[r], nn_sim[r])]
        for c, (j, sim) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(images[(data.exam_keys[j], int(data.image_index[j]))], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            head = "QUERY" if sim is None else f"#{c}  d={max(0.0, 1 - sim):.3g}"
            ax.set_title(f"{head}\n{_short(data.labels[j], findings)}", fontsize=7)
            if sim is None:
                for spine in ax.spines.values():
                    spine.set_edgecolor("#1f77b4")
                    spine.set_linewidth(2.5)
    fig.suptitle(f"model version {data.model_version}: queries (left) and their {k} nearest exams "
                 "(d = cosine distance; labels are the evaluation labels)", fontsize=9)
    return _save(fig, path), None
