"""The sentences synthetic reports are written from: one status for one finding per template.

Each template is a callable (attributes, rng) -> sentence that asserts one status (present,
stable, hedged, resolved) of one finding and names no other finding (radsim.synthetic.reports
composes them and records what the text asserts).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from radsim.data_contracts import SUPPORT_DEVICES

Rng = np.random.Generator
Attrs = Mapping[str, Any]

# Words a typo may hit: none is part of a vocabulary phrase or a negation/uncertainty cue.
TYPOS: dict[str, str] = {
    "There": "Thre", "satisfactory": "satisfactroy", "position": "positon", "radiograph": "radiogrpah",
    "film": "flim", "inspiration": "inspiraton", "trachea": "trachae", "patient": "pateint",
    "rotated": "roated", "appearances": "appearences", "Appearances": "Appearences", "keeping": "keepng",
    "zone": "zoen", "above": "abvoe", "carina": "carnia", "noted": "notd", "with": "wiht",
}


def _pick(rng: Rng, items):
    return items[int(rng.integers(len(items)))]


def _side(a: Attrs) -> str:
    return str(a.get("side", "right"))


def _zone_side(a: Attrs) -> str:
    return _side(a) if _side(a) != "bilateral" else "both"


_ORD = ("4th", "5th", "6th", "7th", "8th")

# finding -> status -> list of templates: callables (attrs, rng) -> sentence
T = Callable[[Attrs, Rng], str]
POSITIVE: dict[str, list[T]] = {
    "enlarged_cardiomediastinum": [
        lambda a, r: "Widened mediastinum.",
        lambda a, r: "There is mediastinal widening.",
        lambda a, r: "Enlarged cardiomediastinal silhouette.",
        lambda a, r: "Widened superior mediastinum.",
        lambda a, r: "Mediastinal enlargement is noted.",
    ],
    "cardiomegaly": [
        lambda a, r: "The heart is enlarged.",
        lambda a, r: f"There is {a.get('severity', 'moderate')} cardiomegaly.",
        lambda a, r: "Cardiomegaly.",
        lambda a, r: "Heart size is enlarged.",
        lambda a, r: "Enlarged cardiac silhouette.",
        lambda a, r: "Cardiac enlargement is noted.",
    ],
    "lung_opacity": [
        lambda a, r: f"There is hazy opacification of the {_side(a)} lung.",
        lambda a, r: f"Increased opacity in the {_side(a)} hemithorax.",
        lambda a, r: f"Diffuse {_side(a)}-sided airspace shadowing.",
        lambda a, r: f"Ill-defined shadowing throughout the {_side(a)} lung.",
    ],
    "lung_lesion": [
        lambda a, r: (
            f"There is a {int(r.integers(8, 25))} mm nodule in the {_side(a)} mid zone."
            if a.get("count", 1) == 1
            else f"{('Two', 'Three')[min(a.get('count', 2), 3) - 2]} pulmonary nodules in the {_side(a)} lung."
        ),
        lambda a, r: (
            f"A {int(r.integers(3, 6))} cm mass is seen in the {_side(a)} mid zone."
            if a.get("kind") == "mass"
            else f"Rounded nodular opacity projected over the {_side(a)} mid zone."
        ),
        lambda a, r: f"{'Multiple nodules' if a.get('count', 1) > 1 else 'A nodule'} in the {_side(a)} lung.",
    ],
    "edema": [
        lambda a, r: f"There is {a.get('severity', 'moderate')} pulmonary oedema.",
        lambda a, r: "Features of pulmonary edema.",
        lambda a, r: "Upper lobe diversion and interstitial oedema.",
        lambda a, r: "Bilateral perihilar airspace change in keeping with pulmonary edema.",
        lambda a, r: "Interstitial pulmonary oedema with Kerley B lines.",
        lambda a, r: "Appearances are in keeping with CHF.",
    ],
    "consolidation": [
        lambda a, r: f"There is consolidation in the {_side(a)} lower zone.",
        lambda a, r: f"Dense {_side(a)} lower lobe consolidation with air bronchograms.",
        lambda a, r: f"{_side(a).capitalize()} basal consolidation.",
        lambda a, r: f"Consolidative change at the {_side(a)} base.",
    ],
    "pneumonia": [
        lambda a, r: f"Appearances are in keeping with {_side(a)} upper zone pneumonia.",
        lambda a, r: f"Patchy {_side(a)} upper zone changes consistent with pneumonia.",
        lambda a, r: f"{_side(a).capitalize()} upper lobe pneumonia.",
        lambda a, r: f"Pneumonic change in the {_side(a)} upper zone.",
    ],
    "atelectasis": [
        lambda a, r: f"Linear atelectasis at the {_side(a)} base.",
        lambda a, r: f"Plate atelectasis in the {_side(a)} mid zone.",
        lambda a, r: f"There is subsegmental atelectasis in the {_side(a)} lower zone.",
        lambda a, r: f"{_side(a).capitalize()} lower lobe collapse.",
    ],
    "pneumothorax": [
        lambda a, r: f"There is a {a.get('size', 'small')} {_side(a)} pneumothorax.",
        lambda a, r: f"{a.get('size', 'small').capitalize()} {_side(a)} apical PTX.",
        lambda a, r: f"A {_side(a)} pneumothorax is present with a visible pleural edge.",
    ],
    "pleural_effusion": [
        lambda a, r: (
            f"There is a {a.get('size', 'small')} {_side(a)} pleural effusion."
            if _side(a) != "bilateral"
            else f"There are {a.get('size', 'small')} bilateral pleural effusions."
        ),
        lambda a, r: (
            f"{a.get('size', 'small').capitalize()} {_side(a)} effusion."
            if _side(a) != "bilateral"
            else f"{a.get('size', 'small').capitalize()} bilateral effusions."
        ),
        lambda a, r: (
            f"Blunting of the costophrenic angle on the {_zone_side(a)} side{'s' if _side(a) == 'bilateral' else ''} "
            "with a layer of pleural fluid."
        ),
    ],
    "pleural_other": [
        lambda a, r: f"{_side(a).capitalize()} pleural thickening.",
        lambda a, r: f"Calcified pleural plaques on the {_side(a)}.",
        lambda a, r: f"There is {_side(a)} lateral pleural thickening.",
    ],
    "fracture": [
        lambda a, r: f"There is a fracture of the {_side(a)} {_pick(r, _ORD)} rib.",
        lambda a, r: f"{_side(a).capitalize()} {_pick(r, _ORD)} rib fracture.",
        lambda a, r: f"Healing fracture of the {_side(a)} lateral {_pick(r, _ORD)} rib.",
    ],
    "emphysema": [
        lambda a, r: "Changes in keeping with emphysema.",
        lambda a, r: "Emphysematous lungs.",
        lambda a, r: "Changes of emphysema.",
        lambda a, r: "Centrilobular emphysema in both upper zones.",
    ],
    "fibrosis": [
        lambda a, r: "Bibasal changes in keeping with fibrosis.",
        lambda a, r: "Fibrotic changes at both bases.",
        lambda a, r: "Established pulmonary fibrosis at both bases.",
        lambda a, r: "Bibasal honeycombing.",
    ],
    "hiatus_hernia": [
        lambda a, r: "Large hiatus hernia.",
        lambda a, r: "There is a hiatus hernia.",
        lambda a, r: "Retrocardiac air-fluid level in keeping with a hiatal hernia.",
        lambda a, r: "Incidental hiatus hernia.",
    ],
}

DEVICE_SENTENCES: dict[str, list[str]] = {
    "ett": ["ETT tip 4 cm above the carina.", "Endotracheal tube in satisfactory position."],
    "ngt": ["NGT tip below the diaphragm.", "Nasogastric tube tip in the stomach."],
    "central_line": [
        "Right internal jugular central line with tip in the SVC.",
        "Right-sided central venous catheter, tip in the lower SVC.",
    ],
    "pacemaker": [
        "Left-sided pacemaker in situ with leads in satisfactory position.",
        "Dual-chamber pacemaker in situ.",
    ],
    "chest_drain": ["{Side} chest drain in situ.", "{Side}-sided chest drain in satisfactory position."],
}
GENERIC_DEVICES = ["Lines and tubes in satisfactory position.", "Support devices as before."]


def _devices(a: Attrs, r: Rng) -> str:
    devs = list(a.get("devices", ("ett",)))
    if r.random() < 0.15:
        return _pick(r, GENERIC_DEVICES)
    out = []
    for d in devs:
        s = _pick(r, DEVICE_SENTENCES[d])
        out.append(s.replace("{Side}", _side(a).capitalize()))
    return " ".join(out)


POSITIVE[SUPPORT_DEVICES] = [_devices]

STABLE: dict[str, list[T]] = {
    "enlarged_cardiomediastinum": [lambda a, r: "Stable mediastinal widening."],
    "cardiomegaly": [lambda a, r: "Stable cardiomegaly.", lambda a, r: "Cardiomegaly is unchanged."],
    "lung_opacity": [lambda a, r: f"Persistent {_side(a)} lung opacification."],
    "lung_lesion": [
        lambda a, r: f"Stable {_side(a)} lung nodule.",
        lambda a, r: f"The {_side(a)} lung lesion is unchanged in size.",
    ],
    "edema": [lambda a, r: "Persistent pulmonary oedema."],
    "consolidation": [lambda a, r: f"Stable {_side(a)} basal consolidation."],
    "pneumonia": [lambda a, r: f"Persistent {_side(a)} upper zone pneumonia."],
    "atelectasis": [lambda a, r: f"Stable {_side(a)} basal atelectasis."],
    "pneumothorax": [lambda a, r: f"Stable {a.get('size', 'small')} {_side(a)} pneumothorax."],
    "pleural_effusion": [
        lambda a, r: f"Stable {_side(a)} pleural effusion{'s' if _side(a) == 'bilateral' else ''}.",
        lambda a, r: f"Unchanged {_side(a)} effusion{'s' if _side(a) == 'bilateral' else ''}.",
    ],
    "pleural_other": [lambda a, r: f"Stable {_side(a)} pleural thickening."],
    "fracture": [lambda a, r: f"Unchanged {_side(a)} rib fracture."],
    "emphysema": [lambda a, r: "Stable emphysematous changes."],
    "fibrosis": [lambda a, r: "Stable bibasal fibrosis."],
    "hiatus_hernia": [lambda a, r: "Stable hiatus hernia."],
}

HEDGE: dict[str, list[T]] = {
    "enlarged_cardiomediastinum": [
        lambda a, r: "Possible mediastinal widening.",
        lambda a, r: "Questionable mediastinal widening.",
    ],
    "cardiomegaly": [
        lambda a, r: "Possible mild cardiomegaly.",
        lambda a, r: "On this AP film cardiomegaly cannot be excluded.",
    ],
    "lung_opacity": [
        lambda a, r: f"Possible subtle opacity in the {_side(a)} lung.",
        lambda a, r: f"Questionable haziness over the {_side(a)} lung.",
    ],
    "lung_lesion": [
        lambda a, r: f"Possible small nodule projected over the {_side(a)} mid zone.",
        lambda a, r: f"A nodule in the {_side(a)} mid zone cannot be excluded.",
    ],
    "edema": [
        lambda a, r: "Possible mild interstitial oedema.",
        lambda a, r: "Mild interstitial oedema cannot be excluded.",
    ],
    "consolidation": [
        lambda a, r: f"Possible early consolidation at the {_side(a)} base.",
        lambda a, r: f"Cannot exclude consolidation at the {_side(a)} base.",
    ],
    "pneumonia": [
        lambda a, r: f"Possible {_side(a)} upper zone pneumonia.",
        lambda a, r: "Appearances may represent pneumonia.",
        lambda a, r: "Pneumonia cannot be excluded.",
    ],
    "atelectasis": [lambda a, r: f"Possible subsegmental atelectasis at the {_side(a)} base."],
    "pneumothorax": [
        lambda a, r: f"Cannot exclude a small {_side(a)} apical pneumothorax.",
        lambda a, r: f"Possible small {_side(a)} pneumothorax.",
    ],
    "pleural_effusion": [
        lambda a, r: f"Possible small {_side(a) if _side(a) != 'bilateral' else 'right'} pleural effusion.",
        lambda a, r: "A small effusion cannot be excluded.",
    ],
    "pleural_other": [lambda a, r: f"Possible {_side(a)} pleural thickening."],
    "fracture": [
        lambda a, r: f"Possible {_side(a)} rib fracture.",
        lambda a, r: f"Questionable fracture of the {_side(a)} {_pick(r, _ORD)} rib.",
    ],
    "emphysema": [lambda a, r: "Possible emphysema."],
    "fibrosis": [lambda a, r: "Possible early fibrotic change at the bases."],
    "hiatus_hernia": [lambda a, r: "Possible small hiatus hernia."],
}

RESOLVED: dict[str, list[T]] = {
    "lung_opacity": [lambda a, r: f"The previously seen {_side(a)} lung opacity has resolved."],
    "lung_lesion": [
        lambda a, r: "The previously seen nodule is no longer visible.",
        lambda a, r: "The previously noted mass is no longer seen.",
    ],
    "edema": [
        lambda a, r: "Interval resolution of pulmonary oedema.",
        lambda a, r: "The pulmonary oedema has resolved.",
    ],
    "consolidation": [
        lambda a, r: f"The {_side(a)} lower zone consolidation has resolved.",
        lambda a, r: "Interval resolution of the previously seen consolidation.",
    ],
    "pneumonia": [lambda a, r: "The previously seen pneumonia has resolved."],
    "atelectasis": [lambda a, r: f"The {_side(a)} basal atelectasis has resolved."],
    "pneumothorax": [
        lambda a, r: f"The {_side(a)} pneumothorax has resolved.",
        lambda a, r: "Pneumothorax has resolved.",
    ],
    "pleural_effusion": [
        lambda a, r: f"The {_side(a) if _side(a) != 'bilateral' else 'right'} pleural effusion has resolved.",
        lambda a, r: "The previously seen effusion is no longer visible.",
    ],
}

# Nouns used in combined negations ("No X, Y or Z."), and single-finding negation sentences.
NEG_NOUNS: dict[str, list[str]] = {
    "pneumothorax": ["pneumothorax", "pneumothorax", "PTX"],
    "pleural_effusion": ["pleural effusion", "effusion"],
    "consolidation": ["consolidation", "focal consolidation"],
    "cardiomegaly": ["cardiomegaly"],
    "edema": ["pulmonary oedema", "pulmonary edema", "oedema"],
    "enlarged_cardiomediastinum": ["mediastinal widening"],
    "lung_lesion": ["pulmonary nodule", "focal nodule", "suspicious nodule or mass"],
    "fracture": ["rib fracture", "displaced rib fracture"],
    "pneumonia": ["pneumonia"],
    "atelectasis": ["collapse", "atelectasis"],
    "emphysema": ["emphysema"],
    "fibrosis": ["fibrosis"],
    "hiatus_hernia": ["hiatus hernia"],
    "pleural_other": ["pleural thickening"],
    "lung_opacity": ["airspace shadowing", "focal opacity"],
}
NEG_SINGLE: dict[str, list[str]] = {"cardiomegaly": ["Heart size is normal.", "Normal heart size.", "No cardiomegaly."]}

INDICATIONS_NEUTRAL = [
    "Shortness of breath.",
    "Cough and fever.",
    "Chest pain.",
    "Pre-operative assessment.",
    "Follow up.",
    "Increasing breathlessness.",
    "Haemoptysis.",
    "Routine review.",
    "Post line insertion.",
]
INDICATIONS_MENTION = ["?pneumothorax", "?PTX", "SOB, ?pneumonia", "?infection", "Known emphysema, increasing SOB.",
                       "?effusion", "Fall, ?rib fracture.", "?CHF", "Follow up of known lung nodule.",
                       "Line check, ?position of NGT.", "?consolidation", "Known pulmonary fibrosis."]
FILLERS = ["The trachea is central.", "Satisfactory inspiration.", "The patient is slightly rotated.",
           "Comparison is made with the previous radiograph."]
NORMAL_IMPRESSIONS = ["No acute cardiopulmonary abnormality.", "Normal chest radiograph.", "No acute abnormality."]
