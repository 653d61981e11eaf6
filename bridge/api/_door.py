"""What every endpoint of the JSON API shares: the key check, on top of every door's body rules."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from bridge._secrets import matches_any
from bridge.errors import AuthenticationFailed, DoorDisabled
from bridge.inbound import Door, Handler
from bridge.metrics import Metrics


class ApiDoor(Door):
    """The ``api`` door: a request is refused unless it carries one of ``api_keys``."""

    def __init__(self, *, api_keys: Sequence[str], max_body_bytes: int, metrics: Metrics) -> None:
        super().__init__(name="api", metrics=metrics, max_body_bytes=max_body_bytes)
        self._keys = [key for key in api_keys if key]

    async def handle(self, handler: Handler, request: Request) -> Response:
        """Run ``handler`` after the key check, counting a refusal under its reason."""

        async def authenticated(request: Request) -> Response:
            self._authenticate(request)
            return await handler(request)

        return await self.counted(authenticated, request)

    def _authenticate(self, request: Request) -> None:
        if not self._keys:
            raise DoorDisabled("The send API is not enabled: set BRIDGE_API_KEY.")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not matches_any(given.strip(), self._keys):
            raise AuthenticationFailed("Missing or wrong API key (Authorization: Bearer <key>).")


def first_problem(exc: ValidationError) -> str:
    """A request body's first problem, as a sentence naming the field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"Unknown field {field!r}."
    if error["type"] == "missing":
        return f"{field} is required."
    message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    return f"{field}: {message}." if field else f"{message}."


def ticket_id(value: str, context: object) -> str:
    """A request's ticket id through the CRM's rule (``context={"ticket_ids": rule}`` on validation)."""
    normalise = (context if isinstance(context, dict) else {})["ticket_ids"]
    result: str = normalise(value)
    return result
