"""Label report streams and files: batching, duplicates, quarantine, workers, atomic output.

`label_reports` is the streaming core (records in, contract-valid label tables and quarantine
records out, batch by batch); `label_file` wraps it for files with bounded memory. Both are what
the CLI and the Prefect flow call.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from radsim.data_contracts import QuarantineRecord, StageCounts, UsageError, load_contract
from radsim.data_contracts.inflight import in_order
from radsim.data_contracts.progress import progress_bar
from radsim.data_contracts.settings import with_values
from radsim.data_contracts.vocabulary import Vocabulary, load_vocabulary

from . import worker
from .certainty import label_metadata
from .chunks import label_chunk
from .config import PIPE_BATCH, LabelConfig
from .output import open_sink, output_kind, side_path, write_quarantine
from .reading import InputFormat, ReportRecord, open_reports
from .version import LABELER_VERSION

if TYPE_CHECKING:  # the parent of worker processes never imports spaCy
    from .labeler import Labeler

STAGE = "label"
VALUE_NAMES = {1: "positive", 0: "negative", -1: "uncertain"}


# Hands one chunk of (exam_id, text) items to an executor; returns a future whose `.result()` is
# `label_chunk`'s (labels table, failures). Lets a caller map chunks on its own task runner.
ChunkSubmitter = Callable[[list[tuple[str, object]], int], Any]


@dataclass
class LabelBatch:
    """One batch of output: a labels-contract table and the records quarantined meanwhile."""

    table: pa.Table
    quarantine: list[QuarantineRecord]
    rows_in: int = 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()


@dataclass
class LabelRunSummary:
    counts: StageCounts
    vocabulary: str
    labeler_version: str = LABELER_VERSION
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    finding_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # finding -> value name -> n
    labels_path: Path | None = None
    quarantine_path: Path | None = None
    evidence_path: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def positives(self) -> dict[str, int]:
        return {f: c.get("positive", 0) for f, c in self.finding_counts.items()}

    def finding_table(self) -> list[dict[str, Any]]:
        """Counts per finding, one row each (the flow's table artifact)."""
        n = self.counts.rows_out
        return [{"finding": f, "positive": c.get("positive", 0), "uncertain": c.get("uncertain", 0),
                 "negative": c.get("negative", 0),
                 "not_mentioned": n - c.get("positive", 0) - c.get("uncertain", 0) - c.get("negative", 0)}
                for f, c in self.finding_counts.items()]

    def lines(self) -> list[str]:
        c = self.counts
        out = [f"labelled {c.rows_out} report(s), quarantined {c.quarantined}, skipped {c.skipped} "
               f"(extra image rows of an already labelled exam) in {self.seconds:.1f} s"]
        for reason, n in sorted(self.quarantined_by_reason.items()):
            out.append(f"  quarantined {reason}: {n}")
        if self.finding_counts:
            out.append("positives per finding (uncertain, negative):")
            width = max(len(f) for f in self.finding_counts)
            for row in self.finding_table():
                out.append(
                    f"  {row['finding']:<{width}}  {row['positive']:>8}  ({row['uncertain']}, {row['negative']})"
                )
        out.extend(f"note: {n}" for n in self.notes)
        out.append(c.summary())
        if self.labels_path:
            side = [str(p) for p in (self.evidence_path, self.quarantine_path) if p]
            out.append(f"wrote {self.labels_path}" + (f" and {' and '.join(side)}" if side else ""))
        return out


# --------------------------------------------------------------------------- labelling a chunk

# --------------------------------------------------------------------------- streaming core

class _Gate:
    """First-seen bookkeeping per exam_id: duplicates and the extra image rows of one exam.

    Holds one small entry per exam (a hash of its report when rows are images), so memory grows
    with the number of exams only: about 100 MB at 745,000.
    """

    def __init__(self, collapse_images: bool):
        self.collapse = collapse_images
        self.seen: dict[str, int] = {}
        self.dup_counts: dict[str, int] = {}

    def admit(self, rec: ReportRecord, counts: StageCounts) -> QuarantineRecord | None | bool:
        """True to label, False to skip, or the quarantine record."""
        if rec.problem is not None:
            reason, message = rec.problem
            return QuarantineRecord(STAGE, rec.exam_id or rec.where or f"row {rec.row}", reason, message)
        if rec.exam_id is None:
            where = rec.where or f"row {rec.row}"
            return QuarantineRecord(STAGE, where, "schema_violation", f"{where} has no exam_id")
        digest = hash(rec.text) if self.collapse else 0
        old = self.seen.get(rec.exam_id)
        if old is None:
            self.seen[rec.exam_id] = digest
            return True
        if self.collapse and old == digest:
            return False  # another image of an exam already labelled: same report
        n = self.dup_counts.get(rec.exam_id, 0) + 1
        self.dup_counts[rec.exam_id] = n
        record_id = rec.exam_id if n == 1 else f"{rec.exam_id} ({rec.where or f'row {rec.row}'})"
        what = "a different report" if self.collapse else "a second row"
        return QuarantineRecord(STAGE, record_id, "duplicate_id",
                                f"exam_id {rec.exam_id} seen again at {rec.where or f'row {rec.row}'} with {what}; "
                                "the first is kept")


def _chunks(records: Iterable[ReportRecord | tuple[str, object]], gate: _Gate, counts: StageCounts,
            chunk_size: int) -> Iterator[tuple[list[tuple[str, object]], list[QuarantineRecord], int]]:
    items: list[tuple[str, object]] = []
    bad: list[QuarantineRecord] = []
    n_in = 0
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, ReportRecord):
            exam_id, text = rec
            rec = ReportRecord(None if exam_id is None else (str(exam_id).strip() or None), text, i)
        counts.rows_in += 1
        n_in += 1
        verdict = gate.admit(rec, counts)
        if verdict is True:
            items.append((rec.exam_id, rec.text))  # type: ignore[arg-type]
        elif verdict is False:
            counts.skipped += 1
        else:
            bad.append(verdict)  # type: ignore[arg-type]
            counts.quarantined += 1
        if len(items) >= chunk_size:
            yield items, bad, n_in
            items, bad, n_in = [], [], 0
    if items or bad or n_in:
        yield items, bad, n_in


def label_reports(records: Iterable[ReportRecord | tuple[str, object]], config: LabelConfig | None = None, *,
                  vocabulary: Vocabulary | None = None, labeler: Labeler | None = None, collapse_images: bool = False,
                  counts: StageCounts | None = None, submit: ChunkSubmitter | None = None,
                  **settings: Any) -> Iterator[LabelBatch]:
    """Stream records (ReportRecord or (exam_id, text)) → LabelBatch per `batch_size` reports, in input order.

    `config` (LabelConfig: workers, batch_size, certainty_threshold), with any LabelConfig field
    given as a keyword (`batch_size=10`) set. Without `vocabulary` or `labeler`, the config's
    vocabulary is loaded (the default one unless it names a file).

    `submit(items, inner)` hands each chunk to an executor of the caller's (a Prefect task runner on
    Dask, say) and returns a future with `.result()` → `label_chunk`'s output; at most
    2 × workers chunks are then in flight.

    Bad records become quarantine records (empty_report, undecodable_text, report_too_long, duplicate_id
    for a second occurrence, schema_violation for a missing id, and the reader's malformed_record or
    unreadable_report with their line). `counts` (a StageCounts) is updated as batches go.
    With `workers > 1` chunks go to spawned processes, each building the labeler once; at most
    2 × workers chunks are in flight, so memory stays bounded. `certainty_threshold` is the grade from
    which a mention counts as present (a given `labeler` keeps its own).
    """
    cfg = label_config(config, **settings)
    vocabulary = _vocabulary(vocabulary, labeler, cfg)
    present, workers = cfg.certainty_threshold, cfg.workers
    counts = counts if counts is not None else StageCounts(STAGE)
    gate = _Gate(collapse_images)
    chunks = _chunks(records, gate, counts, cfg.batch_size)
    inner = min(cfg.batch_size, PIPE_BATCH)

    def finish(
        table: pa.Table, failures: list[tuple[str, str, str]], bad: list[QuarantineRecord], n_in: int
    ) -> LabelBatch:
        q = bad + [QuarantineRecord(STAGE, exam_id, reason, message) for exam_id, reason, message in failures]
        counts.quarantined += len(failures)
        counts.rows_out += table.num_rows
        return LabelBatch(table, q, n_in)

    if submit is not None:
        yield from _windowed(chunks, submit, inner, 2 * max(1, workers), finish)
        return
    if workers <= 1:
        if labeler is None:
            from .labeler import Labeler

            labeler = Labeler(vocabulary, certainty_threshold=present)
        for items, bad, n_in in chunks:
            table, failures = label_chunk(labeler, vocabulary, items, inner)
            yield finish(table, failures, bad, n_in)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=worker.init_worker, initargs=(vocabulary, present)) as pool:
        def to_pool(items: list[tuple[str, object]], n: int) -> _PoolResult:
            return _PoolResult(pool.apply_async(worker.label_chunk, ((items, n),)))

        yield from _windowed(chunks, to_pool, inner, 2 * workers, finish)


def label_config(config: LabelConfig | None = None, **values: Any) -> LabelConfig:
    """`config` (or the defaults) with `values` set: LabelConfig validates them once."""
    return with_values(LabelConfig, config, values, "label settings")


def _vocabulary(vocabulary: Vocabulary | None, labeler: Labeler | None, config: LabelConfig) -> Vocabulary:
    """The vocabulary given, else the labeler's, else the config's (the default one unless it names a file)."""
    if vocabulary is not None:
        return vocabulary
    return labeler.vocabulary if labeler is not None else load_vocabulary(config.vocabulary,
                                                                          replace=config.replace_vocabulary)


class _PoolResult:
    """A multiprocessing AsyncResult read through `.result()`, like concurrent and Prefect futures."""

    def __init__(self, async_result: Any):
        self._async_result = async_result

    def result(self) -> Any:
        return self._async_result.get()


def _windowed(
    chunks: Iterable[tuple[list[tuple[str, object]], list[QuarantineRecord], int]],
    submit: ChunkSubmitter,
    inner: int,
    window: int,
    finish: Callable[..., LabelBatch],
) -> Iterator[LabelBatch]:
    """Submit chunks, `window` more while the oldest is awaited; yield finished batches in input order."""
    # the awaited chunk + `window` submitted behind it, as before the shared helper
    for (_, bad, n_in), (table, failures) in in_order(chunks, lambda chunk: submit(chunk[0], inner), window + 1):
        yield finish(table, failures, bad, n_in)


# --------------------------------------------------------------------------- files

def quarantine_path_for(out: str | Path) -> Path:
    """LABELS.parquet → LABELS.quarantine.parquet beside it (LABELS.csv → LABELS.quarantine.csv)."""
    return side_path(out, "quarantine")


def _progress(total: int | None, enabled: bool) -> Any:
    return progress_bar(total, enabled, unit="report", desc="label", leave=True)


class _Tally:
    """Counts per finding and value, and a check that no exam is written twice."""

    def __init__(self, names: list[str]):
        self.names = names
        self.counts = {f: {"positive": 0, "uncertain": 0, "negative": 0} for f in names}
        self.written: set[str] = set()

    def add(self, table: pa.Table) -> None:
        ids = table.column("exam_id").to_pylist()
        before = len(self.written)
        self.written.update(ids)
        if len(self.written) != before + len(ids):  # the gate makes this impossible; check anyway
            raise UsageError(f"duplicate exam_id in labels output near {ids[0]}")
        for name in self.names:
            for entry in pc.value_counts(table.column(name)).to_pylist():
                if entry["values"] is not None:
                    self.counts[name][VALUE_NAMES[entry["values"]]] += entry["counts"]


def label_file(input: str | Path, out: str | Path, config: LabelConfig | None = None, *,
               vocabulary: Vocabulary | None = None, progress: bool = True, labeler: Labeler | None = None,
               submit: ChunkSubmitter | None = None, **settings: Any) -> LabelRunSummary:
    """Label every report of INPUT into OUT and OUT's quarantine file beside it.

    `config` (LabelConfig: workers, batch_size, certainty_threshold and INPUT's delimiter and
    columns), with any LabelConfig field given as a keyword (`workers=2`) set. OUT's extension
    decides its format: .parquet is the labels contract, .csv the CheXpert layout with an evidence
    side file (radsim.nlp.output). Streams: input is read in batches and labels are written to
    temporary files in OUT's folder, renamed into place at the end, so a crash leaves no partial
    output. A ready `labeler` (single process only) saves building the pipeline again; unless a
    certainty threshold is given, the output records the labeler's own.
    """
    started = time.perf_counter()
    cfg = label_config(config, **settings)
    out = Path(out)
    output_kind(out)
    source = open_reports(input, cfg.input_format())
    vocabulary = _vocabulary(vocabulary, labeler, cfg)
    if labeler is not None and config is None and settings.get("certainty_threshold") is None:
        cfg = label_config(cfg, certainty_threshold=labeler.certainty_threshold)
    contract = load_contract("labels", vocabulary)
    schema = contract.validate(contract.empty(), label_metadata(cfg.certainty_threshold)).schema
    counts = StageCounts(STAGE)
    summary = LabelRunSummary(counts, f"{vocabulary.name} {vocabulary.version}")
    tally = _Tally(list(vocabulary.names))
    quarantined: list[QuarantineRecord] = []
    with open_sink(out, schema, list(vocabulary.names)) as sink, _progress(source.total, progress) as bar:
        for batch in label_reports(source.records(cfg.batch_size), cfg, vocabulary=vocabulary, labeler=labeler,
                                   collapse_images=source.has_image_index, counts=counts, submit=submit):
            if batch.table.num_rows:
                tally.add(batch.table)
                sink.write(batch.table)
            quarantined.extend(batch.quarantine)
            bar.update(batch.rows_in)
        counts.check()
    qpath = write_quarantine(quarantined, quarantine_path_for(out))
    for rec in quarantined:
        summary.quarantined_by_reason[rec.reason_code] = summary.quarantined_by_reason.get(rec.reason_code, 0) + 1
    if counts.rows_in == 0:
        summary.notes.append(f"{input} holds no reports: the labels file is empty")
    summary.finding_counts = tally.counts
    summary.labels_path, summary.quarantine_path = out, qpath
    summary.evidence_path = side_path(out, "evidence") if output_kind(out) == "csv" else None
    summary.seconds = time.perf_counter() - started
    return summary


def find_report(input: str | Path, exam_id: str, input_format: InputFormat | None = None) -> object:
    """The report text of one exam in INPUT (the first occurrence), or a UsageError."""
    source = open_reports(input, input_format)
    for rec in source.records():
        if rec.exam_id == exam_id:
            return rec.text
    raise UsageError(f"exam_id {exam_id!r} not found in {input}")


def explain(labeler: Labeler, text: object) -> list[str]:
    """Printable evidence for one report: per finding, its value, status, trigger, rule and sentence."""
    labels = labeler.label(text)  # type: ignore[arg-type]
    lines = []
    for name in labeler.vocabulary.names:
        value = labels.values[name]
        ev = labels.evidence_for(name)
        if value is None:
            lines.append(f"{name}: null (not mentioned)")
            continue
        lines.append(f"{name}: {value} {ev.status if ev else ''}  certainty={ev.certainty if ev else None}  "
                     f"rule={ev.rule if ev else ''}  trigger={ev.trigger if ev else None!r}")
        if ev and ev.sentence:
            lines.append(f"    \"{ev.sentence}\"")
    return lines
