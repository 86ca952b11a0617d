"""`radsim similar`: --image uses the warehouse's model of the searched version; --id-map prints restricted raw ids."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import demo_keyer
from radsim.flows.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_image_query_in_a_warehouse_needs_no_model_option(cohort, model_dir, published, tmp_path, capsys):
    shutil.copytree(published, tmp_path / "wh" / "published")
    shutil.copytree(model_dir, tmp_path / "wh" / "models" / "v1")
    exam_id = pq.read_table(cohort.exams).column("exam_id")[5].as_py()
    image = cohort.cohort_dir / "inbox" / exam_id / "0.dcm"
    assert main(["similar", "--embeddings", str(tmp_path / "wh" / "published"), "--image", str(image), "--k", "2",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["neighbours"][0]["exam_key"] == demo_keyer().exam_key(exam_id)
    assert str(tmp_path / "wh" / "models" / "v1") in doc["query"]  # it says which model embedded the image
    shutil.rmtree(tmp_path / "wh" / "models")
    assert main(["similar", "--embeddings", str(tmp_path / "wh" / "published"), "--image", str(image)]) == 2
    assert "--image needs --model MODEL_DIR: no model folder" in capsys.readouterr().err


def test_id_map_prints_the_neighbours_raw_ids_marked_restricted(cohort, published, tmp_path, capsys):
    exams = pq.read_table(cohort.exams)
    ids = list(dict.fromkeys(exams.column("exam_id").to_pylist()))
    id_map = tmp_path / "id_map.csv"
    id_map.write_text("exam_id\n" + "".join(f"{i}\n" for i in ids))
    base = ["similar", "--embeddings", str(published), "--id-map", str(id_map), "--demo-key", "--k", "3"]
    assert main([*base, ids[2]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("RESTRICTED: raw exam ids") and "exam_id (restricted)" in out
    rows = out.splitlines()[3:6]
    by_key = {demo_keyer().exam_key(i): i for i in ids}
    for row in rows:
        key = row.split()[1]
        assert by_key[key] in row  # each neighbour's raw id beside its key
    assert main([*base, "--exam-key", demo_keyer().exam_key(ids[2]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "in-site use only" in doc["restricted"]
    assert all(n["exam_id"] == by_key[n["exam_key"]] for n in doc["neighbours"])


def test_id_map_needs_the_site_key(published, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RADSIM_ID_KEY", raising=False)
    id_map = tmp_path / "id_map.csv"
    id_map.write_text("exam_id\nACC1\n")
    assert main(["similar", "--embeddings", str(published), "--exam-key", "0" * 32, "--id-map", str(id_map)]) == 2
    assert "RADSIM_ID_KEY" in capsys.readouterr().err
