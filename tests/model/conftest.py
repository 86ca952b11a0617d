"""Model tests run torch on one thread: on a shared 2-core machine, two OpenMP threads that
compete with other processes spin-wait and run a small CNN step up to ~70x slower."""
import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def train_shards(tmp_path_factory):
    """~400 synthetic exams sharded at 64 px (synth -> ingest -> label -> shard, demo key), made once.

    Returns {"shards": Path, "exams": Path, "labels": Path, "truth": Path}; tests copy before changing it.
    """
    from radsim.data_contracts import demo_keyer, load_contract, write_parquet_atomic
    from radsim.data_contracts.ingest import ingest_manifests
    from radsim.imaging.shards import write_shards
    from radsim.nlp.runner import label_file
    from radsim.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("train-cohort")
    cohort = generate_cohort(root / "cohort", exams=400, seed=3, image_size=64, progress=False)
    write_parquet_atomic(ingest_manifests([cohort.exams_path]).exams, root / "exams.parquet", load_contract("exams"))
    label_file(root / "exams.parquet", root / "labels.parquet", progress=False)
    write_shards(root / "exams.parquet", root / "labels.parquet", root / "shards", keyer=demo_keyer(), image_size=64,
                 progress=False)
    return {"shards": root / "shards", "exams": root / "exams.parquet", "labels": root / "labels.parquet",
            "truth": cohort.truth_path}
