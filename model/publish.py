"""Embed every sharded image with a trained model and publish the table (DESIGN §4, §5, §12).

Every image is embedded, labelled or not: a new exam may arrive before its report, and
its row is published with null findings. The writing itself (staging, validation, the
atomic swap and the publish record) is radsim.evaluation.published, which imports no torch.

Incremental embedding (`plan_reuse`, `embed_shards(..., reuse=plan)`): shards are append-only
and a model version's weights never change, so an image already published under that version
has the vector a re-embed would give. A shard whose samples are all in the verified published
version, with the same per-shard digest in its publish record, is taken from there; only the
other shards are embedded. Anything inconsistent means a full re-embed, never a guess.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from radsim.data_contracts import RadsimError, UsageError
from radsim.evaluation.published import (
    PublishResult,
    embedding_matrix,
    embeddings_table,
    open_version,
    publish_table,
    record_path,
    sha256_file,
    table_metadata_for,
    version_dir,
)

from .checkpoint import BEST_FILE, LoadedModel, ModelCard, load_model
from .data import float_images_at
from .embed import embed_images
from .train_core import resolve_device

DEFAULT_BATCH_SIZE = 256


@dataclass
class EmbeddedRows:
    """Embedded images in manifest order: keys, splits, views, label values and vectors."""

    exam_keys: list[str]
    image_index: list[int]
    splits: list[str]
    view_positions: list[str | None]
    label_values: list[list[int | None] | None]
    embeddings: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.exam_keys)


@dataclass
class EmbeddedShards(EmbeddedRows):
    """What publication needs: every sharded image's row, with the key id and vocabulary."""

    key_id: str
    vocabulary: dict[str, Any]
    seconds: float
    shard_digests: dict[str, str] = field(default_factory=dict)  # the shards these rows cover (shard_digests())
    reused_rows: int = 0  # rows taken from the published version instead of embedded
    reused_shards: int = 0

    @property
    def images_per_s(self) -> float:
        """Images actually embedded per second (reused rows cost no embedding)."""
        embedded = self.rows - self.reused_rows
        return embedded / self.seconds if self.seconds > 0 else float("nan")


def shard_metadata(shard_dir: str | Path) -> dict[str, str]:
    path = Path(shard_dir) / "manifest.parquet"
    if not path.exists():
        raise UsageError(f"no manifest.parquet in {shard_dir}: run 'radsim shard' first")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check_compatible(loaded: LoadedModel, meta: dict[str, str], shard_dir: str | Path) -> None:
    """Refuse shards made under another key or vocabulary than the model's, or smaller than its input.

    Larger shards are resized to the model's size on the fly, as training does.
    """
    card = loaded.card
    key_id = meta.get("radsim.key_id")
    if key_id != card.key_id:
        raise UsageError(f"shards in {shard_dir} were keyed with key_id {key_id!r} but model {card.model_version} "
                         f"was trained under {card.key_id!r}: a different pseudonymisation key; use matching shards")
    findings = json.loads(meta.get("radsim.vocabulary.findings", "null") or "null")
    if findings != list(card.findings):
        raise UsageError(f"shards in {shard_dir} use another vocabulary ({len(findings or [])} findings) than model "
                         f"{card.model_version} ({len(card.findings)} findings)")
    size = meta.get("radsim.image_size")
    if size is None or int(size) < int(card.image_size):
        raise UsageError(f"shards in {shard_dir} hold {size}px images but model {card.model_version} expects "
                         f"{card.image_size}px: reshard with --image-size {card.image_size} or larger")


PartSubmitter = Callable[[list[str]], Any]
"""Shard names → a future whose `.result()` is `embed_part`'s EmbeddedPart for them (a Prefect task, say)."""


@dataclass
class EmbeddedPart(EmbeddedRows):
    """One task's share: the rows of a group of shards, and which shards and model made them."""

    shards: list[str]
    model_version: str


def shard_groups(shard_dir: str | Path, shards_per_task: int, only: Sequence[str] | None = None) -> list[list[str]]:
    """The manifest's shard names in write order (those in `only`, when given), cut into groups of
    `shards_per_task` (one task each)."""
    if shards_per_task < 1:
        raise UsageError(f"--shards-per-task must be at least 1, got {shards_per_task}")
    names = list(dict.fromkeys(pq.read_table(Path(shard_dir) / "manifest.parquet", columns=["shard"])
                               .column("shard").to_pylist()))
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    return [names[i:i + shards_per_task] for i in range(0, len(names), shards_per_task)]


def shard_digests(manifest: pa.Table) -> dict[str, str]:
    """Per shard, a sha256 of its samples' keys and stored-image hashes in manifest order.

    The publish record keeps these, so a shard that differs from the one whose rows were
    published (write_shards never rewrites one, but a folder can be replaced by hand) is
    embedded again instead of being reused.
    """
    hashes: dict[str, Any] = {}
    for shard, key, img in zip(manifest.column("shard").to_pylist(), manifest.column("sample_key").to_pylist(),
                               manifest.column("image_sha256").to_pylist()):
        h = hashes.get(shard)
        if h is None:
            h = hashes[shard] = hashlib.sha256()
        h.update(f"{key}\t{img}\n".encode())
    return {shard: h.hexdigest() for shard, h in hashes.items()}


def embed_part(loaded: LoadedModel, shard_dir: str | Path, shards: Sequence[str] | None = None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
               on_batch: Callable[[int], Any] | None = None) -> EmbeddedPart:
    """Embed the samples of `shards` (None: all) in manifest order.

    A batch never spans two shards, so every image is embedded in the same batch however the
    shards are grouped into tasks: a split run gives the same vectors as a one-process run.
    `on_batch(n)` is called after each batch (a progress bar).
    """
    from radsim.imaging.reader import iter_manifest_samples

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    rows: dict[str, list[Any]] = {"exam_key": [], "image_index": [], "split": [], "view_position": [], "labels": []}
    seen: list[str] = []

    def batches() -> Iterator[torch.Tensor]:
        buf: list[torch.Tensor] = []
        for sample in iter_manifest_samples(shard_dir, as_tensor=True, shards=shards):
            if buf and sample["shard"] != seen[-1]:
                yield float_images_at(torch.stack(buf), loaded.card.image_size)
                buf = []
            if not seen or seen[-1] != sample["shard"]:
                seen.append(sample["shard"])
            rows["exam_key"].append(sample["exam_key"])
            rows["image_index"].append(int(sample["image_index"]))
            rows["split"].append(sample["split"])
            rows["view_position"].append(sample["view_position"])
            if sample["labelled"]:
                lab = sample["labels"].tolist()
                rows["labels"].append([None if math.isnan(v) else int(v) for v in lab])  # NaN = not mentioned
            else:
                rows["labels"].append(None)
            buf.append(sample["image"])
            if len(buf) == batch_size:
                yield float_images_at(torch.stack(buf), loaded.card.image_size)
                buf = []
        if buf:
            yield float_images_at(torch.stack(buf), loaded.card.image_size)

    def counted() -> Iterator[torch.Tensor]:
        for x in batches():
            yield x
            if on_batch is not None:
                on_batch(int(x.shape[0]))

    emb = embed_images(loaded.model, counted(), batch_size=batch_size, device=resolve_device(device))
    if emb.shape[0] == 0:
        emb = np.empty((0, loaded.card.embedding_dim), np.float32)
    return EmbeddedPart(rows["exam_key"], rows["image_index"], rows["split"], rows["view_position"], rows["labels"],
                        emb, shards=list(shards) if shards is not None else seen,
                        model_version=loaded.card.model_version)


def _in_order(groups: list[list[str]], submit: PartSubmitter, window: int) -> Iterator[EmbeddedPart]:
    """Submit shard groups with at most `window` in flight; yield their parts in manifest order."""
    pending: deque[tuple[list[str], Any]] = deque()
    for group in groups:
        pending.append((group, submit(group)))
        while len(pending) > window:
            names, future = pending.popleft()
            yield _checked(future.result(), names)
    while pending:
        names, future = pending.popleft()
        yield _checked(future.result(), names)


def _checked(part: EmbeddedPart, names: list[str]) -> EmbeddedPart:
    if list(part.shards) != list(names):
        raise RadsimError(f"an embedding task returned shards {part.shards[:2]} for {names[:2]}")
    return part


def embed_shards(loaded: LoadedModel, shard_dir: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "auto", progress: bool = False, shards_per_task: int = 1,
                 submit: PartSubmitter | None = None, window: int = 2, only: Sequence[str] | None = None,
                 reuse: ReusePlan | None = None) -> EmbeddedShards:
    """Embed every sample of `shard_dir` in manifest order (GPU when present, bf16 autocast there).

    With `submit`, groups of `shards_per_task` shards are handed to the caller's executor (a
    Prefect task runner on Dask, say), at most `window` groups in flight, and the parts are
    assembled here in manifest order. Each part must come from the model `loaded` was read from
    (its model_version is checked); on the same device the vectors equal a one-process run's.
    `only` embeds just those shards (the rows are theirs alone); `reuse` (see `plan_reuse`)
    embeds the plan's shards and takes the others' rows from the published version, so the
    result covers every shard as a full run would.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if reuse is not None:
        reuse = reuse.checked_for(loaded)
        if reuse.reused_shards:
            new = embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress,
                               shards_per_task=shards_per_task, submit=submit, window=window, only=reuse.embed)
            return merge_reused(reuse, new, shard_dir)
    meta = shard_metadata(shard_dir)
    check_compatible(loaded, meta, shard_dir)
    manifest = pq.read_table(Path(shard_dir) / "manifest.parquet", columns=["shard", "sample_key", "image_sha256"])
    if only is not None:
        manifest = manifest.filter(pc.is_in(manifest.column("shard"), value_set=pa.array(list(only), pa.string())))
    digests = shard_digests(manifest)
    t0 = time.perf_counter()
    with _progress_bar(manifest.num_rows, progress) as bar:
        if submit is None:
            parts = ([embed_part(loaded, shard_dir, only, batch_size=batch_size, device=device, on_batch=bar.update)]
                     if only is None or digests else [])
        else:
            parts = []
            groups = shard_groups(shard_dir, shards_per_task, only)
            for part in _in_order(groups, submit, max(1, window)):
                if part.model_version != loaded.card.model_version:
                    raise RadsimError(f"an embedding task used model {part.model_version}, not "
                                      f"{loaded.card.model_version}: workers must see the same model folder")
                parts.append(part)
                bar.update(part.rows)
    seconds = time.perf_counter() - t0
    dim = loaded.card.embedding_dim
    emb = np.concatenate([p.embeddings for p in parts if p.rows] or [np.empty((0, dim), np.float32)])
    vocab = {"name": meta.get("radsim.vocabulary.name", loaded.card.vocabulary_name),
             "version": meta.get("radsim.vocabulary.version", loaded.card.vocabulary_version),
             "findings": list(loaded.card.findings)}
    return EmbeddedShards([k for p in parts for k in p.exam_keys], [i for p in parts for i in p.image_index],
                          [s for p in parts for s in p.splits], [v for p in parts for v in p.view_positions],
                          [lv for p in parts for lv in p.label_values], emb.astype(np.float32, copy=False),
                          meta["radsim.key_id"], vocab, seconds, shard_digests=digests)


# ------------------------------------------------------------------ incremental embedding
MODEL_FINGERPRINT = ("backbone", "loss", "image_size", "embedding_dim", "data_manifest_sha256", "created_at")


def model_fingerprint(card: ModelCard, weights: str | Path) -> dict[str, Any]:
    """What identifies the model behind a version beyond its name: card essentials and the weights' sha256.

    A publish record carries it, and rows are reused only under an equal one: a model folder
    replaced under the same version name must not be mixed with its predecessor's vectors.
    """
    return {**{k: getattr(card, k) for k in MODEL_FINGERPRINT}, "weights_sha256": sha256_file(weights)}


@dataclass
class ReusePlan:
    """Which shards to embed and which published rows stand for the others (manifest order kept).

    `reused` holds the reused manifest rows in manifest order; `mask[i]` says whether manifest
    row i is one of them. Label values are rebuilt from positive_findings: they give the same
    published columns (positive_findings, no_finding), and the pipeline relabels anyway.
    """

    model_version: str
    fingerprint: dict[str, Any]
    key_id: str | None
    shards: list[str]  # every shard, manifest order
    embed: list[str]  # the shards to embed, manifest order
    note: str
    shard_digests: dict[str, str] = field(default_factory=dict)
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    reused: EmbeddedRows | None = None

    @property
    def reused_shards(self) -> int:
        return len(self.shards) - len(self.embed)

    @property
    def reused_rows(self) -> int:
        return 0 if self.reused is None else self.reused.rows

    def checked_for(self, loaded: LoadedModel) -> ReusePlan:
        """This plan when it was made for `loaded`'s model; a plan that reuses nothing otherwise."""
        card = loaded.card
        if self.model_version == card.model_version and self.fingerprint:
            try:
                if self.fingerprint == model_fingerprint(card, loaded.path):  # the weights file too
                    return self
            except OSError:
                pass
        return ReusePlan(card.model_version, {}, self.key_id, self.shards, list(self.shards),
                         f"the plan was made for another model than {card.model_version}")


class _NotReusable(Exception):
    """Why a published version cannot stand for a re-embed (the caller embeds everything)."""


def plan_reuse(published_dir: str | Path, shard_dir: str | Path, model: LoadedModel | str | Path) -> ReusePlan:
    """Plan an incremental embedding: reuse the verified published rows of the model's own version.

    `model` is a LoadedModel or a model folder (only its card and the weights' hash are read).
    A shard is reused when its digest equals the one in the version's publish record and every
    one of its manifest rows is published with the same split and view. The version itself must
    check out: record present, every part's sha256 and row count as recorded, same model
    fingerprint, key id, D and vocabulary. Otherwise the plan embeds everything and says why.
    """
    if isinstance(model, LoadedModel):
        card, weights = model.card, model.path
    else:
        from .registry import read_card

        card, weights = read_card(model), Path(model) / BEST_FILE
    version = card.model_version
    manifest = pq.read_table(Path(shard_dir) / "manifest.parquet",
                             columns=["shard", "sample_key", "image_sha256", "exam_key", "image_index", "split",
                                      "view_position"])
    names = list(dict.fromkeys(manifest.column("shard").to_pylist()))
    key_id = shard_metadata(shard_dir).get("radsim.key_id")
    try:
        fingerprint = model_fingerprint(card, weights)
    except OSError as exc:
        return ReusePlan(version, {}, key_id, names, list(names), f"model weights unreadable ({exc.strerror})")

    def everything(why: str) -> ReusePlan:
        return ReusePlan(version, fingerprint, key_id, names, list(names), why)

    if not record_path(published_dir, version).exists() and not version_dir(published_dir, version).exists():
        return everything(f"nothing published under {version} yet")
    try:
        previous = _verified_rows(published_dir, card, fingerprint, key_id)
    except _NotReusable as exc:
        return everything(f"published {version} not reused: {exc}")
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be read is never fatal: embed everything
        return everything(f"published {version} not reused: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    record_digests, table = previous
    digests = shard_digests(manifest)
    # Vectorised: each manifest row's position in the published table (null when absent), then
    # the rows whose split or view differ; a shard with any such row, or another digest, is embedded.
    pos = pc.index_in(_row_keys(manifest), value_set=_row_keys(table))
    ok = pc.and_(pc.is_valid(pos), pc.and_(
        pc.equal(pc.fill_null(table.column("split").take(pos), ""), pc.fill_null(manifest.column("split"), "")),
        pc.equal(pc.fill_null(table.column("view_position").take(pos), "\0"),
                 pc.fill_null(manifest.column("view_position"), "\0"))))
    ok = pc.fill_null(ok, False)
    broken = {n for n in names if record_digests.get(n) != digests[n]}
    broken |= set(manifest.column("shard").filter(pc.invert(ok)).unique().to_pylist())
    reused = [n for n in names if n not in broken]
    if not reused:
        return everything(f"no shard fully published under {version}")
    keep = pc.invert(pc.is_in(manifest.column("shard"), value_set=pa.array(sorted(broken), pa.string())))
    mask = keep.to_numpy(zero_copy_only=False).astype(bool)
    sel = pos.filter(keep)  # manifest order: shards are contiguous, so this is each reused shard's rows in order
    kept = manifest.filter(keep)
    findings = list(card.findings)
    cache: dict[tuple[str, ...], list[int | None]] = {}
    values = [None if p is None else _values_from_positives(p, findings, cache)
              for p in table.column("positive_findings").take(sel).to_pylist()]
    reused_rows = EmbeddedRows(
        kept.column("exam_key").to_pylist(), [int(i) for i in kept.column("image_index").to_pylist()],
        kept.column("split").to_pylist(), kept.column("view_position").to_pylist(), values,
        np.ascontiguousarray(embedding_matrix(table.select(["embedding"]).take(sel))))
    return ReusePlan(version, fingerprint, key_id, names, [n for n in names if n in broken],
                     f"{len(reused)} of {len(names)} shards published under {version}",
                     {n: digests[n] for n in reused}, mask, reused_rows)


def _row_keys(table: pa.Table) -> pa.ChunkedArray:
    """(exam_key, image_index) as one string column, for vectorised lookups (keys hold no tab)."""
    return pc.binary_join_element_wise(table.column("exam_key"),
                                       pc.cast(table.column("image_index"), pa.string()), "\t")


def _values_from_positives(positives: list[str], findings: list[str],
                           cache: dict[tuple[str, ...], list[int | None]]) -> list[int | None]:
    """Label values that publish as the same positive_findings and no_finding (1 where positive).

    Few distinct label sets exist, so each is built once; the lists are shared between rows and
    must not be mutated in place (relabel replaces them whole).
    """
    key = tuple(positives)
    out = cache.get(key)
    if out is None:
        wanted = set(positives)
        out = cache[key] = [1 if f in wanted else None for f in findings]
    return out


def _verified_rows(published_dir: str | Path, card: ModelCard, fingerprint: dict[str, Any],
                   key_id: str | None) -> tuple[dict[str, str], pa.Table]:
    """The version's record digests and rows, after checking they are what the record says and fit the model."""
    version = card.model_version
    try:
        pv = open_version(published_dir, version, verify="full")  # every part's sha256 against the record
    except UsageError as exc:
        raise _NotReusable(str(exc)) from None
    record = pv.record
    checks = [
        (record.get("key_id") == key_id == card.key_id == pv.key_id, f"key_id {record.get('key_id')!r} != {key_id!r}"),
        (int(record.get("embedding_dim", -1)) == card.embedding_dim == pv.embedding_dim,
         f"D={record.get('embedding_dim')} but the model has D={card.embedding_dim}"),
        (list((record.get("vocabulary") or {}).get("findings") or []) == list(card.findings), "another vocabulary"),
        ((record.get("model") or {}).get("weights_sha256") is not None, "the record predates incremental embedding"),
        (all((record.get("model") or {}).get(k) == v for k, v in fingerprint.items()),
         "made by another model under the same version name"),
        (isinstance(record.get("shards"), dict), "the record lists no shard digests"),
    ]
    for ok, why in checks:
        if not ok:
            raise _NotReusable(why)
    table = pv.read(["exam_key", "image_index", "model_version", "split", "view_position", "embedding",
                     "positive_findings", "key_id"])
    part_rows = sum(int(p.get("rows", -1)) for p in record.get("parts") or [])
    if not table.num_rows == int(record.get("rows", -1)) == part_rows:
        raise _NotReusable(f"{table.num_rows} rows on disk, the record says {record.get('rows')}")
    for col, want in (("model_version", version), ("key_id", key_id)):
        if table.num_rows and set(table.column(col).unique().to_pylist()) != {want}:
            raise _NotReusable(f"rows with another {col} than {want!r}")
    return dict(record["shards"]), table


def merge_reused(plan: ReusePlan, new: EmbeddedShards, shard_dir: str | Path) -> EmbeddedShards:
    """The full table in manifest order: `new` (the plan's embedded shards) and the plan's reused rows.

    Checks that the result lines up with the manifest row for row; a mismatch (the shards
    changed between planning and embedding) is an error rather than a silently wrong table.
    """
    manifest = pq.read_table(Path(shard_dir) / "manifest.parquet", columns=["exam_key", "image_index"])
    n = manifest.num_rows
    if plan.reused is None:
        if new.rows != n:
            raise RadsimError(f"{new.rows} rows embedded but {shard_dir} holds {n}: a plan that reuses nothing "
                              "needs every shard embedded")
        return new
    mask = plan.mask
    if len(mask) != n or int((~mask).sum()) != new.rows:
        raise RadsimError(f"{shard_dir} changed while embedding: {n} manifest rows, {new.rows} embedded + "
                          f"{plan.reused_rows} reused; run again")
    old = plan.reused
    new_pos, old_pos = np.flatnonzero(~mask), np.flatnonzero(mask)

    def merged(a: list[Any], b: list[Any]) -> list[Any]:
        out: list[Any] = [None] * n
        for p, v in zip(new_pos.tolist(), a):
            out[p] = v
        for p, v in zip(old_pos.tolist(), b):
            out[p] = v
        return out

    keys, index = merged(new.exam_keys, old.exam_keys), merged(new.image_index, old.image_index)
    if keys != manifest.column("exam_key").to_pylist() or index != manifest.column("image_index").to_pylist():
        raise RadsimError(f"embedded rows do not line up with {shard_dir}/manifest.parquet; run again")
    dim = old.embeddings.shape[1]
    if new.rows and new.embeddings.shape[1] != dim:
        raise RadsimError(f"new rows have D={new.embeddings.shape[1]}, reused rows D={dim}")
    emb = np.empty((n, dim), np.float32)
    emb[new_pos] = new.embeddings
    emb[old_pos] = old.embeddings
    return EmbeddedShards(keys, index, merged(new.splits, old.splits), merged(new.view_positions, old.view_positions),
                          merged(new.label_values, old.label_values), emb, new.key_id, new.vocabulary, new.seconds,
                          shard_digests={**plan.shard_digests, **new.shard_digests}, reused_rows=old.rows,
                          reused_shards=plan.reused_shards)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc="embed", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=not enabled or not sys.stderr.isatty())


def publish_embedded(embedded: EmbeddedShards, loaded: LoadedModel, published_dir: str | Path, **kw: Any) -> PublishResult:
    """Write `embedded` as the model's version of the embeddings table (atomic, with a publish record)."""
    card = loaded.card
    if embedded.embeddings.shape[1] != card.embedding_dim:
        raise UsageError(f"embeddings have D={embedded.embeddings.shape[1]}, model card says {card.embedding_dim}")
    table = embeddings_table(
        exam_keys=embedded.exam_keys, image_index=embedded.image_index, splits=embedded.splits,
        view_positions=embedded.view_positions, embeddings=embedded.embeddings, label_values=embedded.label_values,
        findings=embedded.vocabulary["findings"], model_version=card.model_version, key_id=embedded.key_id,
    )
    card_doc = json.loads(card.to_json())
    meta = table_metadata_for(model_version=card.model_version, key_id=embedded.key_id,
                              findings=embedded.vocabulary["findings"], vocabulary_name=str(embedded.vocabulary["name"]),
                              vocabulary_version=str(embedded.vocabulary["version"]), model_card=card_doc)
    splits = {s: embedded.splits.count(s) for s in sorted(set(embedded.splits))}
    extra = {
        "model": model_fingerprint(card, loaded.path),
        "rows_by_split": splits,
        "rows_labelled": sum(v is not None for v in embedded.label_values),
        "embed_images_per_s": round(embedded.images_per_s, 1),
        "reused_rows": embedded.reused_rows,
        "shards": dict(embedded.shard_digests),  # what plan_reuse compares a later run's shards with
    }
    return publish_table(table, published_dir, model_version=card.model_version, embedding_dim=card.embedding_dim,
                         extra_metadata=meta, record_extra=extra, **kw)


def publish(model_dir: str | Path, shard_dir: str | Path, published_dir: str | Path, *,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", progress: bool = False) -> PublishResult:
    """`radsim publish`: load the model, embed every sharded image, publish atomically."""
    loaded = load_model(model_dir, device="cpu")
    embedded = embed_shards(loaded, shard_dir, batch_size=batch_size, device=device, progress=progress)
    return publish_embedded(embedded, loaded, published_dir)
