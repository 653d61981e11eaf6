"""Every error the bridge raises on purpose descends from :class:`BridgeError`.

::

    BridgeError
    ├── ConfigError                 settings or mapping file unusable; start-up stops with the message
    ├── UsageError                  a command's arguments cannot work (exit status 2)
    ├── InboundError                a caller sent us something we refuse (status is the HTTP answer)
    │   ├── AuthenticationFailed    401: missing or wrong webhook token or API key
    │   ├── OrganizationNotAllowed  403: OrganizationId not in SALESFORCE_ORG_IDS
    │   ├── MalformedMessage        400: not a well-formed outbound message or request
    │   ├── BodyTooLarge            413: over BRIDGE_MAX_BODY_BYTES (every door: bridge.inbound)
    │   ├── UnsupportedMediaType    415: not XML / not JSON
    │   ├── NotFound                404: no such send
    │   ├── Conflict                409: an Idempotency-Key reused with another body
    │   ├── Unprocessable           422: understood, but refused (e.g. a message over the segment limit)
    │   └── DoorDisabled            503: the send API without BRIDGE_API_KEY
    ├── StoreError                  the database did not do what was asked
    │   ├── StoreUnavailable        503: it cannot be reached (an outage: try again); nothing is acked
    │   ├── StoreRejected           the data itself was refused (e.g. DataError): retrying cannot help
    │   ├── StoreWentBack           it no longer holds writes this process made (a failover, a restore)
    │   └── LeaseLost               this process no longer holds a singleton lease: another took it over
    ├── CCAIError                   CCAI Platform did not give us what we asked for
    │   ├── CCAIRejected            final: CCAI refused this request (its message is kept verbatim)
    │   ├── CCAIUnavailable         retryable: network, 429, 5xx; says whether CCAI may have acted
    │   └── CCAIBadResponse         2xx without a usable chat: the outcome cannot be known
    └── CRMError                    the CRM call failed (messages name the CRM, e.g. Salesforce)
        ├── CRMUnavailable          retryable: network, 5xx, request limits, row locks
        ├── CRMAuthError            the session or token was refused; retryable once fixed
        └── CRMRequestError         final for this request: e.g. a field that does not exist

Third-party exceptions are translated into these only in the module that wraps the library
(``ccai/client.py`` for httpx, ``crm/salesforce/gateway.py`` and ``auth.py`` for simple-salesforce,
``store/database.py`` for SQLAlchemy).
HTTP statuses are chosen once, in the app's exception handlers, from ``status``.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of the bridge's own errors; the message is a sentence meant for a person."""


class ConfigError(BridgeError):
    """The configuration cannot work; the message says which setting and why."""


class UsageError(BridgeError):
    """A command was given arguments that cannot work; the message says which and why."""


class InboundError(BridgeError):
    """A request we refuse. ``status`` is the HTTP status the app answers with; ``reason`` is the
    short label under which the refusal is counted on ``/metrics``.
    """

    status = 400
    reason = "invalid"


class AuthenticationFailed(InboundError):
    status = 401
    reason = "unauthorized"


class OrganizationNotAllowed(InboundError):
    status = 403
    reason = "organization"


class MalformedMessage(InboundError):
    status = 400
    reason = "malformed"


class BodyTooLarge(InboundError):
    status = 413
    reason = "too_large"


class UnsupportedMediaType(InboundError):
    status = 415
    reason = "media_type"


class NotFound(InboundError):
    status = 404
    reason = "not_found"


class Conflict(InboundError):
    status = 409
    reason = "conflict"


class Unprocessable(InboundError):
    status = 422
    reason = "unprocessable"


class DoorDisabled(InboundError):
    status = 503
    reason = "disabled"


class StoreError(BridgeError):
    """Base for database failures."""


class StoreUnavailable(StoreError):
    """The store could not be reached; callers must not acknowledge anything and may try again."""


class StoreRejected(StoreError):
    """The database refused the data itself (too long, a character it cannot hold...): the same
    write fails the same way, so it must not be retried as if the database were down.
    """


class StoreWentBack(StoreError):
    """The store holds fewer of this process's writes than it made: it went back in time (a failover
    to a replica that was behind, a restore from a backup). Nothing is sent from it blind."""


class LeaseLost(StoreError):
    """A write fenced on a singleton lease (a stream's position) found another process holding it:
    this one must stop, since the other now does the work."""


class CCAIError(BridgeError):
    """Base for CCAI Platform failures."""


class CCAIRejected(CCAIError):
    """CCAI answered with a final refusal; ``message`` is CCAI's own text."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class CCAIUnavailable(CCAIError):
    """A failure worth retrying.

    ``reached`` is True when CCAI may have acted on the request without us hearing the outcome: a
    timeout, a connection dropped mid-request, or a 5xx from a gateway that may sit in front of a
    backend that did the work. Before such a send is repeated, the chat is looked up.
    ``throttled`` marks a 429, which pauses sending without counting as a failed attempt.
    """

    def __init__(
        self, reason: str, *, reached: bool, throttled: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reached = reached
        self.throttled = throttled
        self.retry_after = retry_after


class CCAIBadResponse(CCAIError):
    """CCAI answered 2xx but without a chat id: it may have created a chat we cannot name."""


class CRMError(BridgeError):
    """Base for CRM failures."""


class CRMUnavailable(CRMError):
    """Worth retrying later: network failure, 5xx, request limits, row locks."""


class CRMAuthError(CRMError):
    """The session or token was refused. Retried (an operator can fix the credentials)."""


class CRMRequestError(CRMError):
    """The CRM refused the request itself; the same request gets the same answer."""
