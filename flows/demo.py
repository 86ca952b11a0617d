"""`radsim demo`: the main job on the embedded default, a synthetic cohort, end to end through Prefect.

It is the scheduled `pipeline` flow (flows/pipeline.py) run once on a fresh synthetic cohort:
synth → ingest the inbox → label → shard → train (a fresh warehouse has no model) → publish →
evaluate against the cohort's image truth (what the pictures show, not the noisy report labels).
Each stage is a plain function in its own package; label, shard, train and publish run as
their own Prefect flows, nested in the pipeline.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from radsim.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from radsim.data_contracts import StageCounts, UsageError
from radsim.flows.demo_config import DemoConfig
from radsim.flows.run_config import RunConfig
from radsim.warehouse.layout import DemoLayout

DEMO_MARKER = ".radsim-demo"


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

    return generate_cohort(layout.cohort, exams=n_exams, seed=seed, bad=True, preview=True, progress=progress)


def _say(line: str) -> None:
    print(line, flush=True)


# The demo runs with a scheduled run's defaults (radsim.flows.run_config): it shards at 256 px and
# trains the small CNN at 128 px for at most 5 minutes (DESIGN §8).


def demo_config(seed: int, training: dict | None, truth: Path) -> RunConfig:
    """The demo's resolved configuration: a scheduled run's defaults, then `training` overrides (model.* keys)."""
    from radsim.flows.config import resolve_config
    from radsim.flows.run_config import ModelSection

    model = {"seed": seed, **(training or {})}
    unknown = [k for k in model if k not in ModelSection.model_fields]
    if unknown:
        raise UsageError(f"unknown training option(s) {unknown}; known: {list(ModelSection.model_fields)}")
    return resolve_config({**{f"model.{k}": v for k, v in model.items()}, "paths.truth": str(truth)})


DEMO = DemoConfig()  # the flow's defaults are the command's


@flow(name="radsim-demo")
def demo_flow(out: str | Path = DEMO.out, n_exams: int = DEMO.exams, seed: int = DEMO.seed, progress: bool = True,
              training: dict | None = None) -> DemoResult:
    """synth, then the `pipeline` flow on the fresh cohort's inbox (so the first run trains).

    `training` overrides the [model] defaults (tests use it to cap the steps).
    """
    from radsim.flows.pipeline import pipeline

    started = time.perf_counter()
    layout = prepare_output(Path(out))
    result = DemoResult(layout)

    _say(f"[synth] synthesising a cohort of {n_exams} exams (DICOM images + reports) in {layout.cohort}")
    cohort = synthesise(layout, n_exams, seed, progress)
    result.outputs.update({"inbox": cohort.inbox, "image truth": cohort.truth_path,
                           "report truth": cohort.report_truth_path})
    if cohort.preview_path:
        result.outputs["preview"] = cohort.preview_path
    result.notes.append(f"synth: {cohort.n_exams} exams, {cohort.n_images} images, {cohort.n_patients} patients, "
                        f"{cohort.n_bad} deliberately bad records in the same inbox")

    config = demo_config(seed, training, cohort.truth_path)
    ran = pipeline(str(cohort.inbox), str(layout.warehouse), config=config, demo_key=True, progress=progress)
    result.outputs.update(ran.outputs)
    result.counts = list(ran.counts)
    result.notes += ran.notes
    result.metrics = dict(ran.metrics)
    result.headline = list(ran.headline)
    result.seconds = time.perf_counter() - started
    return result
