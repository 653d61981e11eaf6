"""The sends list as a file: CSV for spreadsheets, JSON for scripts, with the total that matched.

Cells that a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``) are quoted
with a leading apostrophe: reasons come from CCAI and the CRM, and a file that runs what they
wrote when opened is an attack (OWASP's "CSV injection")."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.api.sends import public_view
from bridge.model import SendRecord

COLUMNS = (
    "id",
    "created_at",
    "ticket_id",
    "ticket_number",
    "source",
    "status",
    "reached_customer",
    "end_user_number",
    "chat_id",
    "chat_status",
    "error",
    "write_back",
    "finished_at",
)
LIMIT = 50_000  # rows in one file; the total says when a filter matched more


def as_csv(sends: Sequence[SendRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for send in sends:
        view = public_view(send)
        writer.writerow([_cell(view.get(column)) for column in COLUMNS])
    return out.getvalue()


def as_json(sends: Sequence[SendRecord], *, total: int, filters: Mapping[str, str]) -> dict[str, Any]:
    return {"total": total, "exported": len(sends), "filters": dict(filters), "sends": [public_view(s) for s in sends]}


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
