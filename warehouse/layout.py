"""The warehouse folder (DESIGN §4): one class names every path, for the pipeline and the demo alike.

    WAREHOUSE/
      restricted/   raw ids and report text: ledger, inbox index, labels, quarantine (never shared)
      shards/       WebDataset tars, manifest.parquet, splits (keys only)
      models/       <model_version>/ folders and current.json
      published/    the analyst table (radsim.warehouse.published)
      index/        nearest-neighbour caches of published versions
      reports/      evaluation reports per version
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORK_DIR = ".work"  # restricted scratch inside the warehouse, removed at the end of a run


@dataclass(frozen=True)
class WarehouseLayout:
    """The paths of a warehouse whose folder is `root`."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root

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

    @property
    def index(self) -> Path:
        return self.warehouse / "index"

    @property
    def work(self) -> Path:
        return self.restricted / WORK_DIR


@dataclass(frozen=True)
class DemoLayout(WarehouseLayout):
    """A demo's folder `root`: the synthetic cohort beside a warehouse of the same layout."""

    @property
    def cohort(self) -> Path:
        return self.root / "cohort"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"
