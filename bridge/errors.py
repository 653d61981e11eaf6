"""Every error the bridge raises on purpose descends from :class:`BridgeError`.

::

    BridgeError
    ├── ConfigError                 settings or mapping file unusable; start-up stops with the message
    ├── InboundError                a caller sent us something we refuse (mapped to HTTP by app.py)
    │   ├── AuthenticationFailed    401: missing or wrong webhook token
    │   ├── OrganizationNotAllowed  403: OrganizationId not in SALESFORCE_ORG_IDS
    │   ├── MalformedMessage        400: not a well-formed outbound message
    │   └── UnsupportedMediaType    415: not XML
    ├── ApiError                    the JSON send API refuses a request (answered as {"error": ...})
    │   ├── ApiUnauthorized         401: missing or wrong API key
    │   ├── ApiNotFound             404: no such send
    │   ├── ApiConflict             409: an Idempotency-Key reused with another body
    │   └── ApiDisabled             503: BRIDGE_API_KEY is not set
    ├── StoreUnavailable            503: the database cannot be reached; nothing is acked
    ├── CCAIError                   the SMS endpoint did not give us a chat
    │   ├── CCAIRejected            final: CCAI refused this request (its message is kept verbatim)
    │   ├── CCAIUnavailable         retryable: network, 429, 5xx; says whether an unanswered request may have arrived
    │   └── CCAIBadResponse         200 without a usable chat: the outcome cannot be known
    └── SalesforceError             the CRM call failed
        ├── SalesforceUnavailable   retryable: network, 5xx, request limits, row locks
        ├── SalesforceAuthError     the session is expired or refused; retryable once fixed
        └── SalesforceRequestError  final for this request: e.g. a field that does not exist

Third-party exceptions are translated into these only in the module that wraps the library
(``ccai.py`` for httpx, ``salesforce.py`` for simple-salesforce, ``store.py`` for SQLAlchemy).
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of the bridge's own errors; the message is a sentence meant for a person."""


class ConfigError(BridgeError):
    """The configuration cannot work; the message says which setting and why."""


class InboundError(BridgeError):
    """A request we refuse. ``status`` is the HTTP status app.py answers with."""

    status = 400


class AuthenticationFailed(InboundError):
    status = 401


class OrganizationNotAllowed(InboundError):
    status = 403


class MalformedMessage(InboundError):
    status = 400


class UnsupportedMediaType(InboundError):
    status = 415


class ApiError(BridgeError):
    """A refused JSON API request; ``status`` is the HTTP status, the message goes in ``{"error": ...}``."""

    status = 400


class ApiUnauthorized(ApiError):
    status = 401


class ApiNotFound(ApiError):
    status = 404


class ApiConflict(ApiError):
    status = 409


class ApiDisabled(ApiError):
    status = 503


class StoreUnavailable(BridgeError):
    """The store could not be read or written; callers must not acknowledge anything."""


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

    ``reached`` is True when the request may have been received by CCAI without us hearing the
    answer (a timeout while waiting, a connection dropped mid-request), so a retry must be
    recorded as possibly repeating a delivered SMS. ``throttled`` marks a 429, which pauses
    sending without counting as a failed attempt.
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


class SalesforceError(BridgeError):
    """Base for Salesforce failures."""


class SalesforceUnavailable(SalesforceError):
    """Worth retrying later: network failure, 5xx, REQUEST_LIMIT_EXCEEDED, UNABLE_TO_LOCK_ROW."""


class SalesforceAuthError(SalesforceError):
    """The session or token was refused. Retried (an operator can fix the credentials)."""


class SalesforceRequestError(SalesforceError):
    """Salesforce refused the request itself; the same request gets the same answer."""
