"""The published embeddings table: contract, metadata, layout, readers and the publish record."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from radsim.data_contracts import demo_keyer, load_contract
from radsim.data_contracts.atomic import sha256_file
from radsim.warehouse.published import open_version, version_dir

DIM = 16  # tests/radsim_test_fixtures/published_cohort.py builds D=16 models


def _part(published):
    (part,) = version_dir(published, "v1").glob("part-*.parquet")
    return part


def test_every_image_is_published_with_the_contract_and_metadata(cohort, published):
    table = pq.read_table(_part(published))
    manifest = pq.read_table(cohort.shards / "manifest.parquet")
    assert table.num_rows == manifest.num_rows
    assert table.column("exam_key").to_pylist() == manifest.column("exam_key").to_pylist()
    load_contract("embeddings", D=DIM).validate(table)
    assert str(table.schema.field("embedding").type) == f"fixed_size_list<element: float>[{DIM}]"
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["radsim.contract"] == "embeddings" and meta["radsim.param.D"] == str(DIM)
    assert meta["radsim.key_id"] == demo_keyer().key_id
    card = json.loads(meta["radsim.model_card"])
    assert card["model_version"] == "v1" and card["disclaimer"].startswith("Not a medical device")
    assert json.loads(meta["radsim.vocabulary.findings"])[0] == "no_finding"
    assert set(table.column("key_id").to_pylist()) == {demo_keyer().key_id}


def test_unlabelled_exams_are_published_with_null_findings(cohort, published):
    table = pq.read_table(_part(published))
    keyer = demo_keyer()
    unlabelled = {keyer.exam_key(i) for i in cohort.unlabelled_ids}
    rows = table.to_pylist()
    nulls = [r for r in rows if r["exam_key"] in unlabelled]
    assert nulls and all(r["positive_findings"] is None and r["no_finding"] is None for r in nulls)
    labelled = [r for r in rows if r["exam_key"] not in unlabelled]
    assert all(r["no_finding"] in (0, 1) and r["positive_findings"] is not None for r in labelled)
    assert all((r["no_finding"] == 1) == ("no_finding" in r["positive_findings"]) for r in labelled)


def test_embeddings_are_unit_vectors_and_match_a_direct_forward_pass(cohort, published, model_dir):
    import torch

    from radsim.imaging.reader import iter_manifest_samples
    from radsim.model.checkpoint import load_model

    emb = np.asarray(pq.read_table(_part(published)).column("embedding").to_pylist(), dtype=np.float32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sample = next(iter_manifest_samples(cohort.shards))
    with torch.no_grad():
        direct = load_model(model_dir).model(sample["image"][None]).numpy()[0]
    assert np.allclose(direct, emb[0], atol=1e-5)


def test_parquet_layout_row_groups_and_no_dictionary(published):
    md = pq.ParquetFile(_part(published)).metadata
    for rg in range(md.num_row_groups):
        assert md.row_group(rg).num_rows <= 65_536
        for c in range(md.num_columns):
            assert not md.row_group(rg).column(c).has_dictionary_page
    files = [p for p in (published / "embeddings").rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".parquet" for p in files)


def test_publish_record_matches_the_files(published):
    record = json.loads((published / "_manifests" / "v1.json").read_text())
    part = record["parts"][0]
    assert record["rows"] == pq.read_metadata(_part(published)).num_rows
    assert part["sha256"] == sha256_file(_part(published))
    assert record["embedding_dim"] == DIM and record["contract_version"] == "1.0.0"
    assert record["key_id"] == demo_keyer().key_id and record["vocabulary"]["findings"][0] == "no_finding"
    assert open_version(published).checksum == record["checksum"]


def test_readable_with_pyarrow_polars_and_duckdb(published):
    import duckdb
    import polars as pl

    n = pq.read_metadata(_part(published)).num_rows
    glob = str(published / "embeddings" / "**" / "*.parquet")
    df = pl.read_parquet(glob, hive_partitioning=True)
    assert df.height == n and df.schema["embedding"] == pl.Array(pl.Float32, DIM)
    row = duckdb.connect().execute(f"SELECT count(*), max(len(embedding::FLOAT[{DIM}])), any_value(model_version) "
                     f"FROM read_parquet('{glob}', hive_partitioning=true)").fetchone()
    assert row == (n, DIM, "v1")
    import pyarrow.dataset as ds

    assert ds.dataset(published / "embeddings", format="parquet", partitioning="hive").count_rows() == n
