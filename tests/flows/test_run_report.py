"""The run's summary lines and its one artifact: reconciliation, this run's reasons, the decision; no empty table."""
from __future__ import annotations

from pathlib import Path

from radsim.data_contracts import StageCounts
from radsim.flows.pipeline import PipelineResult
from radsim.flows.run_report import run_markdown, summary_lines, warehouse_name
from radsim.warehouse.layout import WarehouseLayout

FORCED = {"state": "forced", "outcome": "undecided", "candidate": "small-v2", "collapsed": True, "forced": True,
          "forced_by": "model.force_promote in radsim.toml",
          "reason": "forced: by model.force_promote in radsim.toml, overriding undecided: 5 patients"}


def _result(**kw) -> PipelineResult:
    result = PipelineResult(WarehouseLayout(Path("/w/site-a")), seconds=12.0, **kw)
    return result


def test_a_pipeline_run_reads_as_counts_reasons_and_the_decision():
    result = _result(counts=[StageCounts("ingest", 41, 38, 3, 0), StageCounts("label", 38, 37, 1, 0)],
                     notes=["ledger: 38 new"], model_version="small-v2", published_rows=37, promotion=FORCED,
                     run_reasons={"ingest": {"duplicate_id": 1, "missing_file": 2}, "label": {}, "shard": {}})
    result.metrics = {"validation": {"n_items": 9, "n_patients": 5, "mean_pairwise_cosine": 0.998,
                                     "precision_at_10": 0.3, "precision_at_10_verdict": "too few to judge"}}
    lines = summary_lines(result, "Counts:")
    assert lines[:3] == ["Counts:", "  ingest: 41 in = 38 out + 3 quarantined + 0 skipped",
                         "  label: 38 in = 37 out + 1 quarantined + 0 skipped"]
    assert lines[-1] == "  published 37 rows under model version small-v2"
    text = run_markdown(result, "pipeline", "/w/site-a")
    assert "# radsim pipeline run: warehouse site-a" in text
    assert "| ingest | 41 | 38 | 3 | 0 | yes |" in text
    assert "- ingest: duplicate_id=1, missing_file=2" in text and "- label" not in text
    assert "**Decision: forced: by model.force_promote in radsim.toml" in text
    assert "collapsed" in text and "5 patients" in text and "### small-v2" in text


def test_a_run_without_stages_says_so_in_a_sentence_not_an_empty_table():
    result = _result(model_version="small-v1", published_rows=10)
    text = run_markdown(result, "train", "s3://bucket/radsim/")
    assert "| stage |" not in text and "no ingest, label or shard stage ran" in text.lower()
    assert "Nothing was quarantined in this run." in text
    assert "the current model small-v1 was kept" in text
    assert "no ingest, label or shard stage ran" in summary_lines(result, "Counts:")[1]
    assert warehouse_name("s3://bucket/radsim/") == "radsim"


def test_an_empty_table_artifact_becomes_a_sentence(monkeypatch):
    from radsim.flows import artifacts

    made = []
    monkeypatch.setattr(artifacts, "_create", lambda kind, **fields: made.append((kind, fields)))
    artifacts.table_artifact("shard-counts", [], "images sharded")
    artifacts.table_artifact("shard-counts", [{"rows_in": 3}], "images sharded")
    assert made[0][0] == "markdown" and "Nothing to show" in made[0][1]["markdown"]
    assert made[1][0] == "table"


def test_an_artifact_the_api_refuses_is_a_warning_not_a_failed_run(monkeypatch, capsys):
    import prefect.artifacts

    from radsim.flows import artifacts

    def refuse(**fields):
        raise RuntimeError("503 from the server")

    monkeypatch.setattr(artifacts, "in_flow_run", lambda: True)
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", refuse)
    artifacts.markdown_artifact("radsim-pipeline-run", "# run", "the run")
    assert "could not write the Prefect artifact 'radsim-pipeline-run': 503 from the server" in capsys.readouterr().err
