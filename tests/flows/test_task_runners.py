"""Acceptance (issue 8): labelling, sharding and embedding on a real Dask LocalCluster through prefect-dask.

A real Prefect server runs on loopback (with the ephemeral API each Dask worker would start its
own server); a subprocess pointed at it ingests a tiny synthetic cohort, then labels, shards and
embeds it twice: locally and on Dask with 2 worker processes. Shards must be byte-identical, the
labels tables equal and the published embeddings tables equal (vectors bitwise). All process
groups are killed whatever happens.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from radsim_test_fixtures.prefect_server import free_port, start_server, stop_group

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 120

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    from radsim.data_contracts import write_parquet_atomic
    from radsim.flows.build_shards import run_build_shards
    from radsim.flows.label_reports import run_label_reports
    from radsim.nlp.runner import label_file
    from radsim.synthetic import generate_cohort
    from radsim.warehouse.inbox import ingest_inbox
    from radsim.flows.run_config import RunConfig

    if __name__ == "__main__":
        root = Path(sys.argv[1])
        cohort = generate_cohort(root / "cohort", exams=12, seed=5, image_size=64, progress=False)
        exams = write_parquet_atomic(ingest_inbox(cohort.inbox).exams, root / "exams.parquet")
        label_file(exams, root / "local-labels.parquet", batch_size=4, progress=False)
        run_label_reports(exams, root / "dask-labels.parquet", runner="dask", workers=2, batch_size=4, progress=False)

        # the pipeline's labelling stage on the configured runner (one batch of the default 512 reports)
        import pyarrow.parquet as pq
        from radsim.flows.pipeline_tasks import label_stage
        from radsim.warehouse.layout import WarehouseLayout
        from radsim.warehouse.ledger import fingerprints

        table = pq.read_table(exams)
        prints = fingerprints(table)
        config = RunConfig.from_flat({"runner.task_runner": "dask", "runner.workers": 2, "runner.dask_address": None})
        label_stage(WarehouseLayout(root / "warehouse"), table, prints, sorted(prints), None, 1, False, config)
        common = dict(image_size=64, demo_key=True, batch_size=4, maxcount=5, progress=False)
        run_build_shards(str(exams), str(root / "local-labels.parquet"), str(root / "local-shards"),
                         runner="threads", workers=2, **common)
        run_build_shards(str(exams), str(root / "local-labels.parquet"), str(root / "dask-shards"),
                         runner="dask", workers=2, **common)

        # an untrained encoder is enough to compare a local and a split embedding run
        import torch
        from radsim.data_contracts import default_vocabulary, demo_keyer
        from radsim.flows.publish_embeddings import run_publish_embeddings
        from radsim.model.checkpoint import save_checkpoint
        from radsim.warehouse.card import ModelCard, write_card
        from radsim.model.encoders import build_encoder
        from radsim.model.publish import publish

        torch.manual_seed(0)
        vocab = default_vocabulary()
        card = ModelCard(model_version="v1", backbone="small", embedding_dim=16, image_size=64, loss="ml2",
                         vocabulary_name=vocab.name, vocabulary_version=vocab.version, findings=list(vocab.names),
                         key_id=demo_keyer().key_id, data_manifest_sha256="0" * 64, created_at="2024-01-01T00:00:00Z")
        (root / "model").mkdir()
        save_checkpoint(root / "model" / "model.pt", build_encoder("small", embedding_dim=16), card)
        write_card(root / "model", card)
        # one torch thread, as in each Dask worker (OMP_NUM_THREADS=1): torch's CPU kernels round
        # differently with another thread count (measured: 15 of 208 values off by 3e-8), not because of the split
        torch.set_num_threads(1)
        publish(root / "model", root / "local-shards", root / "local-published", batch_size=4, device="cpu")
        run_publish_embeddings(root / "model", root / "local-shards", root / "dask-published", runner="dask",
                               workers=2, batch_size=4, shards_per_task=1)
        print("DONE")
""")


def test_unreachable_dask_scheduler_is_one_line_usage_error(tmp_path):
    from radsim.data_contracts import UsageError
    from radsim.flows.task_runners import check_dask_scheduler, make_task_runner

    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(UsageError) as err:
        make_task_runner("dask", 2, address)
    assert address in str(err.value) and "scheduler" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - started < 10
    with pytest.raises(UsageError, match="not a scheduler address"):
        check_dask_scheduler("http://nowhere", timeout=0.5)


def test_cli_unreachable_dask_scheduler_exits_2(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    reports = tmp_path / "reports.csv"
    reports.write_text("exam_id,report_text\nE1,No acute findings.\n")
    env = {**os.environ, "RADSIM_ID_KEY": "k" * 32}
    done = subprocess.run([sys.executable, "-m", "radsim.flows.cli", "label", str(reports), "--out",
                           str(tmp_path / "l.parquet"), "--dask-address", address, "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert address in done.stderr and "Traceback" not in done.stderr


def _count_task_runs(api: str, name: str) -> int:
    body = json.dumps({"task_runs": {"name": {"like_": name}}}).encode()
    req = urllib.request.Request(f"{api}/task_runs/count", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(json.loads(r.read()))


def _shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_dask_runner_matches_local_run(tmp_path):
    pytest.importorskip("prefect_dask")
    pytest.importorskip("distributed")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RADSIM_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING")
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "run_dask.py").write_text(SCRIPT)
    started = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_server(port, env, tmp_path, logs / "server.log", 60))
        run_log = logs / "run.log"
        with open(run_log, "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(tmp_path / "run_dask.py"), str(tmp_path)],
                                          env={**env, "PREFECT_API_URL": api}, cwd=tmp_path, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        try:
            rc = procs[1].wait(max(1.0, DEADLINE_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, f"run exited {rc}:\n" + run_log.read_text()[-4000:]
        # the batches really ran as tasks recorded by this server: 12 exams / 4 per batch
        assert _count_task_runs(api, "label-batch") == 3 + 1  # run_label_reports + the pipeline's label step
        assert _count_task_runs(api, "decode-batch") >= 2 * 3  # local run + Dask run
        n_shards = len(list((tmp_path / "local-shards").glob("*.tar")))
        assert n_shards >= 3 and _count_task_runs(api, "embed-part") == n_shards  # one task per shard
    finally:
        for proc in reversed(procs):
            stop_group(proc)

    _assert_dask_outputs_equal_local_ones(tmp_path)


def _assert_dask_outputs_equal_local_ones(tmp_path: Path) -> None:
    local, dask = _shard_bytes(tmp_path / "local-shards"), _shard_bytes(tmp_path / "dask-shards")
    assert local and local == dask
    assert (pq.read_table(tmp_path / "local-shards" / "manifest.parquet")
            == pq.read_table(tmp_path / "dask-shards" / "manifest.parquet"))
    local_labels = pq.read_table(tmp_path / "local-labels.parquet")
    assert local_labels.num_rows > 0 and local_labels.equals(pq.read_table(tmp_path / "dask-labels.parquet"))
    assert (tmp_path / "local-labels.parquet").read_bytes() == (tmp_path / "dask-labels.parquet").read_bytes()
    pipeline_labels = pq.read_table(tmp_path / "warehouse" / "restricted" / "labels.parquet")
    assert pipeline_labels.equals(local_labels.sort_by("exam_id"))
    local_emb = pq.read_table(tmp_path / "local-published" / "embeddings" / "v1")
    dask_emb = pq.read_table(tmp_path / "dask-published" / "embeddings" / "v1")
    manifest = pq.read_table(tmp_path / "local-shards" / "manifest.parquet")
    assert local_emb.num_rows == manifest.num_rows > 0
    assert local_emb.column("exam_key").to_pylist() == manifest.column("exam_key").to_pylist()  # manifest order
    assert local_emb.equals(dask_emb)  # same rows, same order, embeddings bitwise equal (CPU fp32)


def test_pipeline_label_and_embed_stages_follow_the_configured_runner(tmp_path):
    """The label step and the embed step read runner.* from the configuration: an unreachable scheduler is a
    one-line usage error before any flow or cluster starts (the acceptance test above runs them on Dask)."""
    from radsim.data_contracts import UsageError, load_contract, rows_to_table
    from radsim.flows.config import resolve_config
    from radsim.flows.pipeline_tasks import label_stage
    from radsim.flows.publish_embeddings import run_embed_shards
    from radsim.warehouse.layout import WarehouseLayout
    from radsim.warehouse.ledger import fingerprints

    address = f"tcp://127.0.0.1:{free_port()}"
    exams = rows_to_table(load_contract("exams"), [
        {"exam_id": "E1", "patient_id": "P1", "image_uri": str(tmp_path / "e1.dcm"), "image_index": 0,
         "report_text": "No acute findings."}])
    prints = fingerprints(exams)
    config = resolve_config({"runner.task_runner": "dask", "runner.dask_address": address}, environ={})
    with pytest.raises(UsageError, match="unreachable"):
        label_stage(WarehouseLayout(tmp_path / "wh"), exams, prints, ["E1"], None, 1, False, config)
    assert not (tmp_path / "wh" / "restricted" / "labels.parquet").exists()
    with pytest.raises(UsageError, match="unreachable"):
        run_embed_shards(str(tmp_path / "model"), str(tmp_path / "shards"), runner="dask", dask_address=address)
    assert resolve_config({}, environ={}).runner.shards_per_task == 1
    with pytest.raises(UsageError, match="runner.shards_per_task"):
        resolve_config({}, environ={"RADSIM_RUNNER_SHARDS_PER_TASK": "0"})
