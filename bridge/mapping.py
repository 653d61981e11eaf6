"""Ticket → SMS request: the customer's number, the agent, the message.

The result is either an :class:`SmsRequest` or an :class:`Outcome` saying why nothing is sent;
the reason is written to the ticket, so it is a sentence an agent understands, in the CRM's words.
"""

from __future__ import annotations

from typing import assert_never

from bridge.crm import Ticket, Words
from bridge.model import Outcome, Overrides, SmsRequest
from bridge.phones import PhoneProblem, mask, to_e164
from bridge.segments import count_segments, over_limit
from bridge.settings import MappingConfig
from bridge.template import MissingField, Template
from bridge.text import sanitize


class TicketMapper:
    """Turns tickets into SMS requests according to the mapping configuration."""

    def __init__(
        self, *, config: MappingConfig, words: Words, outbound_number: str, chat_type: str, max_segments: int = 10
    ) -> None:
        self._config = config
        self._words = words
        self._max_segments = max_segments
        self._template: Template = config.template
        self._outbound_number = outbound_number
        self._chat_type = chat_type

    @property
    def fields(self) -> tuple[str, ...]:
        """The ticket fields a read must select for this mapping."""
        wanted = [*self._config.phone_fields, *self._template.fields]
        if self._config.message_field:
            wanted.append(self._config.message_field)
        return tuple(dict.fromkeys(wanted))

    def map(self, ticket: Ticket, overrides: Overrides | None = None) -> SmsRequest | Outcome:
        overrides = overrides or Overrides()
        number = self.number(ticket, overrides.end_user_number)
        if isinstance(number, Outcome):
            return number
        message = self.message(ticket, overrides.message)
        if isinstance(message, Outcome):
            return Outcome(status=message.status, reason=message.reason, end_user_hint=mask(number))
        agent_email, agent_id = self._agent(ticket, overrides)
        return SmsRequest(
            end_user_number=number,
            outbound_number=overrides.outbound_number or self._outbound_number,
            message=message,
            chat_type=self._chat_type,
            ticket_id=ticket.id,
            agent_email=agent_email,
            agent_id=agent_id,
        )

    def number(self, ticket: Ticket, override: str | None = None) -> str | Outcome:
        """The customer's number in E.164, or why there is none to text."""
        if override:
            raw, label = override, "The requested end-user number"
        else:
            found = next(
                ((name, str(ticket.get(name)).strip()) for name in self._config.phone_fields if _filled(ticket, name)),
                None,
            )
            if found is None:
                names = " and ".join(self._config.phone_fields)
                reason = f"The {self._words.ticket} has no phone number to text ({names} are empty)."
                return Outcome(status="skipped", reason=reason)
            name, raw = found
            label = f"The {self._words.ticket}'s {name}"
        e164 = to_e164(
            raw,
            default_region=self._config.default_region,
            allowed_regions=self._config.allowed_regions,
            label=label,
            textable=True,
        )
        if isinstance(e164, PhoneProblem):
            return Outcome(status="failed", reason=e164.reason)
        return e164

    def message(self, ticket: Ticket, override: str | None = None) -> str | Outcome:
        """The text to send, from whichever source, cleaned of control characters and within the
        segment limit: one policy for every source (audit A1, A14)."""
        if override:
            text = override
        elif self._config.message_field and _filled(ticket, self._config.message_field):
            text = str(ticket.get(self._config.message_field))
        else:
            rendered = self._template.render(ticket.fields)
            if isinstance(rendered, MissingField):
                return Outcome(
                    status="failed",
                    reason=f"The message template needs the {self._words.ticket}'s {rendered.field}, which is empty; "
                    "nothing was sent.",
                )
            text = rendered
        text = sanitize(text).strip()
        if not text:
            return Outcome(status="failed", reason="The message is empty once its control characters are removed.")
        too_long = over_limit(count_segments(text), limit=self._max_segments)
        if too_long:
            return Outcome(status="failed", reason=f"The message is too long to text: {too_long}")
        return text

    def _agent(self, ticket: Ticket, overrides: Overrides) -> tuple[str | None, int | None]:
        if overrides.agent_email or overrides.agent_id is not None:
            return overrides.agent_email, overrides.agent_id
        match self._config.agent:
            case "owner":  # a person who owns the ticket; a queue that owns it assigns nobody
                return ticket.owner_email, None
            case "none":
                return None, None
            case _:
                assert_never(self._config.agent)


def _filled(ticket: Ticket, name: str) -> bool:
    value = ticket.get(name)
    return value is not None and str(value).strip() != ""
