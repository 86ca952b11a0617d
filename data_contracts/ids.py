"""Pseudonymous keys: HMAC-SHA256 of raw ids under a site secret (DESIGN §3).

Keys are the only ids that reach shards, manifests, embeddings, models and reports.
A keyed hash (not a plain hash) stops anyone without the secret from re-identifying
exams by hashing guessed accession numbers.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from .errors import MissingKeyError, UsageError

KEY_ENV = "RADSIM_ID_KEY"
KEY_LENGTH = 32  # hex characters kept from the HMAC
MIN_SECRET_BYTES = 16
META_KEY_ID = "radsim.key_id"  # the Parquet metadata key of a pseudonymised table's key_id
# A fixed, public key for the synthetic demo only. Its key_id says so in every table.
DEMO_KEY = b"radsim-DEMO-ONLY-key-never-use-on-patient-data"
DEMO_KEY_ID = "demo-" + hashlib.sha256(b"radsim-key-id:" + DEMO_KEY).hexdigest()[:8]


@dataclass(frozen=True)
class IdKeyer:
    """Turns raw exam and patient ids into keys; one instance per run, never two keys in a run."""

    secret: bytes
    demo: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise UsageError(f"{KEY_ENV} must be at least {MIN_SECRET_BYTES} bytes long")

    @property
    def key_id(self) -> str:
        """A short public fingerprint: tables made under another key are recognised, the key is not revealed."""
        if self.demo:
            return DEMO_KEY_ID
        return hashlib.sha256(b"radsim-key-id:" + self.secret).hexdigest()[:12]

    def _key(self, domain: bytes, raw_id: str) -> str:
        if raw_id is None or str(raw_id) == "":
            raise ValueError("cannot key an empty id")
        # The domain prefix keeps an exam id and a patient id that happen to be equal apart.
        return hmac.new(self.secret, domain + str(raw_id).encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_LENGTH]

    def exam_key(self, exam_id: str) -> str:
        return self._key(b"exam:", exam_id)

    def patient_key(self, patient_id: str) -> str:
        return self._key(b"patient:", patient_id)


def demo_keyer() -> IdKeyer:
    return IdKeyer(DEMO_KEY, demo=True)


def keyer_from_env(*, demo: bool = False, environ: dict[str, str] | None = None) -> IdKeyer:
    """The run's keyer: the demo key in demo mode, else `RADSIM_ID_KEY`, else a clear exit-2 error."""
    if demo:
        return demo_keyer()
    env = os.environ if environ is None else environ
    secret = env.get(KEY_ENV, "")
    if not secret:
        raise MissingKeyError(
            f"no pseudonymisation key: set {KEY_ENV} to a secret of at least {MIN_SECRET_BYTES} characters "
            f"(e.g. export {KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')) "
            "and keep it: the same key must be used for every run of a site"
        )
    if secret.encode() == DEMO_KEY:
        raise UsageError(f"{KEY_ENV} is the public demo key; choose a secret of your own")
    return IdKeyer(secret.encode("utf-8"))
