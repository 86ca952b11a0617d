"""Shared fixtures. Prefect's offline variables are set before anything imports prefect."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="radsim-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Tests never use a real site key.
os.environ.pop("RADSIM_ID_KEY", None)

# Fixtures used by more than one folder (tiny radiographs; a sharded cohort and a model folder).
pytest_plugins = ["radsim_test_fixtures.images", "radsim_test_fixtures.published_cohort"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DICOM_DIR = Path(os.environ.get("RADSIM_SHARED_DICOM", REPO_ROOT.parent / "shared" / "data" / "dicom"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's Prefect home goes with the session: a test run leaves no database behind in /tmp."""
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session, with a bounded start-up (DESIGN §13).

    Request it only in tests that really run a flow through the engine; others call `flow.fn`.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def shared_dicom_dir() -> Path:
    """The real radiograph DICOMs in ../shared/data/dicom (see its README)."""
    if not SHARED_DICOM_DIR.is_dir():
        pytest.fail(f"shared DICOM test files not found at {SHARED_DICOM_DIR}; set RADSIM_SHARED_DICOM")
    return SHARED_DICOM_DIR


@pytest.fixture
def one_torch_thread():
    """torch on one thread: on a shared 2-core machine, two OpenMP threads that compete with other
    processes spin-wait and run a small CNN step many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def site_key(monkeypatch) -> str:
    """A non-demo pseudonymisation key for tests that run as a site would."""
    key = "test-site-secret-0123456789abcdef"
    monkeypatch.setenv("RADSIM_ID_KEY", key)
    return key


@pytest.fixture
def memory_root(tmp_path, monkeypatch):
    """A fresh memory:// root and the fsspec filesystem, with a private mirror cache; removed afterwards."""
    import uuid

    import fsspec

    monkeypatch.setenv("RADSIM_CACHE", str(tmp_path / "cache"))
    root = f"memory://radsim-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    yield root, fs
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(scope="session")
def privacy_scan():
    """The shared privacy scan (tests/privacy_scan.py): `find_identifiers(root, needles)` → hits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("radsim_privacy_scan", Path(__file__).with_name("privacy_scan.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PUBLISHED_D = 8
PUBLISHED_FINDINGS = ["no_finding", "cardiomegaly", "edema"]


@pytest.fixture(scope="session")
def publish_synthetic() -> Any:
    """`publish_synthetic(out, n, seed, version="v1", make_current=False, reason=None)`: a contract-valid
    embeddings table of n rows published into `out` without torch (the store is pure pyarrow)."""
    return _publish_synthetic


def _publish_synthetic(out: Path, n: int, seed: int, version: str = "v1", *, make_current: bool = False,
                      reason: str | None = None) -> Any:
    """A contract-valid embeddings table of n rows for `version`, published into `out`."""
    import numpy as np

    from radsim.warehouse import published as P

    D, FINDINGS = PUBLISHED_D, PUBLISHED_FINDINGS
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    values = [[1, 0, 0] if i % 3 == 0 else [0, 1, int(i % 2)] for i in range(n)]
    table = P.embeddings_table(exam_keys=[f"{seed:02d}{i:030x}" for i in range(n)], image_index=[0] * n,
                               splits=["test"] * n, view_positions=["PA"] * n, embeddings=emb, label_values=values,
                               findings=FINDINGS, model_version=version, key_id="demo-test")
    meta = P.table_metadata_for(model_version=version, key_id="demo-test", findings=FINDINGS, vocabulary_name="t",
                                vocabulary_version="1", model_card={"model_version": version})
    return P.publish_table(table, out, model_version=version, embedding_dim=D, extra_metadata=meta,
                           make_current=make_current, current_reason=reason)
