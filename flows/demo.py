"""`radsim demo`: the main job on the embedded default, a synthetic cohort, end to end through Prefect.

The flow only chains the stages: synth → ingest → label → shard → train → publish → evaluate,
with the evaluation against the cohort's image truth (what the pictures show, not the noisy
report labels). Each stage is a plain function in its own package; label, shard, train and
publish run as their own Prefect flows, nested here.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from radsim.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from radsim.data_contracts import (  # noqa: E402
    QuarantineRecord,
    StageCounts,
    UsageError,
    load_contract,
    merge_quarantine,
    quarantine_table,
    write_parquet_atomic,
)
from radsim.data_contracts.ingest import ingest_manifests  # noqa: E402
from radsim.flows.build_shards import build_shards  # noqa: E402
from radsim.flows.label_reports import label_reports  # noqa: E402
from radsim.flows.publish_embeddings import publish_embeddings  # noqa: E402
from radsim.flows.train_embedding import train_embedding  # noqa: E402

DEMO_MARKER = ".radsim-demo"


@dataclass(frozen=True)
class DemoLayout:
    """Where a demo run puts things (DESIGN §4 warehouse layout)."""

    root: Path

    @property
    def cohort(self) -> Path:
        return self.root / "cohort"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def restricted(self) -> Path:
        return self.warehouse / "restricted"

    @property
    def shards(self) -> Path:
        return self.warehouse / "shards"

    @property
    def models(self) -> Path:
        return self.warehouse / "models"

    @property
    def published(self) -> Path:
        return self.warehouse / "published"

    @property
    def reports(self) -> Path:
        return self.warehouse / "reports"


@dataclass
class DemoResult:
    layout: DemoLayout
    outputs: dict[str, Path] = field(default_factory=dict)
    counts: list[StageCounts] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    seconds: float = 0.0


def prepare_output(root: Path) -> DemoLayout:
    """Start afresh, but only ever delete a folder that an earlier demo made."""
    root = Path(root)
    if root.exists():
        if not root.is_dir():
            raise UsageError(f"demo output {root} exists and is not a folder")
        if any(root.iterdir()) and not (root / DEMO_MARKER).exists():
            raise UsageError(f"demo output {root} is not empty and was not made by radsim demo; choose another --out")
        shutil.rmtree(root)
    try:
        root.mkdir(parents=True)
        (root / DEMO_MARKER).write_text("made by radsim demo; deleted and rebuilt by the next run\n")
    except OSError as exc:
        raise UsageError(f"cannot create demo output {root}: {exc.strerror}") from None
    layout = DemoLayout(root)
    layout.restricted.mkdir(parents=True)
    return layout


@task(name="synthesise-cohort", cache_policy=NO_CACHE)
def synthesise(layout: DemoLayout, n_exams: int, seed: int, progress: bool):
    from radsim.synthetic import generate_cohort

    return generate_cohort(layout.cohort, n_exams, seed=seed, bad=True, preview=True, progress=progress)


@task(name="ingest-manifests", cache_policy=NO_CACHE)
def ingest(layout: DemoLayout, manifests: list[Path]):
    """The synthetic manifest plus the separately kept bad records, as one restricted exams table."""
    result = ingest_manifests(manifests)
    write_parquet_atomic(result.exams, layout.restricted / "exams.parquet", load_contract("exams"))
    return result


@task(name="collect-quarantine", cache_policy=NO_CACHE)
def collect_quarantine(layout: DemoLayout, ingest_records: list[QuarantineRecord], *paths: Path) -> tuple[Path, dict[str, int]]:
    """One restricted quarantine table for the run (DESIGN §4), whatever stage refused the record."""
    import pyarrow.parquet as pq

    table = quarantine_table(ingest_records)
    for path in paths:
        if path.exists():
            table = merge_quarantine(table, pq.read_table(path))
    out = write_parquet_atomic(table, layout.restricted / "quarantine.parquet", load_contract("quarantine"))
    reasons: dict[str, int] = {}
    for code in table.column("reason_code").to_pylist():
        reasons[code] = reasons.get(code, 0) + 1
    return out, reasons


def _say(line: str) -> None:
    print(line, flush=True)


@task(name="register-model", cache_policy=NO_CACHE)
def register_and_promote(layout: DemoLayout, trained_dir: Path) -> Path:
    from radsim.model.registry import promote, register_model

    model_dir = register_model(trained_dir, layout.models)
    promote(layout.models, model_dir.name, reason="first model of a fresh warehouse")
    return model_dir


# The demo shards at 256 px and trains the small CNN at 128 px for at most 5 minutes (DESIGN §8).
DEMO_TRAINING = {"backbone": "small", "loss": "ml2", "image_size": 128, "max_minutes": 5.0}


@flow(name="radsim-demo")
def demo_flow(out: str | Path = "demo-output", n_exams: int = 2000, seed: int = 0, progress: bool = True,
              training: dict | None = None) -> DemoResult:
    """synth → ingest → label → shard → train → publish → evaluate on a fresh synthetic cohort.

    `training` overrides DEMO_TRAINING (tests use it to cap the steps).
    """
    started = time.perf_counter()
    layout = prepare_output(Path(out))
    result = DemoResult(layout)

    _say(f"[1/6] synthesising a cohort of {n_exams} exams (DICOM images + reports) in {layout.cohort}")
    cohort = synthesise(layout, n_exams, seed, progress)
    result.outputs.update({"inbox": cohort.inbox, "image truth": cohort.truth_path,
                           "report truth": cohort.report_truth_path})
    if cohort.preview_path:
        result.outputs["preview"] = cohort.preview_path
    result.notes.append(f"synth: {cohort.n_exams} exams, {cohort.n_images} images, {cohort.n_patients} patients, "
                        f"{cohort.n_bad} deliberately bad records in the same inbox")

    manifests = [cohort.exams_path] + ([cohort.bad_path] if cohort.bad_path else [])
    _say("[2/6] ingesting the exams manifest and the bad records")
    ingested = ingest(layout, manifests)
    result.counts.append(ingested.counts)
    result.outputs["exams (restricted)"] = layout.restricted / "exams.parquet"

    labels_path = layout.restricted / "labels.parquet"
    _say("[3/6] extracting labels from the reports (label_reports flow)")
    labelled = label_reports(layout.restricted / "exams.parquet", labels_path, progress=progress)
    result.counts.append(labelled.counts)
    result.outputs["labels (restricted)"] = labels_path

    _say("[4/6] decoding, normalising and sharding the images (build_shards flow)")
    sharded = build_shards(str(layout.restricted / "exams.parquet"), str(labels_path), str(layout.shards),
                           demo_key=True, workers=2, progress=progress)
    result.counts.append(StageCounts("shard", sharded["rows_in"], sharded["rows_out"], sharded["quarantined"], sharded["skipped"]))
    result.outputs["shards"] = layout.shards

    quarantine_path, reasons = collect_quarantine(layout, ingested.quarantine, labelled.quarantine_path,
                                                  layout.shards / "quarantine.parquet")
    result.outputs["quarantine (restricted)"] = quarantine_path
    result.notes.append("quarantined by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))

    _say("[5/6] training the embedding network (train_embedding flow)")
    options = {**DEMO_TRAINING, "seed": seed, "progress": progress, **(training or {})}
    trained = train_embedding(layout.shards, layout.models / f"training-{time.strftime('%Y%m%d%H%M%S')}", options)
    model_dir = register_and_promote(layout, Path(trained["model_dir"]))
    result.outputs["model"] = model_dir
    result.notes += [line.strip() for line in trained["summary"].splitlines() if "model folder" not in line]
    result.metrics["validation"] = trained.get("metrics") or {}
    result.metrics["untrained_encoder"] = (trained.get("baseline_metrics") or {}).get("untrained_encoder") or {}

    _say("[6/6] embedding every image, publishing the table and evaluating it (publish_embeddings flow)")
    published = publish_embeddings(str(model_dir), str(layout.shards), str(layout.published),
                                   report_dir=str(layout.reports / model_dir.name),
                                   truth=str(cohort.truth_path), demo_key=True)
    result.outputs["published embeddings"] = layout.published / "embeddings"
    result.outputs["evaluation report"] = Path(published["report"])
    result.headline = list(published.get("headline") or [])

    for counts in result.counts:
        counts.check()
    create_table_artifact(key="demo-reconciliation", table=[c.as_dict() for c in result.counts],
                          description="rows in = rows out + quarantined + skipped, per stage")
    result.seconds = time.perf_counter() - started
    return result
