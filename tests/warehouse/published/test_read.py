"""Every analyst tool reads the published table with no options, and finds the current version (issue 15)."""
from __future__ import annotations

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import load_contract
from radsim.warehouse import published as P

from .conftest import D

# An older model whose name sorts last (max() would pick it) and a newer one whose name sorts first.
OLD, NEW = "small-ml2-20260101T000000-aaaa", "resnet50-ml2-20270101T000000-bbbb"
N_OLD, N_NEW = 5, 7


@pytest.fixture
def published(tmp_path, publish):
    out = tmp_path / "published"
    publish(out, N_OLD, 1, OLD, make_current=True, reason="first model")
    publish(out, N_NEW, 2, NEW, make_current=True, reason="promoted: beats the current model")
    return out


def _contract_schema() -> pa.Schema:
    return load_contract("embeddings", D=D).schema()


def _check_arrow(table: pa.Table, rows: int) -> None:
    assert table.num_rows == rows
    assert table.schema.remove_metadata().equals(_contract_schema().remove_metadata()), table.schema


def test_pandas_and_pyarrow_read_the_folder_plainly(published):
    emb = published / "embeddings"
    df = pd.read_parquet(emb)
    assert len(df) == N_OLD + N_NEW
    assert list(df.columns) == _contract_schema().names
    assert pd.api.types.is_string_dtype(df["model_version"]) and not isinstance(df["model_version"].dtype,
                                                                              pd.CategoricalDtype)
    assert str(df["image_index"].dtype) == "int32" and str(df["no_finding"].dtype) == "int8"
    assert sorted(set(df["model_version"])) == sorted({OLD, NEW})
    assert len(df["embedding"].iloc[0]) == D
    _check_arrow(pq.read_table(emb), N_OLD + N_NEW)
    _check_arrow(ds.dataset(emb).to_table(), N_OLD + N_NEW)


def test_polars_and_duckdb_read_the_glob_with_hive_partitioning(published):
    glob = str(published / "embeddings" / "*" / "*.parquet")
    for frame in (pl.read_parquet(glob), pl.read_parquet(glob, hive_partitioning=True),
                  pl.read_parquet(published / "embeddings", hive_partitioning=True)):
        assert frame.height == N_OLD + N_NEW and frame.columns == _contract_schema().names
        assert frame.schema["model_version"] == pl.String and frame.schema["embedding"] == pl.Array(pl.Float32, D)
    rows = duckdb.sql(f"SELECT model_version, typeof(model_version), count(*) FROM read_parquet('{glob}', "
                      "hive_partitioning = true) GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [(NEW, "VARCHAR", N_NEW), (OLD, "VARCHAR", N_OLD)]


def test_the_readme_current_only_reads_return_the_current_version(published):
    """The shortest 'current version only' read of each tool, as the README gives them."""
    pub = str(published)
    v = pd.read_parquet(f"{pub}/versions.parquet").query("current")["model_version"].item()
    assert v == NEW
    df = pd.read_parquet(f"{pub}/embeddings/{v}")
    arrow = pq.read_table(f"{pub}/embeddings/{v}")
    v_pl = pl.read_parquet(f"{pub}/versions.parquet").filter("current")["model_version"].item()
    frame = pl.read_parquet(f"{pub}/embeddings/{v_pl}/*.parquet")
    con = duckdb.connect()
    con.execute(f"SET VARIABLE current_version = (SELECT model_version FROM '{pub}/versions.parquet' WHERE current)")
    duck = con.sql(f"SELECT * FROM read_parquet('{pub}/embeddings/' || getvariable('current_version') || "
                   "'/*.parquet')").to_arrow_table()
    duck_filter = con.sql(f"SELECT * FROM read_parquet('{pub}/embeddings/*/*.parquet') WHERE model_version = "
                          f"(SELECT model_version FROM '{pub}/versions.parquet' WHERE current)").to_arrow_table()
    for got in (df["model_version"].tolist(), arrow.column("model_version").to_pylist(),
                frame["model_version"].to_list(), duck.column("model_version").to_pylist(),
                duck_filter.column("model_version").to_pylist()):
        assert got == [NEW] * N_NEW
    _check_arrow(arrow, N_NEW)


def test_the_current_version_is_the_promoted_one_not_the_name_that_sorts_last(published, publish):
    assert max([OLD, NEW]) == OLD  # what the old README's max() picked
    versions = P.read_versions(published)
    assert versions.column("model_version").to_pylist() == [OLD, NEW]  # publication order, not name order
    assert versions.column("publish_order").to_pylist() == [1, 2]
    assert versions.column("current").to_pylist() == [False, True]
    assert P.current_entry(published)["reason"] == "promoted: beats the current model"
    assert P.resolve_version(published, None) == NEW
    # a version published beside the current one, without a promotion, does not take over
    publish(published, 3, 3, "candidate-x")
    assert P.current_version(published) == NEW
    # republishing the old version (a nightly increment) keeps its place in the order
    publish(published, N_OLD + 1, 4, OLD)
    assert P.read_versions(published).column("model_version").to_pylist() == [OLD, NEW, "candidate-x"]
    # a promotion back to the old model is a new current version, whatever the names
    P.set_current(published, OLD, reason="rolled back")
    assert P.current_version(published) == OLD and P.open_version(published).model_version == OLD


def test_set_current_refuses_a_version_that_is_not_published(published):
    from radsim.data_contracts import UsageError

    with pytest.raises(UsageError, match="not published"):
        P.set_current(published, "never-published")
    assert P.current_version(published) == NEW


def test_folders_of_an_earlier_release_are_read_and_renamed(tmp_path, publish):
    out = tmp_path / "published"
    publish(out, 4, 1, "v1", make_current=True)
    (out / "embeddings" / "v1").rename(out / "embeddings" / "model_version=v1")  # the old layout
    assert P.open_version(out, "v1").record["rows"] == 4  # still readable as it is
    publish(out, 6, 2, "v2")  # the next publication renames it
    assert sorted(p.name for p in (out / "embeddings").iterdir()) == ["v1", "v2"]
    assert P.open_version(out, "v1", verify="full").record["path"] == "embeddings/v1"
    assert pd.read_parquet(out / "embeddings").shape[0] == 10
