"""The vocabulary is data: one file, extendable by a site without code changes."""
from __future__ import annotations

import pytest

from radsim.data_contracts import NO_FINDING, UsageError, default_vocabulary, load_vocabulary

EXPECTED = [
    "no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion", "edema",
    "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion", "pleural_other",
    "fracture", "support_devices", "emphysema", "fibrosis", "hiatus_hernia",
]


def test_default_vocabulary_is_chexpert_plus_three():
    vocab = default_vocabulary()
    assert list(vocab.names) == EXPECTED
    assert NO_FINDING not in vocab.observed and len(vocab.observed) == 16
    assert "oedema" in vocab.findings[vocab.index("edema")].synonyms


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


@pytest.mark.parametrize("text", ["findings: 3\n", "findings:\n  - synonyms: [x]\n", "findings:\n  - name: Bad Name\n", ": :\n  - ["])
def test_bad_vocabulary_files_are_usage_errors(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError):
        load_vocabulary(path)


def test_missing_vocabulary_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_vocabulary(tmp_path / "nope.yaml")
