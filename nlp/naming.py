"""Finding names in radsim's spelling (`pleural_effusion`) and the CheXpert labeler's (`Pleural Effusion`).

The CheXpert labeler (Irvin et al., 2019) writes one column per observation, named as in its
`CATEGORIES`, with 1 / 0 / -1 / blank. radsim's vocabulary holds the same 14 observations in
snake_case, plus findings of its own (emphysema, fibrosis, hiatus_hernia, other_abnormality) and a
site's, which take Title Case in the CheXpert layout. Reading a table, either spelling is accepted,
case-insensitively, with spaces, hyphens or underscores.
"""
from __future__ import annotations

import re

# the CheXpert labeler's column order (its constants.CATEGORIES), in radsim's names
CHEXPERT = {
    "no_finding": "No Finding", "enlarged_cardiomediastinum": "Enlarged Cardiomediastinum",
    "cardiomegaly": "Cardiomegaly", "lung_lesion": "Lung Lesion", "lung_opacity": "Lung Opacity", "edema": "Edema",
    "consolidation": "Consolidation", "pneumonia": "Pneumonia", "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax", "pleural_effusion": "Pleural Effusion", "pleural_other": "Pleural Other",
    "fracture": "Fracture", "support_devices": "Support Devices",
}
# other spellings met in CheXpert-style tables (CheXpert's own early names, MIMIC-CXR's, UK spelling)
ALIASES = {"airspace_opacity": "lung_opacity", "oedema": "edema", "effusion": "pleural_effusion",
           "support_device": "support_devices", "hiatal_hernia": "hiatus_hernia", "no_findings": "no_finding"}
_SEPARATORS = re.compile(r"[\s\-_/]+")


def display_name(finding: str) -> str:
    """The CheXpert column name of a radsim finding ("Pleural Effusion"), Title Case for the others."""
    return CHEXPERT.get(finding) or " ".join(w.capitalize() for w in finding.split("_"))


def chexpert_order(names: list[str]) -> list[str]:
    """A vocabulary's findings in the CheXpert labeler's column order, then the others in vocabulary order."""
    known = [f for f in CHEXPERT if f in names]
    return known + [f for f in names if f not in CHEXPERT]


def _key(name: str) -> str:
    return _SEPARATORS.sub("_", str(name).strip().lower()).strip("_")


def match_findings(columns: list[str], findings: list[str]) -> dict[str, str]:
    """{column: finding} for the columns that name a finding, in radsim's or CheXpert's spelling."""
    lookup = {_key(f): f for f in findings}
    lookup.update({_key(display_name(f)): f for f in findings})
    lookup.update({alias: f for alias, f in ALIASES.items() if f in findings})
    out: dict[str, str] = {}
    taken: set[str] = set()
    for col in columns:
        finding = lookup.get(_key(col))
        if finding is not None and finding not in taken:
            out[col] = finding
            taken.add(finding)
    return out
