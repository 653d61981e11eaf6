"""Zendesk ticket ids: positive whole numbers, given as text by callers and webhooks."""

from __future__ import annotations

# Zendesk ids are 64-bit; anything longer cannot name a ticket.
_MAX_DIGITS = 19


def ticket_number(raw: str) -> str | None:
    """The ticket id in canonical form (digits, no leading zeros), or None if ``raw`` cannot be one."""
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS or int(text) == 0:
        return None
    return str(int(text))


def normalize_ticket_id(raw: str) -> str:
    """A ticket id as callers give it, normalised; ``ValueError`` with a sentence saying why not."""
    number = ticket_number(raw)
    if number is None:
        raise ValueError(f"{str(raw)[:40]!r} is not a Zendesk ticket id (a whole number such as 1001).")
    return number
