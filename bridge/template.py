"""Message templates: ``{Field}``, ``{Relation.Field}`` and ``{Field|fallback}`` over Case fields.

A template is parsed once, when the configuration loads, so a syntax error stops start-up instead
of surfacing on a customer's ticket. Rendering never produces a half-filled text: an empty field
without a fallback is a reason not to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError

_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True)
class _Placeholder:
    field: str
    fallback: str | None


@dataclass(frozen=True)
class MissingField:
    """A placeholder whose field is empty on this Case and has no fallback."""

    field: str


class Template:
    """A parsed message template. ``fields`` lists the Case fields it reads."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts: list[str | _Placeholder] = []
        position = 0
        for match in _TOKEN.finditer(source):
            self._parts.append(source[position : match.start()])
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                self._parts.append(token[0])
            elif match.group(1) is None:
                raise ConfigError(
                    f"The message template {source!r} has an unmatched {token!r} at character {match.start() + 1}; "
                    "write {{ or }} for a literal brace."
                )
            else:
                self._parts.append(_parse_placeholder(match.group(1), source))
        self._parts.append(source[position:])

    @property
    def fields(self) -> tuple[str, ...]:
        seen = dict.fromkeys(p.field for p in self._parts if isinstance(p, _Placeholder))
        return tuple(seen)

    def render(self, values: Mapping[str, Any]) -> str | MissingField:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.field)
            text = "" if value is None else str(value).strip()
            if not text:
                if part.fallback is None:
                    return MissingField(part.field)
                text = part.fallback
            out.append(text)
        return "".join(out).strip()


def _parse_placeholder(body: str, source: str) -> _Placeholder:
    field, sep, fallback = body.partition("|")
    field = field.strip()
    if not _FIELD_PATH.match(field):
        raise ConfigError(
            f"The message template {source!r} has the placeholder {{{body}}}, which does not name a field "
            "(expected a Case field API name such as {CaseNumber} or {Contact.FirstName})."
        )
    return _Placeholder(field=field, fallback=fallback if sep else None)
