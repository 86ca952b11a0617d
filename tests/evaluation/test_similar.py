"""Similar-exam search: FAISS results, the cached index and its rebuild, and `radsim similar` errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radsim.data_contracts import UsageError, demo_keyer
from radsim.evaluation.similar import SimilarIndex
from radsim.flows.cli import main
from radsim.warehouse import published as P

D = 12
FINDINGS = ["no_finding", "cardiomegaly", "edema"]


def publish(out: Path, n: int = 80, seed: int = 0, version: str = "v1") -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    keyer = demo_keyer()
    ids = [f"ACC{1000 + i}" for i in range(n)]
    keys = [keyer.exam_key(i) for i in ids]
    emb = rng.standard_normal((n, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [[1, 0, 0] if i % 2 else [0, 1, 1] for i in range(n)]
    labels[3] = None  # an unlabelled exam
    table = P.embeddings_table(exam_keys=keys, image_index=[0] * n, splits=["test"] * n, view_positions=["PA"] * n,
                               embeddings=emb, label_values=labels, findings=FINDINGS, model_version=version,
                               key_id=keyer.key_id)
    meta = P.table_metadata_for(model_version=version, key_id=keyer.key_id, findings=FINDINGS, vocabulary_name="t",
                                vocabulary_version="1", model_card={})
    P.publish_table(table, out, model_version=version, embedding_dim=D, extra_metadata=meta)
    return keys, emb


def test_query_returns_itself_first_then_the_exact_neighbours(tmp_path):
    keys, emb = publish(tmp_path / "pub")
    index = SimilarIndex.open(tmp_path / "pub")
    for q in (0, 3, 41):
        res = index.query(exam_key=keys[q], k=10)
        assert res[0].exam_key == keys[q] and res[0].distance == pytest.approx(0.0, abs=1e-5)
        brute = np.argsort(-(emb @ emb[q]), kind="stable")[:10]
        assert [r.exam_key for r in res] == [keys[i] for i in brute]
        assert [r.rank for r in res] == list(range(1, 11))
        assert all(a.distance <= b.distance + 1e-6 for a, b in zip(res, res[1:]))
    unlabelled = index.query(exam_key=keys[3], k=1)[0]
    assert unlabelled.positive_findings is None
    assert index.query(exam_key=keys[1], k=1)[0].positive_findings == ["no_finding"]
    assert keys[5] not in [r.exam_key for r in index.query(exam_key=keys[5], k=5, exclude_self=True)]


def test_query_by_vector_and_approximate_indexes(tmp_path):
    keys, emb = publish(tmp_path / "pub", n=300)
    flat = SimilarIndex.open(tmp_path / "pub")
    assert flat.query(vector=emb[7] * 3.0, k=1)[0].exam_key == keys[7]  # vectors are normalised first
    for kind in ("ivf", "hnsw"):
        idx = SimilarIndex.open(tmp_path / "pub", kind=kind)
        assert idx.query(exam_key=keys[7], k=5)[0].exam_key == keys[7]
        assert SimilarIndex.open(tmp_path / "pub", kind=kind).rebuilt is False  # cached too
    with pytest.raises(UsageError, match="D=3"):
        flat.query(vector=np.ones(3), k=1)


def test_index_is_cached_outside_the_table_and_rebuilt_when_republished(tmp_path):
    keys, _ = publish(tmp_path / "pub", seed=0)
    first = SimilarIndex.open(tmp_path / "pub")
    assert first.rebuilt
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["v1.flat.faiss", "v1.flat.json"]
    assert all(p.suffix == ".parquet" for p in (tmp_path / "pub" / "embeddings").rglob("*") if p.is_file())
    again = SimilarIndex.open(tmp_path / "pub")
    assert not again.rebuilt
    stored = json.loads((tmp_path / "index" / "v1.flat.json").read_text())
    assert stored["record_checksum"] == again.version.checksum
    new_keys, _ = publish(tmp_path / "pub", seed=1)  # same exams, new vectors: a new record checksum
    after = SimilarIndex.open(tmp_path / "pub")
    assert after.rebuilt and after.version.checksum != stored["record_checksum"]
    assert after.query(exam_key=new_keys[2], k=1)[0].distance == pytest.approx(0.0, abs=1e-5)


def test_a_changed_file_is_caught_before_an_index_is_built(tmp_path):
    publish(tmp_path / "pub")
    (part,) = P.version_dir(tmp_path / "pub", "v1").glob("part-*.parquet")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="checksum"):
        SimilarIndex.open(tmp_path / "pub")


def test_cli_by_exam_id_and_key(tmp_path, capsys):
    keys, _ = publish(tmp_path / "pub")
    assert main(["similar", "--embeddings", str(tmp_path / "pub"), "--demo-key", "ACC1010", "--k", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:5]
    assert len(rows) == 3 and keys[10] not in " ".join(rows)  # the query exam is left out by default
    base = ["similar", "--embeddings", str(tmp_path / "pub"), "--exam-key", keys[4], "--k", "2", "--json"]
    assert main(base) == 0
    doc = json.loads(capsys.readouterr().out)
    assert keys[4] not in [n["exam_key"] for n in doc["neighbours"]] and len(doc["neighbours"]) == 2
    assert main([*base, "--include-query"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["neighbours"][0]["exam_key"] == keys[4] and doc["neighbours"][0]["distance"] == 0.0


def test_cli_bad_input_exits_2(tmp_path, capsys):
    publish(tmp_path / "pub")
    id_map = tmp_path / "id_map.csv"
    id_map.write_text("exam_id,exam_key\n" + "".join(f"ACC{1000 + i},x\n" for i in range(80)))
    base = ["similar", "--embeddings", str(tmp_path / "pub")]
    assert main([*base, "--demo-key", "ACC10100"]) == 2
    assert "is not in model version v1 under key demo-" in capsys.readouterr().err
    assert main([*base, "--demo-key", "ACC10100", "--id-map", str(id_map)]) == 2
    assert "did you mean: ACC1010" in capsys.readouterr().err
    assert main([*base, "--exam-key", "f" * 32]) == 2
    assert "is not in model version v1" in capsys.readouterr().err
    assert main([*base, "--demo-key", "ACC1010", "--model-version", "v7"]) == 2
    assert "'v7' is not published" in capsys.readouterr().err
    assert main([*base, "--image", str(tmp_path / "x.png")]) == 2
    assert "--image needs --model" in capsys.readouterr().err
    assert main([*base]) == 2
    assert "exactly one query" in capsys.readouterr().err
    assert main([*base, "ACC1010"]) == 2  # no key: a clear message, not a guess
    assert "RADSIM_ID_KEY" in capsys.readouterr().err


def test_cli_refuses_a_key_the_table_was_not_made_with(tmp_path, capsys, site_key):
    publish(tmp_path / "pub")
    assert main(["similar", "--embeddings", str(tmp_path / "pub"), "ACC1010"]) == 2
    assert "keyed with key_id 'demo-" in capsys.readouterr().err
