"""A hospital's first weeks of nightly runs: cost that grows with the changes, loud failures,
no dead-end first run, no run under another key (issue 13)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from radsim.data_contracts import UsageError
from radsim.data_contracts.errors import QuarantineCeilingExceeded, UnexpectedStageError
from radsim.flows.config import resolve_config

TINY = {"imaging.image_size": 64, "model.image_size": 64, "model.max_steps": 2, "model.batch_size": 16,
        "model.force_promote": True}  # these tests are about runs, not the promotion gates (warehouse/test_promotion)
_OPENED: list[str] | None = None  # paths opened while a test records (see _record_opens)


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only between _record_opens calls


def _record_opens(fn, root: Path) -> tuple[object, set[str]]:
    """Run `fn()` and return its result and the files under `root` it opened."""
    global _OPENED
    _OPENED = []
    try:
        out = fn()
    finally:
        opened, _OPENED = _OPENED, None
    prefix = str(root.resolve())
    return out, {p for p in opened if os.path.abspath(p).startswith(prefix) and os.path.isfile(p)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radsim.synthetic import generate_cohort

    return generate_cohort(tmp_path_factory.mktemp("nightly") / "c", exams=30, seed=31, image_size=64, progress=False)


def _inbox(src: Path, inbox: Path, names: list[str] | None = None) -> list[str]:
    inbox.mkdir(parents=True, exist_ok=True)
    chosen = sorted(p.name for p in src.iterdir()) if names is None else names
    for name in chosen:
        shutil.copytree(src / name, inbox / name)
    return chosen


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_nightly_run_opens_only_what_changed(prefect_harness, cohort, tmp_path):
    from radsim.flows.pipeline import pipeline

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    ids = _inbox(cohort.inbox, inbox)
    cfg = resolve_config(TINY, environ={})
    first = pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    assert first.published_rows > 0
    all_files = {str(p.resolve()) for p in inbox.rglob("*") if p.is_file()}

    second, opened = _record_opens(lambda: pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True), inbox)
    assert second.nothing_new and opened == set()  # 0 of the inbox's files opened
    assert any("unchanged by file stat (not opened)" in n for n in second.notes)

    # an image rewritten in place: new content, same size; the stat digest sees it
    victim = inbox / ids[0] / "0.dcm"
    data = bytearray(victim.read_bytes())
    data[-64:] = bytes(255 - b for b in data[-64:])
    victim.write_bytes(bytes(data))
    assert victim.stat().st_size == len(data)
    third, opened = _record_opens(lambda: pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True), inbox)
    assert third.sharded == [ids[0]]  # detected; its re-sent pixels are refused (shards are never rewritten)
    assert opened and {Path(p).parent.name for p in opened} == {ids[0]}

    # a touch changes the stat, not the content: re-hashed once, nothing redone, not re-read the night after
    report = inbox / ids[1] / "report.txt"
    os.utime(report, ns=(report.stat().st_atime_ns, report.stat().st_mtime_ns + 10**9))
    fourth, opened = _record_opens(lambda: pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True), inbox)
    assert fourth.nothing_new and {Path(p).parent.name for p in opened} == {ids[1]}
    _, opened = _record_opens(lambda: pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True), inbox)
    assert opened == set()

    verified, opened = _record_opens(lambda: pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True,
                                                      verify=True), inbox)
    assert opened == all_files  # --verify re-reads and re-hashes everything
    assert verified.nothing_new


def test_an_unexpected_decoder_error_fails_the_run_and_leaves_the_ledger(prefect_harness, cohort, tmp_path,
                                                                          monkeypatch):
    from radsim.flows.pipeline import pipeline
    from radsim.imaging import worker

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    ids = sorted(p.name for p in cohort.inbox.iterdir())
    _inbox(cohort.inbox, inbox, ids[:20])
    cfg = resolve_config(TINY, environ={})
    pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    ledger = (wh / "restricted" / "ledger.parquet").read_bytes()
    _inbox(cohort.inbox, inbox, ids[20:])

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'decode'")  # a bug, not bad input

    monkeypatch.setattr(worker, "decode_bytes", broken)
    with pytest.raises(UnexpectedStageError, match="AttributeError: 'NoneType' object has no attribute 'decode'"):
        pipeline(str(inbox), str(wh), config=cfg, demo_key=True, quiet=True)
    assert (wh / "restricted" / "ledger.parquet").read_bytes() == ledger
    quarantine = pq.read_table(wh / "restricted" / "quarantine.parquet").to_pylist()
    assert not any(r["reason_code"] == "unreadable_image" for r in quarantine)  # nothing quietly quarantined


def test_refusing_every_image_fails_past_the_ceiling(prefect_harness, cohort, tmp_path, monkeypatch):
    from radsim.flows.pipeline import pipeline
    from radsim.imaging import worker
    from radsim.imaging.decode import ImageRejected

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    _inbox(cohort.inbox, inbox)

    def refuse(data, **kwargs):
        raise ImageRejected("unsupported_transfer_syntax", "no codec")  # e.g. a codec package went missing

    monkeypatch.setattr(worker, "decode_bytes", refuse)
    with pytest.raises(QuarantineCeilingExceeded, match=r"stage 'shard' quarantined \d+ of \d+ records \(100%\)"):
        pipeline(str(inbox), str(wh), config=resolve_config(TINY, environ={}), demo_key=True, quiet=True)
    assert not (wh / "restricted" / "ledger.parquet").exists()  # no exam marked done
    quarantine = pq.read_table(wh / "restricted" / "shard-quarantine.parquet")
    assert set(quarantine.column("reason_code").to_pylist()) == {"unsupported_transfer_syntax"}  # kept to inspect


def test_a_small_first_run_defers_training_and_a_later_run_trains(prefect_harness, tmp_path, capsys):
    from radsim.flows import cli
    from radsim.synthetic import generate_cohort

    small = generate_cohort(tmp_path / "small", exams=40, seed=41, image_size=64, progress=False)
    more = generate_cohort(tmp_path / "more", exams=40, seed=42, image_size=64, progress=False)
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    _inbox(small.inbox, inbox)
    args = ["run", str(inbox), "--warehouse", str(wh), "--demo-key", "--image-size", "64", "--no-progress"]
    os.environ.update(
        {"RADSIM_MODEL_IMAGE_SIZE": "64", "RADSIM_MODEL_MAX_STEPS": "2", "RADSIM_MODEL_FORCE_PROMOTE": "true"}
    )
    try:
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "training deferred:" in out and "needs at least 32" in out and "configured batch is 64" in out
        assert "nothing published yet" in out
        ledger = pq.read_table(wh / "restricted" / "ledger.parquet").to_pylist()
        assert {r["label_status"] for r in ledger} <= {"done", "quarantined"} and len(ledger) == 40
        assert {r["shard_status"] for r in ledger} == {"done"} and not (wh / "published").exists()

        for folder in more.inbox.iterdir():
            shutil.copytree(folder, inbox / f"M{folder.name}")
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "training with a batch of 32 instead of 64" in out and "training deferred" not in out
        published = pq.read_table(wh / "published" / "embeddings")
        assert published.num_rows >= 80
    finally:
        for name in ("RADSIM_MODEL_IMAGE_SIZE", "RADSIM_MODEL_MAX_STEPS", "RADSIM_MODEL_FORCE_PROMOTE"):
            os.environ.pop(name, None)


def test_a_run_under_another_key_writes_nothing(prefect_harness, cohort, tmp_path, monkeypatch):
    from radsim.flows import cli
    from radsim.flows.pipeline import pipeline

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    ids = sorted(p.name for p in cohort.inbox.iterdir())
    _inbox(cohort.inbox, inbox, ids[:20])
    monkeypatch.setenv("RADSIM_ID_KEY", "the-site-key-0123456789")
    pipeline(str(inbox), str(wh), config=resolve_config(TINY, environ={}), quiet=True)
    _inbox(cohort.inbox, inbox, ids[20:])
    before = _files(wh)

    monkeypatch.setenv("RADSIM_ID_KEY", "another-worker-key-9876")
    with pytest.raises(UsageError, match=r"written under key_id \S+ .*RADSIM_ID_KEY gives key_id \S+: run with the "
                                         r"warehouse's key\. Nothing was written"):
        pipeline(str(inbox), str(wh), config=resolve_config(TINY, environ={}), quiet=True)
    assert _files(wh) == before
    assert cli.main(["run", str(inbox), "--warehouse", str(wh), "--no-progress"]) == 2
    assert _files(wh) == before
