"""Incremental embedding: reuse the verified published rows of a model's own version.

Shards are append-only and a model version's weights never change, so an image already
published under that version has the vector a re-embed would give. A shard whose samples are
all in the verified published version, with the same per-shard digest in its publish record,
is taken from there; only the other shards are embedded. Anything inconsistent means a full
re-embed, never a guess.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radsim.data_contracts import RadsimError, UsageError
from radsim.data_contracts.atomic import sha256_file
from radsim.data_contracts.ids import META_KEY_ID
from radsim.imaging.manifest import manifest_metadata
from radsim.warehouse.card import ModelCard
from radsim.warehouse.layout import MANIFEST_FILE
from radsim.warehouse.published import (
    embedding_matrix,
    open_version,
    record_path,
    version_dir,
)

from .checkpoint import BEST_FILE, LoadedModel
from .embedded import EmbeddedRows, EmbeddedShards, compacted_shards, in_manifest_order, shard_digests, shard_row_counts

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
    shard_rows: dict[str, int] = field(default_factory=dict)

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
        from radsim.warehouse.card import read_card

        card, weights = read_card(model), Path(model) / BEST_FILE
    version = card.model_version
    manifest = pq.read_table(Path(shard_dir) / MANIFEST_FILE,
                             columns=["shard", "sample_key", "image_sha256", "exam_key", "image_index", "split",
                                      "view_position"])
    names = list(dict.fromkeys(manifest.column("shard").to_pylist()))
    key_id = manifest_metadata(shard_dir).get(META_KEY_ID)
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
    record_digests, record_rows, table = previous
    digests = shard_digests(manifest)
    pos, broken = _broken_shards(manifest, table, names, digests, record_digests, record_rows)
    reused = [n for n in names if n not in broken]
    if not reused:
        return everything(f"no shard fully published under {version}")
    mask, reused_rows = _reused_rows(manifest, table, pos, broken, list(card.findings))
    counts = shard_row_counts(manifest)
    return ReusePlan(version, fingerprint, key_id, names, [n for n in names if n in broken],
                     f"{len(reused)} of {len(names)} shards published under {version}",
                     {n: digests[n] for n in reused}, mask, reused_rows, {n: counts[n] for n in reused})


def _broken_shards(manifest: pa.Table, table: pa.Table, names: list[str], digests: dict[str, str],
                   record_digests: dict[str, str], record_rows: dict[str, int]) -> tuple[pa.ChunkedArray, set[str]]:
    """Each manifest row's position in the published table (null when absent), and the shards to embed.

    Vectorised: a shard with a row that is missing or published with another split or view, or
    with another digest than the record's (unless a compaction merged recorded shards), is embedded.
    """
    pos = pc.index_in(_row_keys(manifest), value_set=_row_keys(table))
    ok = pc.and_(pc.is_valid(pos), pc.and_(
        pc.equal(pc.fill_null(table.column("split").take(pos), ""), pc.fill_null(manifest.column("split"), "")),
        pc.equal(pc.fill_null(table.column("view_position").take(pos), "\0"),
                 pc.fill_null(manifest.column("view_position"), "\0"))))
    ok = pc.fill_null(ok, False)
    broken = {n for n in names if record_digests.get(n) != digests[n]}
    unknown = [n for n in names if n in broken and n not in record_digests]
    if unknown and record_rows:
        broken -= compacted_shards(manifest, unknown, record_digests, record_rows)
    broken |= set(manifest.column("shard").filter(pc.invert(ok)).unique().to_pylist())
    return pos, broken


def _reused_rows(manifest: pa.Table, table: pa.Table, pos: pa.ChunkedArray, broken: set[str],
                 findings: list[str]) -> tuple[np.ndarray, EmbeddedRows]:
    """The manifest rows of the reused shards (a mask over the manifest) and their published values."""
    keep = pc.invert(pc.is_in(manifest.column("shard"), value_set=pa.array(sorted(broken), pa.string())))
    mask = keep.to_numpy(zero_copy_only=False).astype(bool)
    sel = pos.filter(keep)  # manifest order: shards are contiguous, so this is each reused shard's rows in order
    kept = manifest.filter(keep)
    cache: dict[tuple[str, ...], list[int | None]] = {}
    values = [None if p is None else _values_from_positives(p, findings, cache)
              for p in table.column("positive_findings").take(sel).to_pylist()]
    rows = EmbeddedRows(
        kept.column("exam_key").to_pylist(), [int(i) for i in kept.column("image_index").to_pylist()],
        kept.column("split").to_pylist(), kept.column("view_position").to_pylist(), values,
        np.ascontiguousarray(embedding_matrix(table.select(["embedding"]).take(sel))))
    return mask, rows


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
                   key_id: str | None) -> tuple[dict[str, str], dict[str, int], pa.Table]:
    """The version's record digests, row counts and rows, after checking they are what the record says."""
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
    return dict(record["shards"]), dict(record.get("shard_rows") or {}), table


def merge_reused(plan: ReusePlan, new: EmbeddedShards, shard_dir: str | Path) -> EmbeddedShards:
    """The full table in manifest order: `new` (the plan's embedded shards) and the plan's reused rows.

    Checks that the result lines up with the manifest row for row; a mismatch (the shards
    changed between planning and embedding) is an error rather than a silently wrong table.
    """
    manifest = pq.read_table(Path(shard_dir) / MANIFEST_FILE, columns=["exam_key", "image_index"])
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
    return EmbeddedShards(
        keys,
        index,
        merged(new.splits, old.splits),
        merged(new.view_positions, old.view_positions),
        merged(new.label_values, old.label_values),
        emb,
        new.key_id,
        new.vocabulary,
        new.seconds,
        shard_digests=in_manifest_order(plan.shards, plan.shard_digests, new.shard_digests),
        shard_rows=in_manifest_order(plan.shards, plan.shard_rows, new.shard_rows),
        reused_rows=old.rows,
        reused_shards=plan.reused_shards,
    )


def embed_reusing(plan: ReusePlan | None, shard_dir: str | Path,
                  embed: Callable[[list[str] | None], tuple[LoadedModel, EmbeddedShards]],
                  loaded: LoadedModel | None = None) -> tuple[LoadedModel, EmbeddedShards]:
    """Embed what `plan` leaves to embed and merge in the rows it reuses; everything without a plan.

    `embed(shards)` embeds those shards (None: all) and says which model it used: a plan made for
    another model than that one reuses nothing, and every shard is embedded after all. With
    `loaded` known beforehand the plan is checked against it first (the weights are hashed once).
    """
    if plan is not None and loaded is not None:
        plan = plan.checked_for(loaded)
    only = list(plan.embed) if plan is not None and plan.reused_shards else None
    used, embedded = embed(only)
    if only is None:
        return used, embedded
    if used is loaded or plan.checked_for(used) is plan:
        return used, merge_reused(plan, embedded, shard_dir)
    return embed(None)
