"""The error policy: bad input is refused with a reason, anything else fails the stage."""
from __future__ import annotations

import pickle

from radsim.data_contracts.error_policy import STRICT, ErrorPolicy, Refusal
from radsim.imaging import worker
from radsim.imaging.worker import QUARANTINE_BAD_IMAGES, DecodeOptions, WorkItem, decode_item


def _refuse_value_error(exc: BaseException) -> Refusal:
    return Refusal("schema_violation", str(exc))


def _refuse_lookup(exc: BaseException) -> Refusal:
    return Refusal("missing_file", "lookup")


def test_the_first_matching_rule_refuses_and_unknown_errors_are_not_bad_input():
    policy = ErrorPolicy(
        "p", ((KeyError, _refuse_lookup), (ValueError, _refuse_value_error), (LookupError, _refuse_lookup))
    )
    assert policy.judge(ValueError("bad date")) == Refusal("schema_violation", "bad date")
    assert policy.judge(KeyError("x")).reason_code == "missing_file"
    assert policy.judge(RuntimeError("bug")) is None
    assert STRICT.judge(ValueError("bad date")) is None


def test_the_image_policy_pickles_into_worker_processes():
    again = pickle.loads(pickle.dumps(DecodeOptions(policy=QUARANTINE_BAD_IMAGES)))
    assert again.policy.judge(MemoryError()) == Refusal("implausible_size", "out of memory while decoding")


def test_a_corrupt_image_is_rejected_by_default_and_fails_under_strict(tmp_path):
    bad = tmp_path / "0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    rejected = decode_item(WorkItem(0, str(bad)), DecodeOptions(image_size=16))
    assert rejected.status == "rejected" and rejected.reason_code
    strict = decode_item(WorkItem(0, str(bad)), DecodeOptions(image_size=16, policy=STRICT))
    assert strict.status == "failed" and "ImageRejected" in strict.message


def test_a_bug_while_decoding_fails_and_keeps_the_path_out_of_the_message(tmp_path, monkeypatch):
    good = tmp_path / "PATIENT-123" / "0.png"
    good.parent.mkdir()
    from PIL import Image

    Image.new("L", (32, 32), 128).save(good)

    def broken(*_args, **_kw):
        raise RuntimeError(f"codec exploded on {good}")

    monkeypatch.setattr(worker, "normalise_to_png", broken)
    failed = decode_item(WorkItem(0, str(good)), DecodeOptions(image_size=16))
    assert failed.status == "failed" and "RuntimeError" in failed.message and "PATIENT-123" not in failed.message
