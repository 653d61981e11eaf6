"""Every error the seed document lists for POST /apps/api/v1/sms (all HTTP 400)."""

from __future__ import annotations

import re
from pathlib import Path

DOCUMENTED_ERRORS = [
    "chat_type needs to be provided",
    "valid chat type needs to be provided",
    "SMS is not enabled",
    "Outbound SMS is not enabled",
    "end_user_number is required",
    "end_user_number is invalid",
    "Non-US phone number not allowed",
    "outbound_number is required",
    "outbound_number is invalid",
    "outbound_number is not found",
    "message is required",
    "Outbound SMS failed. Consumer is already in an active SMS session.",
]

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_12d3d77341ff20e9.txt"


def seed_error_messages() -> list[str] | None:
    """The messages of the seed's 400 responses, when the seed is beside the checkout."""
    if not SEED.exists():
        return None
    text = SEED.read_text()
    return re.findall(r'\{\s*"message":\s*"([^"]+)"\s*\}\s*Status Code: 400', text)
