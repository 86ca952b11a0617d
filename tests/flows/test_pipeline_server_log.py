"""Acceptance (issue 23): `radsim run` against a real Prefect server leaves what a person needs in the UI.

A Prefect server on loopback, `radsim run` with PREFECT_API_URL set on a small synthetic inbox
with bad records, then only the server's REST API is read: the pipeline flow run's log holds
radsim's stage lines and end-of-run counts, its run artifact states the gate decision and
non-zero reconciliation counts, the run is tagged with the warehouse and the model version; and
the server's database holds no raw exam id, report sentence or identifying header value.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from radsim_test_fixtures.prefect_server import (
    RADSIM,
    flow_runs_named,
    free_port,
    run_artifacts,
    run_logs,
    server_env,
    start_server,
    stop_group,
)

DEADLINE_S = 240


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_a_radsim_run_shows_its_lines_decision_and_counts_on_the_server(tmp_path, privacy_scan):
    from radsim.synthetic import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", exams=40, seed=23, image_size=64, bad=True, progress=False)
    warehouse = tmp_path / "site-wh"
    toml = tmp_path / "radsim.toml"
    toml.write_text("[imaging]\nimage_size = 64\n[model]\nimage_size = 64\nmax_steps = 3\nbatch_size = 8\n"
                    "force_promote = true\n[runner]\nworkers = 1\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    env = server_env(tmp_path / "prefect-home")
    server = start_server(port, env, tmp_path, tmp_path / "server.log")
    try:
        done = subprocess.run([*RADSIM, "run", str(cohort.inbox), "--warehouse", str(warehouse), "--config", str(toml),
                               "--demo-key", "--no-progress"], env={**env, "PREFECT_API_URL": base}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=DEADLINE_S)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "[1/6] ingesting" in done.stdout and "Counts (rows in" in done.stdout  # the console is as it was
        assert "Finished in state" not in done.stdout + done.stderr  # Prefect's INFO lines stay off the console
        runs = flow_runs_named(base, "pipeline")
        assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
        run = runs[0]
        logs = run_logs(base, run["id"])
        artifacts = run_artifacts(base, run["id"])
    finally:
        stop_group(server)
    text = "\n".join(logs)
    for stage in ("[1/6] ingesting", "[2/6] labelling", "[3/6] sharding", "[4/6] training", "[5/6] embedding",
                  "[6/6]"):
        assert stage in text, stage
    counts = re.search(r"ingest: (\d+) in = (\d+) out \+ (\d+) quarantined \+ (\d+) skipped", text)
    assert counts and int(counts[1]) > 0 and int(counts[3]) > 0, text[-3000:]  # the bad records were refused
    assert "quarantined by reason:" in text and re.search(r"published \d+ rows under model version", text)
    assert "radsim pipeline finished" in text
    assert "Finished in state Completed()" in text  # radsim's defaults send Prefect's own INFO lines to the server

    report = artifacts["radsim-pipeline-run"]["data"]
    assert "**Decision: forced: by model.force_promote in radsim.toml" in report
    row = re.search(r"\| ingest \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| yes \|", report)
    assert row and int(row[1]) == int(counts[1]) > 0 and int(row[3]) > 0
    assert "Quarantine reasons (this run)" in report and "Nothing was quarantined" not in report
    assert "model-card" in artifacts and "Gate decision: forced" in artifacts["model-card"]["data"]
    assert "warehouse:site-wh" in run["tags"] and any(t.startswith("model:") for t in run["tags"]), run["tags"]
    current = json.loads((warehouse / "models" / "current.json").read_text())
    assert current["reason"].startswith("forced: by model.force_promote in radsim.toml")  # not "--force-promote"
    assert current["decision"]["forced_by"] == "model.force_promote in radsim.toml"

    needles = privacy_scan.inbox_needles(cohort.inbox)
    assert len(needles) > 150
    db = tmp_path / "prefect-home" / "prefect.db"
    assert privacy_scan.find_in_database(db, needles) == []
    assert privacy_scan.find_in_database(db, ["[1/6] ingesting"]) != []  # the scan reads the logs it checks
    assert "restricted/" not in text
