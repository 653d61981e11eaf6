"""Comparing a caller's secret with the configured ones."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable


def matches_any(given: str, secrets: Iterable[str]) -> bool:
    """True when ``given`` equals one of ``secrets``. Every secret is compared, in constant time, with
    no early exit, so timing reveals neither the secret nor which one of a rotation matched.
    An empty ``given`` never matches.
    """
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given.encode(), secret.encode())
    return bool(given) and matched


def basic_credentials(header: str) -> str:
    """``user:password`` from an ``Authorization: Basic`` header; empty when there is none or it is garbled."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return ""
