"""Salesforce record ids: validation and the 15 → 18 character form.

Admins paste 15-character ids (case-sensitive) while the APIs answer with 18-character ids (a
checksum suffix makes them case-insensitive). The bridge keys everything on the 18-character form
so that the same Case is recognised whichever form it arrived in.
"""

from __future__ import annotations

import re

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def is_record_id(value: str) -> bool:
    return bool(_ID.match(value))


def valid_id(value: str) -> bool:
    """A well-formed id whose 18-character form, if given, carries the right checksum suffix (one bad
    id in a query would make Salesforce refuse the whole batch of Cases read with it)."""
    if not is_record_id(value):
        return False
    return len(value) == 15 or to18(value[:15])[15:] == value[15:].upper()


def to18(record_id: str) -> str:
    """Return the 18-character form of a 15- or 18-character Salesforce id."""
    if not is_record_id(record_id):
        raise ValueError(f"{record_id!r} is not a Salesforce record id (15 or 18 letters and digits).")
    if len(record_id) == 18:
        return record_id[:15] + record_id[15:].upper()
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(record_id[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _SUFFIX_ALPHABET[bits]
    return record_id + suffix


def normalize_case_id(raw: str) -> str:
    """The 18-character form of a Case id, or ``ValueError`` saying why it is not one (the plugin's
    ticket-id rule: what the send API, ``bridge send`` and the dashboard accept)."""
    if not valid_id(raw) or not raw.startswith("500"):
        raise ValueError("must be a Case id (15 or 18 letters and digits, starting 500)")
    return to18(raw)


def org_prefix(org_id: str) -> str:
    """Organisations are compared on their first 15 characters (admins paste either form)."""
    return org_id[:15]
