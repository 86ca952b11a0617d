"""Contracts: a valid table passes, and each rule fails with table, column, rule and keys."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from radsim.data_contracts import (
    TABLES,
    ContractViolation,
    check_vocabulary,
    load_contract,
    load_vocabulary,
    rows_to_table,
)


def _exams(**overrides):
    data = {
        "exam_id": ["E1", "E2", "E3"],
        "patient_id": ["P1", "P1", "P2"],
        "image_uri": ["a.dcm", "b.dcm", "c.dcm"],
        "image_index": [0, 0, 0],
    }
    data.update(overrides)
    return pa.table(data)


def _labels_row(exam_id: str, **values):
    vocab = load_vocabulary()
    row = {name: None for name in vocab.names}
    row.update({"exam_id": exam_id, "no_finding": 1, "positive_findings": ["no_finding"]})
    row.update(values)
    return row


@pytest.mark.parametrize("name", TABLES)
def test_every_contract_builds_a_schema(name):
    contract = load_contract(name, D=8)
    schema = contract.schema()
    assert schema.names == list(contract.column_names)
    assert schema.metadata[b"radsim.contract"] == contract.name.encode()
    assert contract.privacy_class in ("restricted", "pseudonymised")
    assert contract.primary_key, f"{name} has no primary key"
    assert contract.empty().num_rows == 0


def test_valid_exams_pass_and_optional_columns_are_added():
    out = load_contract("exams").validate(_exams())
    assert out.num_rows == 3
    assert out.column("report_text").null_count == 3
    assert out.schema.field("image_index").type == pa.int32()


def test_missing_image_index_defaults_to_zero():
    table = _exams()
    table = table.drop_columns(["image_index"])
    out = load_contract("exams").validate(table)
    assert out.column("image_index").to_pylist() == [0, 0, 0]


def test_missing_required_column_names_table_column_and_rule():
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(_exams().drop_columns(["patient_id"]))
    msg = str(err.value)
    assert "table 'exams'" in msg and "column 'patient_id'" in msg and "required_column" in msg
    assert err.value.exit_code == 2


def test_null_in_required_column_lists_offending_keys():
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(_exams(patient_id=["P1", None, None]))
    assert err.value.rule == "not_null"
    assert err.value.keys == ["E2/0", "E3/0"]


def test_wrong_type_is_reported():
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(_exams(image_index=["zero", "one", "two"]))
    assert err.value.rule == "type" and err.value.column == "image_index"


def test_unknown_column_is_rejected():
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(_exams(patient_name=["A", "B", "C"]))
    assert err.value.rule == "unknown_column" and err.value.column == "patient_name"


def test_duplicate_primary_key_lists_at_most_five_keys():
    ids = ["E1"] * 2 + [f"D{i}" for i in range(7) for _ in range(2)]
    n = len(ids)
    table = pa.table({"exam_id": ids, "patient_id": ["P"] * n, "image_uri": ["x"] * n, "image_index": [0] * n})
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(table)
    assert err.value.rule == "unique_key"
    assert len(err.value.keys) == 5
    assert "8 duplicated key(s)" in str(err.value)


def test_negative_image_index_breaks_minimum():
    with pytest.raises(ContractViolation) as err:
        load_contract("exams").validate(_exams(image_index=[0, -1, 0]))
    assert err.value.rule == "minimum" and err.value.keys == ["E2/-1"]


def test_labels_contract_is_parameterised_by_vocabulary():
    vocab = load_vocabulary()
    contract = load_contract("labels", vocab)
    for name in vocab.names:
        assert name in contract.column_names
    assert contract.column("no_finding").required
    assert not contract.column("pneumothorax").required
    meta = contract.schema().metadata
    assert meta[b"radsim.vocabulary.name"] == vocab.name.encode()
    assert meta[b"radsim.vocabulary.version"] == vocab.version.encode()


def test_label_value_outside_allowed_set_fails():
    contract = load_contract("labels")
    table = rows_to_table(contract, [_labels_row("E1"), _labels_row("E2", pneumothorax=2)])
    with pytest.raises(ContractViolation) as err:
        contract.validate(table)
    assert err.value.rule == "allowed_values" and err.value.column == "pneumothorax" and err.value.keys == ["E2"]


def test_no_finding_is_never_null():
    contract = load_contract("labels")
    table = rows_to_table(contract, [_labels_row("E1", no_finding=None)])
    with pytest.raises(ContractViolation) as err:
        contract.validate(table)
    assert err.value.column == "no_finding" and err.value.rule == "not_null"


def test_labels_from_another_vocabulary_are_refused(tmp_path):
    extra = tmp_path / "site.yaml"
    extra.write_text("name: site\nversion: '2'\nfindings:\n  - name: pneumoperitoneum\n    synonyms: [free air]\n")
    site = load_vocabulary(extra)
    table = load_contract("labels", site).empty()
    with pytest.raises(ContractViolation) as err:
        check_vocabulary(table, load_vocabulary(), "labels")
    assert err.value.rule == "vocabulary"
    check_vocabulary(table, site, "labels")  # same vocabulary: accepted


def test_embedding_dimension_is_fixed():
    contract = load_contract("embeddings", D=4)
    good = {
        "exam_key": ["k1"], "image_index": [0], "model_version": ["v1"], "split": ["test"],
        "view_position": ["PA"], "positive_findings": [["no_finding"]], "no_finding": [1], "key_id": ["demo"],
    }
    ok = contract.validate(pa.table({**good, "embedding": pa.array([[0.1, 0.2, 0.3, 0.4]], pa.list_(pa.float32(), 4))}))
    assert ok.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    with pytest.raises(ContractViolation) as err:
        contract.validate(pa.table({**good, "embedding": pa.array([[0.1, 0.2, 0.3]], pa.list_(pa.float32(), 3))}))
    assert err.value.column == "embedding" and err.value.rule == "type"


def test_quarantine_reason_code_must_be_known():
    contract = load_contract("quarantine")
    row = {"stage": "label", "record_id": "E1", "reason_code": "bad_vibes", "message": "m",
           "source_uri": None, "seen_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    with pytest.raises(ContractViolation) as err:
        contract.validate(rows_to_table(contract, [row]))
    assert err.value.rule == "allowed_values" and "bad_vibes" in str(err.value)
