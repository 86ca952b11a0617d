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
RESTRICTED_DIR = "restricted"

# Every file name radsim reads or writes, declared here once; tests/test_table_names.py fails on a
# literal copy anywhere else in the source or the benchmarks.
EXAMS_FILE = "exams.parquet"  # restricted: raw ids, report text, paths
LABELS_FILE = "labels.parquet"  # restricted: raw ids, evidence sentences
QUARANTINE_FILE = "quarantine.parquet"  # restricted: every stage's refusals (a pre-2026-12 SHARDS_DIR held one too)
SHARD_QUARANTINE_FILE = "shard-quarantine.parquet"  # restricted: the shard stage's own refusals
LEDGER_FILE = "ledger.parquet"  # restricted/ (the warehouse root before 2026-12)
INBOX_INDEX_FILE = "inbox_index.parquet"  # restricted/
MANIFEST_FILE = "manifest.parquet"  # SHARDS_DIR: one row per sample
SOURCES_FILE = "sources.parquet"  # SHARDS_DIR: sample_key -> keyed digest of its source file
SPLITS_FILE = "splits.parquet"  # SHARDS_DIR: sticky patient_key -> split
VERSIONS_FILE = "versions.parquet"  # PUBLISHED_DIR: which versions exist, which is current
CURRENT_FILE = "current.json"  # models/: the current model and the last decisions
CARD_FILE = "model_card.json"  # models/<v>/
BEST_FILE = "model.pt"  # models/<v>/: the selected weights
LAST_FILE = "last.pt"  # models/<v>/: the last finished step (resume)
CONFIG_FILE = "config.json"  # the resolved configuration of a run or an evaluation
EVALUATION_FILE = "evaluation.json"  # reports/<v>/
REPORT_FILE = "report.md"  # reports/<v>/
EVALUATION_INPUTS_FILE = "evaluation.inputs.json"  # reports/<v>/: what the report was computed from
TRUTH_FILE = "truth.parquet"  # a synthetic cohort: what each image shows
REPORT_TRUTH_FILE = "report_truth.parquet"  # a synthetic cohort: what each report asserts


@dataclass(frozen=True)
class WarehouseLayout:
    """The paths of a warehouse whose folder is `root`."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root

    @property
    def restricted(self) -> Path:
        return self.warehouse / RESTRICTED_DIR

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

    @property
    def exams(self) -> Path:
        return self.restricted / EXAMS_FILE

    @property
    def labels(self) -> Path:
        return self.restricted / LABELS_FILE

    @property
    def quarantine(self) -> Path:
        return self.restricted / QUARANTINE_FILE

    @property
    def inbox_index(self) -> Path:
        return self.restricted / INBOX_INDEX_FILE


@dataclass(frozen=True)
class DemoLayout(WarehouseLayout):
    """A demo's folder `root`: the synthetic cohort beside a warehouse of the same layout."""

    @property
    def cohort(self) -> Path:
        return self.root / "cohort"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"
