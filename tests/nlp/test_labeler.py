"""Labeler behaviour beyond the gold set: evidence, rules, vocabulary extension, robustness."""
from __future__ import annotations

import copy

import pytest

from radsim.data_contracts import load_contract, rows_to_table
from radsim.data_contracts.vocabulary import load_vocabulary
from radsim.nlp.labeler import BadReport, build_labeler


def test_every_non_null_value_has_evidence(labeler):
    got = labeler.label("INDICATION: cough\nFINDINGS: Possible left basal consolidation. No pneumothorax. "
                        "The right effusion has resolved. ETT in satisfactory position.")
    assert got.values["consolidation"] == -1 and got.values["pneumothorax"] == 0
    assert got.values["pleural_effusion"] == 0 and got.values["support_devices"] == 1
    assert got.values["no_finding"] == 0
    named = {e.finding: e for e in got.evidence}
    assert set(named) == {k for k, v in got.values.items() if v is not None}
    assert named["consolidation"].status == "uncertain" and named["consolidation"].trigger == "Possible"
    assert named["pleural_effusion"].status == "resolved" and "has resolved" in named["pleural_effusion"].trigger
    assert named["pneumothorax"].status == "negated" and named["pneumothorax"].sentence == "No pneumothorax."
    assert all(e.rule for e in got.evidence)


def test_aggregation_positive_beats_uncertain_beats_negative(labeler):
    assert labeler.label("No effusion. Possible small effusion. Small left effusion.").values["pleural_effusion"] == 1
    assert labeler.label("No effusion. Possible small effusion.").values["pleural_effusion"] == -1


def test_no_finding_ignores_support_devices_and_is_never_null(labeler):
    assert labeler.label("Lines and tubes in satisfactory position.").values["no_finding"] == 1
    assert labeler.label("Heart size is normal.").values["no_finding"] == 1
    degenerative = labeler.label("Degenerative changes in the spine.")  # abnormal, outside the named findings
    assert degenerative.values["no_finding"] == 0 and degenerative.values["other_abnormality"] == 1
    assert degenerative.evidence_for("no_finding").rule == "no_finding: other_abnormality is 1"
    assert labeler.label("Possible pneumonia.").values["no_finding"] == 0
    got = labeler.label("Small pneumothorax.")
    assert got.positive_findings == ["pneumothorax"]
    assert labeler.label("No pneumothorax.").positive_findings == ["no_finding"]


def test_row_matches_the_labels_contract(labeler):
    contract = load_contract("labels", labeler.vocabulary)
    row = labeler.label("Cardiomegaly. No effusion.").as_row("E1")
    table = contract.validate(rows_to_table(contract, [row]))
    assert table.num_rows == 1 and row["labeler_version"]


def test_bad_reports_raise_with_reason(labeler):
    with pytest.raises(BadReport) as info:
        labeler.label("   ")
    assert info.value.reason == "empty_report"
    with pytest.raises(BadReport) as info:
        labeler.label("\x00" * 100)
    assert info.value.reason == "undecodable_text"


def test_long_report_is_labelled_and_an_overlong_one_refused(labeler):
    text = ("FINDINGS: Small left pleural effusion. No pneumothorax. " * 9000)[:450_000]
    got = labeler.label(text)
    assert got.values["pleural_effusion"] == 1 and got.values["pneumothorax"] == 0
    with pytest.raises(BadReport) as info:  # beyond spaCy's own limit too: refused with a reason, not a crash
        labeler.label("No pneumothorax. " * 80_000)
    assert info.value.reason == "report_too_long" and "1,360,000 characters" in str(info.value)


def test_shipped_vocabulary_option_moves_phrases_to_its_finding():
    default = build_labeler().label("Hyperinflated lungs.").values
    assert default["emphysema"] is None and default["other_abnormality"] == 1
    opted = build_labeler(load_vocabulary("hyperinflation-as-emphysema")).label("Hyperinflated lungs.").values
    assert opted["emphysema"] == 1 and opted["other_abnormality"] is None


def test_substitution_typos_are_matched_but_real_words_are_not(labeler):
    got = labeler.label("Small right pneumothorex. No pleural efusion.")
    assert got.values["pneumothorax"] == 1 and got.values["pleural_effusion"] == 0
    assert got.evidence_for("pneumothorax").sentence == "Small right pneumothorex."  # quoted as written
    assert labeler.label("Injection site in the left arm.").values["pneumonia"] is None


def test_historical_mentions_are_zero_with_their_own_status(labeler):
    got = labeler.label("History of pneumonia. The lungs are clear.")
    assert got.values["pneumonia"] == 0 and got.values["no_finding"] == 1
    assert got.evidence_for("pneumonia").status == "historical"


def test_html_laden_report_is_labelled(labeler):
    text = (
        "<html><body><table><tr><td><b>FINDINGS</b>:</td><td><span style='x'>Right lower lobe "
        "consolidation.</span><br><i>No</i> pleural effusion.</td></tr></table>"
        + "<div></div>" * 5000
        + "</body></html>"
    )
    got = labeler.label(text)
    assert got.values["consolidation"] == 1 and got.values["pleural_effusion"] == 0


def test_vocabulary_file_extends_findings_and_synonyms(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("name: site\nversion: '2'\nfindings:\n"
                    "  - name: pneumoperitoneum\n    synonyms: [pneumoperitoneum, free subdiaphragmatic gas]\n"
                    "  - name: pneumothorax\n    synonyms: [air in the pleural space]\n")
    lab = build_labeler(load_vocabulary(path))
    got = lab.label("Free subdiaphragmatic gas. No air in the pleural space.")
    assert got.values["pneumoperitoneum"] == 1 and got.values["pneumothorax"] == 0
    assert got.values["no_finding"] == 0


def test_negspacy_defaults_are_not_mutated():
    from negspacy import termsets

    before = copy.deepcopy(termsets.LANGUAGES)
    build_labeler()
    assert termsets.LANGUAGES == before
