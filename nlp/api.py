"""The Python API for NLP users: label texts, or a pandas / polars DataFrame column, in memory.

    from radsim.nlp import build_labeler, label_texts, label_dataframe
    labeler = build_labeler()                              # build once (about a second), reuse
    labeler.label("No pneumothorax. Small left effusion.").values["pleural_effusion"]   # 1
    label_texts(["No effusion.", ""], labeler=labeler)     # ReportLabels each; the empty one has .problem
    label_dataframe(df, text_column="report_text", naming="chexpert")   # one column per finding

For files of any size, `label_file` (or `radsim label`) streams with bounded memory and quarantines
what it cannot label; these functions hold their inputs and outputs in memory.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from radsim.data_contracts.vocabulary import NO_FINDING

from .config import PIPE_BATCH
from .input_files import TEXT
from .naming import chexpert_order, display_name

if TYPE_CHECKING:  # pragma: no cover
    from .labeler import Labeler, ReportLabels

NAMINGS = ("radsim", "chexpert")


def _labeler(labeler: Labeler | None, vocabulary: Any, threshold: str | None) -> Labeler:
    if labeler is not None:
        return labeler
    from .certainty import DEFAULT_THRESHOLD
    from .labeler import build_labeler

    return build_labeler(vocabulary, certainty_threshold=threshold or DEFAULT_THRESHOLD)


def label_texts(texts: Iterable[str | bytes | None], *, labeler: Labeler | None = None, vocabulary: Any = None,
                certainty_threshold: str | None = None, batch_size: int = PIPE_BATCH) -> list[ReportLabels]:
    """One ReportLabels per text, in order. A text that cannot be labelled (empty, undecodable, too long)
    gets every value None and its reason in `.problem`; nothing is dropped, so results align with inputs."""
    return _labeler(labeler, vocabulary, certainty_threshold).label_texts(texts, batch_size=batch_size)


def label_dataframe(df: Any, text_column: str = TEXT, *, id_column: str | None = None, naming: str = NAMINGS[0],
                    evidence: bool = False, labeler: Labeler | None = None, vocabulary: Any = None,
                    certainty_threshold: str | None = None) -> Any:
    """Labels for a pandas or polars DataFrame's report column, as a DataFrame of the same kind and length.

    Columns: `id_column` (when given), one per finding (1, 0, -1 or null; pandas "Int8"), in radsim's names
    or, with naming="chexpert", the CheXpert labeler's ("Pleural Effusion") in its order; `label_problem`
    (null, or why a row could not be labelled); with evidence=True, `evidence` (a list of dicts per row).
    With naming="chexpert", "No Finding" is 1 or null, as in the CheXpert labeler's output.
    A pandas result keeps the input's index. Texts go to spaCy `PIPE_BATCH` at a time, as everywhere.
    """
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    kind = _frame_kind(df)
    if text_column not in df.columns:
        raise KeyError(f"the DataFrame has no column {text_column!r} (columns: {list(df.columns)[:10]})")
    lab = _labeler(labeler, vocabulary, certainty_threshold)
    texts = df[text_column].to_list()
    results = lab.label_texts([None if _missing(t) else t for t in texts])
    names = list(lab.vocabulary.names)
    order = chexpert_order(names) if naming == "chexpert" else names
    column = display_name if naming == "chexpert" else (lambda f: f)
    data: dict[str, list[Any]] = {}
    if id_column is not None:
        data[id_column] = df[id_column].to_list()
    for f in order:
        values = [r.values[f] for r in results]
        if naming == "chexpert" and f == NO_FINDING:
            values = [None if v == 0 else v for v in values]  # as the CheXpert labeler writes it: 1 or blank
        data[column(f)] = values
    data["label_problem"] = [r.problem for r in results]
    if evidence:
        data["evidence"] = [[e.as_dict() for e in r.evidence] for r in results]
    return _frame(kind, data, df, [column(f) for f in order])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _frame_kind(df: Any) -> str:
    module = type(df).__module__.split(".")[0]
    if module in ("pandas", "polars"):
        return module
    raise TypeError(f"label_dataframe takes a pandas or polars DataFrame, got {type(df).__name__}")


def _frame(kind: str, data: dict[str, list[Any]], like: Any, finding_columns: list[str]) -> Any:
    if kind == "pandas":
        import pandas as pd

        out = pd.DataFrame(data, index=like.index)
        return out.astype({c: "Int8" for c in finding_columns})
    import polars as pl

    return pl.DataFrame(data, schema_overrides={**{c: pl.Int8 for c in finding_columns}, "label_problem": pl.Utf8},
                        strict=False)
