"""restricted/exams.parquet: every exam the warehouse has seen, kept when its inbox folder is gone."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radsim.data_contracts import load_contract, write_parquet_atomic

ORDER = [("exam_id", "ascending"), ("image_index", "ascending")]


def merge_exams(exams: pa.Table, path: str | Path) -> pa.Table:
    """The exams seen before plus today's (today's rows replace an exam's earlier ones).

    Rewritten only when something changed: an unchanged inbox writes nothing.
    """
    contract = load_contract("exams")
    path = Path(path)
    if path.exists():
        old = contract.validate(pq.read_table(path))
        today = exams.cast(old.schema).sort_by(ORDER)
        mine = pc.is_in(old.column("exam_id"), value_set=exams.column("exam_id").unique())
        if old.filter(mine).sort_by(ORDER).equals(today):
            return old
        merged = pa.concat_tables([old.filter(pc.invert(mine)), today])
    else:
        merged = exams
    write_parquet_atomic(merged.sort_by(ORDER), path, contract)
    return merged
