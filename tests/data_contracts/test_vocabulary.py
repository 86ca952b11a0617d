"""The vocabulary is data: one file, extendable by a site without code changes."""
from __future__ import annotations

import pytest

from radsim.data_contracts import NO_FINDING, UsageError, default_vocabulary, load_vocabulary

EXPECTED = [
    "no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion", "edema",
    "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion", "pleural_other",
    "fracture", "support_devices", "emphysema", "fibrosis", "hiatus_hernia", "other_abnormality",
]


def test_default_vocabulary_is_chexpert_plus_three_plus_the_catch_all():
    vocab = default_vocabulary()
    assert list(vocab.names) == EXPECTED
    assert NO_FINDING not in vocab.observed and len(vocab.observed) == 17
    assert "oedema" in vocab.findings[vocab.index("edema")].synonyms


def test_every_finding_has_written_inclusion_and_exclusion_criteria():
    for finding in default_vocabulary().findings:
        assert finding.include and finding.exclude and finding.description, finding.name


def test_no_phrase_has_two_default_owners():
    owners: dict[str, set[str]] = {}
    for finding in default_vocabulary().findings:
        for phrase in (*finding.synonyms, *finding.suggestive):
            owners.setdefault(phrase.lower(), set()).add(finding.name)
    assert {p: o for p, o in owners.items() if len(o) > 1} == {}


def test_shipped_options_load_and_an_unknown_one_is_a_usage_error():
    vocab = load_vocabulary("scarring-as-fibrosis,surgery-as-devices")
    fibrosis = vocab.findings[vocab.index("fibrosis")]
    assert "scarring" in fibrosis.synonyms
    assert "scarring" not in vocab.findings[vocab.index("other_abnormality")].synonyms
    assert vocab.name == "radsim-default+scarring-as-fibrosis+surgery-as-devices"
    with pytest.raises(UsageError, match="neither a file nor a shipped option"):
        load_vocabulary("no-such-option")


def test_extension_adds_findings_and_synonyms(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(
        "name: site\nversion: '1'\nfindings:\n"
        "  - name: pneumoperitoneum\n    synonyms: [free subdiaphragmatic gas]\n"
        "  - name: edema\n    synonyms: [alveolar oedema pattern]\n"
    )
    vocab = load_vocabulary(path)
    assert vocab.names[-1] == "pneumoperitoneum"
    assert "alveolar oedema pattern" in vocab.findings[vocab.index("edema")].synonyms
    assert vocab.fingerprint() != default_vocabulary().fingerprint()


def test_replacement_keeps_no_finding(tmp_path):
    path = tmp_path / "own.yaml"
    path.write_text("name: own\nversion: '1'\nfindings:\n  - name: nodule\n    synonyms: [nodule]\n")
    vocab = load_vocabulary(path, replace=True)
    assert vocab.names == ("no_finding", "nodule")


@pytest.mark.parametrize(
    "text", ["findings: 3\n", "findings:\n  - synonyms: [x]\n", "findings:\n  - name: Bad Name\n", ": :\n  - ["]
)
def test_bad_vocabulary_files_are_usage_errors(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError):
        load_vocabulary(path)


def test_missing_vocabulary_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_vocabulary(tmp_path / "nope.yaml")


def test_readme_shows_the_criteria_table_generated_from_the_vocabulary():
    from pathlib import Path

    from radsim.data_contracts.vocabulary import criteria_table

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("<!-- criteria:start -->")[1].split("<!-- criteria:end -->")[0].strip()
    assert shown == criteria_table()
