"""`radsim demo`: the main job on the embedded default, a synthetic cohort, end to end through Prefect.

The flow only chains the stages; each stage is a plain function in its own package.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from radsim.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, task  # noqa: E402

from radsim.data_contracts.errors import UsageError  # noqa: E402

DEMO_MARKER = ".radsim-demo"


@dataclass
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
    def reports(self) -> Path:
        return self.warehouse / "reports"


@dataclass
class DemoResult:
    layout: DemoLayout
    outputs: dict[str, Path] = field(default_factory=dict)
    summaries: list[str] = field(default_factory=list)
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
    return DemoLayout(root)


@task(name="synthesise-cohort")
def synthesise(layout: DemoLayout, n_exams: int, seed: int, progress: bool):
    from radsim.synthetic import generate_cohort

    return generate_cohort(layout.cohort, n_exams, seed=seed, bad=True, preview=True, progress=progress)


@flow(name="radsim-demo", log_prints=True)
def demo_flow(out: str | Path = "demo-output", n_exams: int = 2000, seed: int = 0, progress: bool = True) -> DemoResult:
    """synth → label → shard on a fresh synthetic cohort (later stages join as they land)."""
    started = time.perf_counter()
    layout = prepare_output(Path(out))
    result = DemoResult(layout)
    cohort = synthesise(layout, n_exams, seed, progress)
    result.outputs["inbox"] = cohort.inbox
    result.outputs["exams manifest"] = cohort.exams_path
    result.outputs["image truth"] = cohort.truth_path
    result.outputs["report truth"] = cohort.report_truth_path
    if cohort.preview_path:
        result.outputs["preview"] = cohort.preview_path
    result.summaries.append(f"synth: {cohort.n_exams} exams, {cohort.n_images} images, {cohort.n_bad} bad records")
    result.seconds = time.perf_counter() - started
    return result
