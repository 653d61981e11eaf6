"""Named message templates, chosen per use: case opened, awaiting the customer, resolved, ...

``[mapping] message_template`` stays the simple default (named ``default``); ``[templates.<name>]``
tables add named ones, each with optional language variants picked by a Contact or Case field. A
send's template is, in this order: the one a person asked for (the API's or the Send SMS action's
``template``), the one configured for the CRM rule that fired (a Salesforce outbound message's
``ActionId``), the one named by the ticket's template field (the shipped Flows' trigger), then the
default. Every template carries a version (a hash of its texts), recorded with the send, so a
send's text can be traced to the wording in force when it left.

Pure: no I/O. The settings build a :class:`TemplateBook` once, at start-up; a template that does not
parse stops start-up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.errors import ConfigError
from bridge.template import Template

DEFAULT = "default"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# BCP 47 as Salesforce stores it (es, pt_BR, fr-CA): compared case-insensitively, "_" as "-".
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")

ChosenBy = Literal["request", "rule", "ticket", "default"]


class TemplateEntry(BaseModel):
    """One ``[templates.<name>]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    label: str = ""
    description: str = ""
    # The CRM rules that send this template (Salesforce: the outbound messages' ActionId).
    action_ids: tuple[str, ...] = ()
    # Language code -> text, for customers whose language field holds that code.
    languages: dict[str, str] = Field(default_factory=dict)

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for code in value:
            if not _LANGUAGE.match(code):
                raise ValueError(f"{code!r} is not a language code such as es, fr-CA or pt_BR")
        return value


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    label: str
    description: str
    text: Template
    languages: Mapping[str, Template]  # normalised code -> template
    action_ids: tuple[str, ...]
    version: str

    @property
    def fields(self) -> tuple[str, ...]:
        """Every ticket field any variant reads."""
        every = [*self.text.fields, *(field for variant in self.languages.values() for field in variant.fields)]
        return tuple(dict.fromkeys(every))

    def variant(self, language: str | None) -> tuple[Template, str | None]:
        """The text for a customer's language: an exact variant, else its base language (es for
        es-MX), else the main text (and no language)."""
        if language:
            code = _normal(language)
            for candidate in (code, code.split("-", 1)[0]):
                if candidate in self.languages:
                    return self.languages[candidate], candidate
        return self.text, None


@dataclass(frozen=True)
class Choice:
    template: NamedTemplate
    chosen_by: ChosenBy


@dataclass(frozen=True)
class UnknownTemplate:
    """A template was asked for by name and there is none: the reason says which and where from."""

    name: str
    reason: str


class TemplateBook:
    """Every template by name, and the rules that choose one for a send."""

    def __init__(self, templates: Mapping[str, NamedTemplate], *, template_field: str = "", language_field: str = ""):
        if DEFAULT not in templates:
            raise ConfigError("The templates need a default ([mapping] message_template).")
        self._templates = dict(templates)
        self.template_field = template_field
        self.language_field = language_field

    def __iter__(self) -> Iterator[NamedTemplate]:
        return iter(self._templates.values())

    def __len__(self) -> int:
        return len(self._templates)

    def get(self, name: str) -> NamedTemplate | None:
        return self._templates.get(name.strip().lower())

    @property
    def default(self) -> NamedTemplate:
        return self._templates[DEFAULT]

    @property
    def fields(self) -> tuple[str, ...]:
        """The ticket fields a read must select to choose and render any template."""
        wanted = [self.template_field, self.language_field, *(f for t in self._templates.values() for f in t.fields)]
        return tuple(dict.fromkeys(field for field in wanted if field))

    def choose(
        self,
        *,
        requested: str | None = None,
        rule_template: str | None = None,
        ticket_value: str | None = None,
    ) -> Choice | UnknownTemplate:
        """The template for a send. A name asked for (by a person, a rule or the ticket's field)
        that is not configured is not silently replaced by the default: the send stops and says so."""
        if requested:
            return self._named(requested, "request", "asked for")
        if rule_template:
            return self._named(rule_template, "rule", "configured for the rule that fired")
        if ticket_value and ticket_value.strip():
            field = self.template_field or "template field"
            return self._named(ticket_value, "ticket", f"named by the ticket's {field}")
        return Choice(self.default, "default")

    def for_rule(self, rule_id: str, same: Callable[[str, str], bool]) -> str | None:
        """The template configured for a CRM rule (an outbound message's ActionId); ``same`` is the
        CRM's own comparison of ids (Salesforce: 15- and 18-character forms of one id)."""
        for template in self._templates.values():
            if any(same(rule_id, configured) for configured in template.action_ids):
                return template.name
        return None

    def _named(self, name: str, chosen_by: ChosenBy, where: str) -> Choice | UnknownTemplate:
        template = self.get(name)
        if template is None:
            known = ", ".join(sorted(self._templates))
            return UnknownTemplate(name, f"There is no message template {name!r} ({where}); the templates are {known}.")
        return Choice(template, chosen_by)


def build_book(
    default_text: str,
    entries: Mapping[str, TemplateEntry],
    *,
    template_field: str = "",
    language_field: str = "",
) -> TemplateBook:
    """The book from the settings: ConfigError, naming the table, for anything that cannot work."""
    templates = {DEFAULT: _named(DEFAULT, TemplateEntry(text=default_text, label="Default"))}
    seen_actions: dict[str, str] = {}
    for name, entry in entries.items():
        if name == DEFAULT:
            raise ConfigError("[templates.default] is [mapping] message_template: set the default text there.")
        if not _NAME.match(name):
            raise ConfigError(
                f"[templates.{name}]: a template's name is lower-case letters, digits and _ (at most 40), "
                "starting with a letter, such as case_opened."
            )
        for action in entry.action_ids:
            if action in seen_actions:
                raise ConfigError(
                    f"[templates.{name}] action_ids: {action} already sends [templates.{seen_actions[action]}]."
                )
            seen_actions[action] = name
        try:
            templates[name] = _named(name, entry)
        except ConfigError as exc:
            raise ConfigError(f"[templates.{name}]: {exc}") from exc
    return TemplateBook(templates, template_field=template_field, language_field=language_field)


def _named(name: str, entry: TemplateEntry) -> NamedTemplate:
    languages = {_normal(code): Template(text) for code, text in entry.languages.items()}
    texts = [entry.text, *(f"{code}={text}" for code, text in sorted(entry.languages.items()))]
    version = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:8]
    return NamedTemplate(
        name=name,
        label=entry.label or name.replace("_", " ").capitalize(),
        description=entry.description,
        text=Template(entry.text),
        languages=languages,
        action_ids=entry.action_ids,
        version=version,
    )


def _normal(code: str) -> str:
    return code.strip().replace("_", "-").lower()
