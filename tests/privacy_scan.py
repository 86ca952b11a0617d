"""The privacy scan every privacy test shares: decoded content of every file outside restricted/.

Parquet pages are compressed, so a raw-byte search misses most identifiers; this reads what a
person would read: Parquet values and metadata, tar members (names and contents), zip members
(torch checkpoints), PNG text chunks (pixels hold no text), text files, and the printable runs of
anything else (as `strings` shows them). A Prefect server's SQLite database is read cell by cell
(`find_in_database`): flow run parameters, logs, artifacts, states, events. `inbox_needles` are
what must never appear: an inbox's exam ids (folder names), report sentences and identifying
DICOM header values.
"""
from __future__ import annotations

import json
import re
import sqlite3
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

TEXT_SUFFIXES = {".json", ".md", ".txt", ".log", ".yaml", ".yml", ".toml", ".csv", ".html", ".jsonl"}


def _cells(value: object) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _cells(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _cells(v)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
    else:
        yield str(value)


def _parquet_texts(path: Path) -> Iterator[str]:
    pf = pq.ParquetFile(path)
    for k, v in (pf.schema_arrow.metadata or {}).items():
        yield k.decode("latin-1")
        yield v.decode("latin-1")
    table = pf.read()
    for column in table.columns:
        if _numeric(column.type):
            continue  # embeddings and scores: a float cannot hold an identifier, and prints as any digits
        yield "\n".join(t for v in column.to_pylist() for t in _cells(v))


def _numeric(t) -> bool:
    import pyarrow as pa

    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_floating(t) or pa.types.is_boolean(t)


_PRINTABLE = re.compile(rb"[\x20-\x7e]{4,}")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def printable_runs(data: bytes) -> str:
    """What `strings` shows of binary data: runs of 4+ printable characters."""
    return "\n".join(m.decode("ascii") for m in _PRINTABLE.findall(data))


def png_texts(data: bytes) -> Iterator[str]:
    """The chunk types and text chunks (tEXt, zTXt, iTXt, eXIf) of a PNG: where a PNG can carry words."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        yield kind.decode("latin-1")
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            yield body.decode("latin-1")
        pos += 12 + length


def _member_text(name: str, data: bytes) -> Iterator[str]:
    yield name
    if data.startswith(PNG_SIGNATURE):
        yield from png_texts(data)
    elif name.endswith(".json"):
        try:
            yield "\n".join(_cells(json.loads(data)))
        except ValueError:
            yield data.decode("latin-1")
    else:
        yield printable_runs(data)


def decoded_texts(path: Path) -> Iterator[str]:
    """What a reader of `path` sees, as text chunks."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_texts(path)
    elif suffix == ".tar" or tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for info in tar:
                member = tar.extractfile(info)
                yield from _member_text(info.name, member.read() if member else b"")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                yield from _member_text(name, zf.read(name))
    elif suffix in TEXT_SUFFIXES:
        yield path.read_text(encoding="utf-8", errors="replace")
    else:
        data = path.read_bytes()
        yield from (png_texts(data) if data.startswith(PNG_SIGNATURE) else [printable_runs(data)])


def forms(needles: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for n in needles:
        n = str(n).strip()
        if len(n) < 4:
            continue  # too short to be told from chance matches
        out |= {n, n.upper(), n.lower(), n.replace("^", " "), n.replace("^", ", ")}
    return out


def find_identifiers(root: str | Path, needles: Iterable[str], skip: tuple[str, ...] = ("restricted",)
                     ) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in the decoded content of files under `root` outside `skip`."""
    root = Path(root)
    wanted = sorted(forms(needles), key=len, reverse=True)
    hits: list[tuple[str, str]] = []
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not set(p.relative_to(root).parts) & set(skip)]
    for path in files:
        text = "\n".join(decoded_texts(path))
        hits += [(path.relative_to(root).as_posix(), needle) for needle in wanted if needle in text]
    return sorted(set(hits))


def scanned_files(root: str | Path, skip: tuple[str, ...] = ("restricted",)) -> list[str]:
    root = Path(root)
    return [p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))
            if p.is_file() and not set(p.relative_to(root).parts) & set(skip)]


# DICOM elements that identify a patient, an exam or a person
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID", "InstitutionName",
               "ReferringPhysicianName", "OperatorsName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def inbox_needles(inbox: Path) -> set[str]:
    """The raw exam ids, report sentences and identifying header values of an inbox of exam folders."""
    import pydicom

    out: set[str] = set()
    for folder in (p for p in Path(inbox).rglob("*") if p.is_dir()):
        if any(f.is_file() for f in folder.iterdir()):  # an exam folder: its name is the exam id
            out.add(folder.name)
        report = folder / "report.txt"
        if report.exists():
            text = report.read_text(encoding="utf-8", errors="replace")
            out |= {s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if len(s.strip()) >= 12}
        for dcm in folder.glob("*.dcm"):
            try:
                ds = pydicom.dcmread(dcm, stop_before_pixels=True, force=True)
            except Exception:  # noqa: BLE001 - the corrupt DICOM of the bad set has no header to leak
                continue
            for name in IDENTIFYING:
                value = str(ds.get(name, "") or "").strip()
                if value:
                    out.add(value)
    out.discard(Path(inbox).name)
    return {n for n in out if not n.isdigit() or len(n) >= 6}  # short numbers match anything


def database_texts(db: str | Path) -> str:
    """Every cell of every table of a SQLite database (a Prefect server's prefect.db), as text."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        chunks: list[str] = []
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names read from the schema
                chunks += [cell.decode("latin-1") if isinstance(cell, bytes) else str(cell)
                           for cell in row if cell is not None]
        return "\n".join(chunks)
    finally:
        con.close()


def find_in_database(db: str | Path, needles: Iterable[str]) -> list[str]:
    """The needles (in any of their forms) found anywhere in the database."""
    text = database_texts(db)
    return sorted({needle for needle in forms(needles) if needle in text})
