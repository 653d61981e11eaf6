"""A small evaluator for the Flow entry-condition formulas the Salesforce project ships.

It knows only what those formulas use - ``AND``, ``OR``, ``NOT``, ``ISBLANK``, ``ISNEW``, ``ISCHANGED``,
``TEXT``, ``=``/``<>``, ``&`` and merge fields such as ``{!$Record.Field}``, ``{!$User.Username}`` and
``{!$Permission.Name}`` - and refuses anything else, so a formula it cannot read fails the test
instead of passing it. Semantics follow Salesforce's formula reference: ``ISNEW()`` is true while a
record is being created, ``ISCHANGED(field)`` is false on create, ``ISBLANK`` is true for null and ''.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

TOKEN = re.compile(
    r"\s*(?:(?P<merge>\{!\s*[$\w.]+\s*\})|(?P<string>'(?:[^'\\]|\\.)*')|(?P<op><>|!=|==|=|&&|\|\||&)"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[(),]))"
)

Value = str | bool | None


@dataclass(frozen=True)
class Save:
    """One save of a record, as a record-triggered Flow sees it."""

    record: Mapping[str, Value]
    prior: Mapping[str, Value] | None = None  # None: the record is being created
    user: Mapping[str, Value] = field(default_factory=dict)
    permissions: Set[str] = frozenset()


class FormulaError(ValueError):
    pass


def tokens(formula: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    formula = formula.rstrip()
    while position < len(formula):
        match = TOKEN.match(formula, position)
        if match is None or match.end() == position:
            raise FormulaError(f"cannot read the formula at {formula[position:]!r}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, formula: str, save: Save) -> None:
        self._tokens = tokens(formula)
        self._at = 0
        self._save = save

    def evaluate(self) -> Value:
        value = self._logical()
        if self._at != len(self._tokens):
            raise FormulaError(f"unexpected {self._tokens[self._at][1]!r}")
        return value

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (text is not None and token[1].upper() != text.upper()):
            raise FormulaError(f"expected {text!r}, found {token!r}")
        self._at += 1
        return token

    def _logical(self) -> Value:
        value = self._comparison()
        while (token := self._peek()) is not None and token[1] in {"&&", "||"}:
            self._take()
            right = self._comparison()
            value = bool(value) and bool(right) if token[1] == "&&" else bool(value) or bool(right)
        return value

    def _comparison(self) -> Value:
        value = self._concatenation()
        token = self._peek()
        if token is not None and token[1] in {"=", "==", "<>", "!="}:
            self._take()
            right = self._concatenation()
            equal = (value or "") == (right or "")
            return equal if token[1] in {"=", "=="} else not equal
        return value

    def _concatenation(self) -> Value:
        value = self._primary()
        while (token := self._peek()) is not None and token[1] == "&":
            self._take()
            value = f"{value or ''}{self._primary() or ''}"
        return value

    def _primary(self) -> Value:
        kind, text = self._take()
        if kind == "string":
            return text[1:-1]
        if kind == "merge":
            return self._merge_value(text)
        if text == "(":
            value = self._logical()
            self._take(")")
            return value
        if kind == "name" and text.upper() in {"TRUE", "FALSE"}:
            return text.upper() == "TRUE"
        if kind == "name":
            return self._call(text.upper())
        raise FormulaError(f"unexpected {text!r}")

    def _arguments(self) -> list[Value]:
        self._take("(")
        values: list[Value] = []
        while (token := self._peek()) is not None and token[1] != ")":
            values.append(self._logical())
            if (token := self._peek()) is not None and token[1] == ",":
                self._take(",")
        self._take(")")
        return values

    def _call(self, name: str) -> Value:
        if name == "ISCHANGED":
            self._take("(")
            kind, text = self._take()
            self._take(")")
            scope, field_name = self._merge_field(text)
            if kind != "merge" or scope != "$Record":
                raise FormulaError("ISCHANGED takes a $Record field")
            prior = self._save.prior
            return prior is not None and prior.get(field_name) != self._save.record.get(field_name)
        arguments = self._arguments()
        if name == "AND":
            return all(bool(value) for value in arguments)
        if name == "OR":
            return any(bool(value) for value in arguments)
        if name == "NOT" and len(arguments) == 1:
            return not arguments[0]
        if name == "ISBLANK" and len(arguments) == 1:
            return arguments[0] is None or arguments[0] == ""
        if name == "ISNEW" and not arguments:
            return self._save.prior is None
        if name == "TEXT" and len(arguments) == 1:
            return "" if arguments[0] is None else str(arguments[0])
        raise FormulaError(f"{name} with {len(arguments)} arguments is not supported")

    @staticmethod
    def _merge_field(text: str) -> tuple[str, str]:
        scope, _, name = text.strip("{!} ").partition(".")
        return scope, name

    def _merge_value(self, text: str) -> Value:
        scope, name = self._merge_field(text)
        if scope == "$Record":
            return self._save.record.get(name)
        if scope == "$User":
            return self._save.user.get(name)
        if scope == "$Permission":
            return name in self._save.permissions
        raise FormulaError(f"{scope} is not supported")


def evaluate(formula: str, save: Save) -> Value:
    """The formula's value for one save; FormulaError for anything this evaluator does not know."""
    return _Parser(formula, save).evaluate()
