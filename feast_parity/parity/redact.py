"""Keyed hashing of sensitive feature values, so the sample log never holds them in clear.

A redacted value is stored as ``{"$hmac": hex}``: HMAC-SHA256, keyed by a secret from the
environment, over the same canonical encoding the row hashes use. Equal values give equal
digests under one key, so equality-based checks still work on them (value mismatch, silent
defaults, schema of nulls, categorical drift over digests); order and magnitude are lost, so
numeric drift (PSI bins, KS) is not computed for a redacted feature.

>>> a = keyed_digest(b"k", "alice@example.com", "String")
>>> a == keyed_digest(b"k", "alice@example.com", "String")
True
>>> a == keyed_digest(b"j", "alice@example.com", "String")
False
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from feast_parity.parity.hashing import encode_value

REDACTED_TAG = "$hmac"


def keyed_digest(key: bytes, value: Any, declared_type: str) -> str:
    """HMAC-SHA256 of the canonical encoding of ``value`` (hex). Float32 values digest at
    float32 precision, -0.0 as 0.0, all NaNs alike, exactly as the row hashes do."""
    return hmac.new(key, encode_value(value, declared_type), hashlib.sha256).hexdigest()


def redact(key: bytes, value: Any, declared_type: str) -> Any:
    """The stored form of a redacted value; nulls stay null (absence is not the secret)."""
    if value is None:
        return None
    return {REDACTED_TAG: keyed_digest(key, value, declared_type)}


def is_redacted(value: Any) -> bool:
    return isinstance(value, dict) and REDACTED_TAG in value
