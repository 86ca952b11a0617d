"""The documented Python API: label texts and DataFrames in memory (README "Label extraction")."""
from __future__ import annotations

import pytest

from radsim.nlp import build_labeler, label_dataframe, label_texts

TEXTS = ["Small left effusion. No pneumothorax.", "", "Possible right basal pneumonia.", None]


def test_label_texts_keeps_one_result_per_text_and_says_why_one_failed(labeler):
    got = label_texts(TEXTS, labeler=labeler)
    assert len(got) == 4
    assert got[0].values["pleural_effusion"] == 1 and got[0].values["pneumothorax"] == 0 and got[0].problem is None
    assert got[1].problem == "empty_report" and set(got[1].values.values()) == {None}
    assert got[2].values["pneumonia"] == -1 and got[2].evidence_for("pneumonia").certainty == "possible"
    assert got[3].problem == "empty_report"


def test_readme_example_runs(labeler):
    labels = labeler.label("No pneumothorax. Small left effusion.")
    assert labels.values["pleural_effusion"] == 1 and labels.positive_findings == ["pleural_effusion"]
    ev = labels.evidence_for("pneumothorax")
    assert (ev.status, ev.trigger, ev.certainty) == ("negated", "No", "absent")


def test_label_dataframe_pandas_keeps_the_index_and_offers_chexpert_names(labeler):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"accession": ["a", "b", "c", "d"], "report_text": TEXTS}, index=[7, 8, 9, 10])
    out = label_dataframe(df, id_column="accession", labeler=labeler)
    assert list(out.index) == [7, 8, 9, 10] and list(out.columns[:2]) == ["accession", "no_finding"]
    assert out.loc[7, "pleural_effusion"] == 1 and pd.isna(out.loc[8, "pleural_effusion"])
    assert str(out["pleural_effusion"].dtype) == "Int8" and out.loc[8, "label_problem"] == "empty_report"
    chex = label_dataframe(df, naming="chexpert", evidence=True, labeler=labeler)
    assert "Pleural Effusion" in chex.columns and chex.loc[9, "Pneumonia"] == -1
    assert pd.isna(chex.loc[7, "No Finding"]) and isinstance(chex.loc[7, "evidence"], list)
    with pytest.raises(KeyError, match="no column 'text'"):
        label_dataframe(df, text_column="text", labeler=labeler)


def test_label_dataframe_polars(labeler):
    pl = pytest.importorskip("polars")
    out = label_dataframe(pl.DataFrame({"report_text": TEXTS[:3]}), labeler=labeler)
    assert out.height == 3 and out["pleural_effusion"].to_list() == [1, None, None]
    assert out.schema["pneumonia"] == pl.Int8


def test_certainty_threshold_is_a_labeler_setting():
    strict = build_labeler(certainty_threshold="definite")
    lenient = build_labeler(certainty_threshold="probable")
    text = "Right lower zone opacity consistent with pneumonia. Probable small left effusion."
    assert strict.label(text).values["pneumonia"] == -1 and strict.label(text).values["pleural_effusion"] == -1
    assert lenient.label(text).values["pneumonia"] == 1 and lenient.label(text).values["pleural_effusion"] == 1
    with pytest.raises(ValueError, match="certainty_threshold must be one of"):
        build_labeler(certainty_threshold="sure")
