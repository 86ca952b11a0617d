"""Identifiers: keyed, stable, separated by domain, and never computed without a key."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from radsim.data_contracts import IdKeyer, MissingKeyError, UsageError, demo_keyer, keyer_from_env
from radsim.data_contracts.ids import DEMO_KEY, KEY_ENV


def test_exam_key_is_truncated_hmac_sha256():
    keyer = IdKeyer(b"0123456789abcdef-secret")
    expected = hmac.new(b"0123456789abcdef-secret", b"exam:ACC123", hashlib.sha256).hexdigest()[:32]
    assert keyer.exam_key("ACC123") == expected
    assert len(keyer.exam_key("ACC123")) == 32


def test_keys_depend_on_the_secret_and_the_domain():
    a, b = IdKeyer(b"secret-number-one-xx"), IdKeyer(b"secret-number-two-xx")
    assert a.exam_key("X1") != b.exam_key("X1")
    assert a.exam_key("X1") != a.patient_key("X1")
    assert a.exam_key("X1") == IdKeyer(b"secret-number-one-xx").exam_key("X1")
    assert a.key_id != b.key_id and "secret" not in a.key_id


def test_demo_key_is_labelled_as_demo():
    keyer = demo_keyer()
    assert keyer.demo and keyer.key_id.startswith("demo-")


def test_non_demo_run_without_key_exits_2_with_how_to():
    with pytest.raises(MissingKeyError) as err:
        keyer_from_env(environ={})
    assert err.value.exit_code == 2
    assert KEY_ENV in str(err.value) and "export" in str(err.value)


def test_demo_key_cannot_be_used_as_a_site_key():
    with pytest.raises(UsageError):
        keyer_from_env(environ={KEY_ENV: DEMO_KEY.decode()})


def test_short_key_is_refused():
    with pytest.raises(UsageError):
        keyer_from_env(environ={KEY_ENV: "short"})


def test_key_from_environment(site_key):
    keyer = keyer_from_env()
    assert not keyer.demo
    assert keyer.exam_key("E1") == IdKeyer(site_key.encode()).exam_key("E1")


def test_empty_id_is_refused():
    with pytest.raises(ValueError):
        demo_keyer().exam_key("")
