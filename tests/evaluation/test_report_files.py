"""`radsim evaluate`: records, report and plots of a published version, equal to the metrics computed directly."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError, demo_keyer, load_contract
from radsim.evaluation import evaluate_embeddings, records_to_table
from radsim.evaluation.report import EvalInputs, run_evaluation
from radsim.flows.cli import main
from radsim.warehouse import published as P

FINDINGS = ["no_finding", "cardiomegaly", "edema", "pleural_effusion"]
SETS = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0]]
D = 8


def cohort_table(n_exams: int = 60, seed: int = 0, version: str = "v1", dim: int = D, noisy: bool = False):
    """Clustered embeddings (one cluster per label set), a lateral second image for some exams, test/train splits."""
    rng, noise = np.random.default_rng(seed), np.random.default_rng(seed + 100)
    keyer = demo_keyer()
    rows: dict[str, list] = {k: [] for k in ("keys", "idx", "split", "view", "emb", "labels")}
    truth = []
    centres = np.eye(dim)[: len(SETS)] * 3
    for i in range(n_exams):
        c = i % len(SETS)
        labels = SETS[int(noise.integers(len(SETS)))] if noisy else SETS[c]  # "noisy": published labels random
        truth.append({"exam_id": f"E{i:04d}", **{f: SETS[c][j] for j, f in enumerate(FINDINGS)}})
        views = ["PA" if i % 2 else "AP"] + (["LATERAL"] if i % 3 == 0 else [])
        for k, view in enumerate(views):
            rows["keys"].append(keyer.exam_key(f"E{i:04d}"))
            rows["idx"].append(k)
            rows["split"].append("test" if i < n_exams * 0.8 else "train")
            rows["view"].append(view)
            rows["emb"].append(centres[c] + rng.standard_normal(dim) * 0.5)
            rows["labels"].append(labels)
    emb = np.asarray(rows["emb"], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = P.embeddings_table(exam_keys=rows["keys"], image_index=rows["idx"], splits=rows["split"],
                               view_positions=rows["view"], embeddings=emb, label_values=rows["labels"],
                               findings=FINDINGS, model_version=version, key_id=keyer.key_id)
    meta = P.table_metadata_for(model_version=version, key_id=keyer.key_id, findings=FINDINGS, vocabulary_name="t",
                                vocabulary_version="1", model_card={"backbone": "small", "loss": "ml2"})
    return table, meta, truth


def publish(out: Path, **kw) -> tuple[pa.Table, list[dict]]:
    table, meta, truth = cohort_table(**kw)
    P.publish_table(
        table, out, model_version=kw.get("version", "v1"), embedding_dim=kw.get("dim", D), extra_metadata=meta
    )
    return table, truth


def _direct(table: pa.Table, labels_by_key=None, split="test") -> list:
    """evaluate_embeddings on the frontal image of each test exam (what the report claims to use)."""
    rows = [r for r in table.to_pylist() if r["split"] == split and r["view_position"] in ("PA", "AP")]
    emb = np.asarray([r["embedding"] for r in rows], np.float32)
    if labels_by_key is None:
        labels = P.label_matrix([r["positive_findings"] for r in rows], FINDINGS)
    else:
        labels = np.asarray([labels_by_key[r["exam_key"]] for r in rows], bool)
    return evaluate_embeddings(emb, labels, model_version="v1", split=split, finding_names=FINDINGS, normal_index=0)


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and
                                         (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)))


def test_report_files_records_and_metrics_equal_the_direct_computation(tmp_path):
    table, _ = publish(tmp_path / "pub")
    result = run_evaluation(tmp_path / "pub", tmp_path / "report")
    for name in ("evaluation.json", "report.md", "map.png", "precision_at_k.png", "per_finding.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    doc = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    contract = load_contract("evaluation")
    contract.validate(pa.Table.from_pylist([{**r, "value": r["value"] if r["value"] is not None else math.nan}
                                            for r in doc], schema=contract.schema()))
    direct = {(r.metric, r.k): r for r in _direct(table)}
    head = {(r["metric"], r["k"]): r for r in doc if r["split"] == "test"}
    assert set(direct) == set(head)
    for key, r in direct.items():
        assert _same(head[key]["value"], r.value) and _same(head[key]["chance_value"], r.chance_value), key
        assert _same(head[key]["random_value"], r.random_value), key
    assert head[("precision_at_k", 10)]["value"] > head[("precision_at_k", 10)]["chance_value"] + 0.3
    assert head[("normal_auc", 10)]["value"] > 0.9
    for metric in ("precision_at_k", "map_at_r", "ndcg_at_k", "normal_auc", "nmi", "purity", "precision_at_k/edema"):
        assert any(r["metric"] == metric for r in doc)
    views = {r["split"] for r in doc}
    assert {"test", "test/view=PA", "test/view=AP", "test/view=LATERAL"} <= views
    records_to_table(result.records)
    report = (tmp_path / "report" / "report.md").read_text()
    p10 = head[("precision_at_k", 10)]
    assert (f"| P@10 | 10 |  | {p10['n_queries']} ({p10['n_patients']}) | **{p10['value']:.3f}** [{p10['ci_low']:.3f}, "
            f"{p10['ci_high']:.3f}] | {p10['chance_value']:.3f} | {p10['random_value']:.3f} ± {p10['random_sd']:.3f} | "
            f"above chance |") in report
    # the PA films are all abnormal here: their AUC is too few to judge, shown without a value or a verdict
    assert (
        "| PA | normal AUC | 24 (24) | too few to judge (0 normal and 24 abnormal exams; each class needs 3) |"
        in report
    )
    pa_auc = next(r for r in doc if r["split"] == "test/view=PA" and r["metric"] == "normal_auc")
    assert pa_auc["verdict"] == "too few to judge" and pa_auc["ci_low"] is None and pa_auc["n_queries"] == 24
    assert "give --shards" in report  # the gallery is skipped with a note


def test_truth_replaces_the_published_labels(tmp_path):
    table, truth = publish(tmp_path / "pub", noisy=True)
    truth_path = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist(truth), truth_path)
    keyer = demo_keyer()
    by_key = {keyer.exam_key(t["exam_id"]): [t[f] == 1 for f in FINDINGS] for t in truth}
    noisy = run_evaluation(tmp_path / "pub", tmp_path / "r1", plots=False)
    clean = run_evaluation(
        tmp_path / "pub", tmp_path / "r2", inputs=EvalInputs(truth=truth_path, keyer=keyer), plots=False
    )
    direct = {(r.metric, r.k): r.value for r in _direct(table, by_key)}
    got = {(r.metric, r.k): r.value for r in clean.records if r.split == "test"}
    assert all(_same(got[k], v) for k, v in direct.items())
    assert clean.record("precision_at_k", 1).value > noisy.record("precision_at_k", 1).value
    with pytest.raises(UsageError, match="key_id"):
        from radsim.data_contracts import IdKeyer

        run_evaluation(tmp_path / "pub", tmp_path / "r3",
                       inputs=EvalInputs(truth=truth_path, keyer=IdKeyer(b"another-site-secret-123")))


def test_cli_writes_the_report_of_the_newest_version(tmp_path, capsys):
    publish(tmp_path / "pub", version="v1")
    publish(tmp_path / "pub", version="v2", seed=1)
    assert main(["evaluate", "--embeddings", str(tmp_path / "pub"), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "model version v2" in out and "P@10" in out and "chance" in out
    assert {r["model_version"] for r in json.loads((tmp_path / "r" / "evaluation.json").read_text())} == {"v2"}
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model_version"] == "v2"


# ------------------------------------------------------------------------------ bad input
def _evaluate(tmp_path, *extra) -> int:
    return main(["evaluate", "--embeddings", str(tmp_path / "pub"), "--out", str(tmp_path / "r"), "--no-plots", *extra])


def _part(tmp_path, version="v1") -> Path:
    (part,) = P.version_dir(tmp_path / "pub", version).glob("part-*.parquet")
    return part


def test_unpublished_version_exits_2(tmp_path, capsys):
    publish(tmp_path / "pub")
    assert _evaluate(tmp_path, "--model-version", "v9") == 2
    err = capsys.readouterr().err
    assert "'v9' is not published" in err and "published: v1" in err
    assert main(["evaluate", "--embeddings", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2


def test_missing_or_mismatched_publish_record_exits_2(tmp_path, capsys):
    publish(tmp_path / "pub")
    part = _part(tmp_path)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    part.write_bytes(bytes(data))
    assert _evaluate(tmp_path, "--model-version", "v1") == 2
    assert "does not match its publish record (checksum)" in capsys.readouterr().err
    (tmp_path / "pub" / "_manifests" / "v1.json").unlink()
    assert _evaluate(tmp_path, "--model-version", "v1") == 2
    assert "publish record" in capsys.readouterr().err


def test_corrupted_parquet_exits_2(tmp_path, capsys):
    publish(tmp_path / "pub")
    part = _part(tmp_path)
    part.write_bytes(part.read_bytes()[:-100])  # truncated: no footer
    assert _evaluate(tmp_path) == 2
    assert "corrupted Parquet file" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["D", "vocabulary"])
def test_a_table_that_mixes_d_or_vocabulary_exits_2(tmp_path, capsys, what):
    publish(tmp_path / "pub")
    other, meta, _ = cohort_table(dim=D + 4 if what == "D" else D)
    if what == "vocabulary":
        meta = {**meta, "radsim.vocabulary.findings": json.dumps(FINDINGS[::-1])}
    pq.write_table(other.replace_schema_metadata(meta), _part(tmp_path).with_name("part-00001-foreign.parquet"))
    assert _evaluate(tmp_path) == 2
    err = capsys.readouterr().err
    assert ("mixes embedding sizes" if what == "D" else "mixes vocabularies") in err


def test_report_similar_and_store_modules_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; import radsim.evaluation.report, radsim.evaluation.plots, radsim.evaluation.similar, "
            "radsim.warehouse.published, radsim.flows.commands.evaluate, radsim.flows.commands.similar; "
            "print('torch' in sys.modules)")
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_a_scheduled_rerun_keeps_a_report_whose_inputs_did_not_change(tmp_path):
    table, truth = publish(tmp_path / "pub")
    truth_path = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist(truth), truth_path)
    kw = dict(inputs=EvalInputs(truth=truth_path, keyer=demo_keyer()), plots=False, reuse=True)
    first = run_evaluation(tmp_path / "pub", tmp_path / "r", **kw)
    written = (tmp_path / "r" / "evaluation.json").stat().st_mtime_ns
    again = run_evaluation(tmp_path / "pub", tmp_path / "r", **kw)
    assert again.reused and not first.reused and again.notes[0].startswith("evaluation unchanged")
    assert (tmp_path / "r" / "evaluation.json").stat().st_mtime_ns == written
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in first.records]
    truth[0]["edema"] = 1 - truth[0]["edema"]  # one label of one scored exam changes: evaluated again
    pq.write_table(pa.Table.from_pylist(truth), truth_path)
    assert not run_evaluation(tmp_path / "pub", tmp_path / "r", **kw).reused
    assert not run_evaluation(tmp_path / "pub", tmp_path / "r", **{**kw, "reuse": False}).reused  # the CLI's default
