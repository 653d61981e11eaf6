"""``POST /api/v1/previews`` ``{"ticket_id"}``: what a send for the ticket would do now, for the
agent's "Send SMS" action (the number it would text, masked; the message; whether and when it can
go). Reading the ticket is a CRM call, made in the request: this is an agent waiting for an answer,
not an event to acknowledge."""

from __future__ import annotations

from collections.abc import Sequence

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.api._door import ApiDoor, first_problem, ticket_id
from bridge.crm import TicketIds, Words
from bridge.errors import CRMError, DoorDisabled, MalformedMessage, Unprocessable
from bridge.metrics import Metrics
from bridge.preview import Preview, Previewer
from bridge.times import iso


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    ticket_id: str
    template: str | None = Field(default=None, min_length=1, max_length=40)

    @field_validator("ticket_id")
    @classmethod
    def _ticket_id(cls, value: str, info: ValidationInfo) -> str:
        return ticket_id(value, info.context)


class CRMUnreachable(DoorDisabled):
    reason = "crm_unavailable"


def view(preview: Preview) -> dict[str, object]:
    segments = preview.segments
    window = preview.window
    return {
        "ticket_id": preview.ticket_id,
        "end_user_number": preview.end_user_number,
        "message": preview.message,
        "template": None
        if preview.template is None
        else {
            "name": preview.template.name,
            "version": preview.template.version,
            "language": preview.template.language,
        },
        "segments": None
        if segments is None
        else {
            "encoding": segments.encoding,
            "characters": segments.characters,
            "units": segments.units,
            "segments": segments.segments,
            "max_segments": preview.max_segments,
        },
        "can_send": preview.can_send,
        # CCAI refuses a second SMS while the customer's chat is open ("already in an active SMS session").
        "live_chat": None
        if preview.live_chat is None
        else {
            "chat_id": preview.live_chat.chat_id,
            "status": preview.live_chat.status,
            "warning": f"The customer is still in chat {preview.live_chat.chat_id}"
            + (f" ({preview.live_chat.status})" if preview.live_chat.status else "")
            + ": CCAI refuses another SMS until it ends; answer in that chat instead.",
        },
        "blocked": None if preview.blocked is None else {"status": preview.blocked[0], "reason": preview.blocked[1]},
        "send_window": None
        if window is None
        else {
            "open": window.open,
            "window": window.window,
            "time_zone": window.time_zone,
            "local_time": window.local_time,
            "opens_at": iso(window.opens_at),
            "reason": window.reason,
        },
    }


class PreviewAPI:
    def __init__(
        self,
        *,
        previewer: Previewer | None,
        ticket_ids: TicketIds,
        words: Words,
        api_keys: Sequence[str],
        max_body_bytes: int,
        metrics: Metrics,
    ) -> None:
        self._door = ApiDoor(api_keys=api_keys, max_body_bytes=max_body_bytes, metrics=metrics)
        self._previewer = previewer
        self._ticket_ids = ticket_ids
        self._words = words

    async def preview(self, request: Request) -> Response:
        return await self._door.handle(self._preview, request)

    async def _preview(self, request: Request) -> Response:
        try:
            asked = PreviewRequest.model_validate(
                await self._door.json_object(request), context={"ticket_ids": self._ticket_ids}
            )
        except ValidationError as exc:
            raise MalformedMessage(first_problem(exc)) from exc
        if self._previewer is None:
            raise DoorDisabled("Previews need the CRM, which this bridge process is not connected to.")
        previewer = self._previewer
        if asked.template is not None and previewer.templates.get(asked.template) is None:
            known = ", ".join(template.name for template in previewer.templates)
            raise Unprocessable(
                f"template: there is no message template {asked.template!r} (the templates are {known})."
            )
        try:
            preview = await anyio.to_thread.run_sync(lambda: previewer.preview(asked.ticket_id, asked.template))
        except CRMError as exc:
            raise CRMUnreachable(f"The {self._words.ticket} could not be read: {exc}") from exc
        return JSONResponse(view(preview))
