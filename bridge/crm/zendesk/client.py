"""Zendesk's REST API over httpx: authentication, timeouts, 429 ``Retry-After``, and the
translation of transport failures into :class:`~bridge.errors.CRMError`.

Calls are synchronous (the gateway runs in a worker thread). An answer the caller must interpret
(404, 409, 422) is returned as it is; what no caller can act on is raised: network failures and
5xx as :class:`CRMUnavailable`, 401/403 as :class:`CRMAuthError`, a 429 whose ``Retry-After`` is
too long to wait as :class:`CRMUnavailable`.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bridge.errors import CRMAuthError, CRMRequestError, CRMUnavailable
from bridge.phones import mask_numbers

logger = logging.getLogger(__name__)

# A 429 is waited out at most this many times within one call: the account is busy, not the call wrong.
RATE_LIMIT_RETRIES = 3


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> str:
        """Zendesk's own words for a refusal (``error``/``description``/``details``), numbers masked."""
        body = self.body
        if isinstance(body, Mapping):
            parts = [str(body.get(k)) for k in ("error", "description") if body.get(k)]
            details = body.get("details")
            if isinstance(details, Mapping):
                parts += [str(d.get("description")) for v in details.values() for d in v if isinstance(d, Mapping)]
            if isinstance(body.get("errors"), list):
                parts += [str(e.get("detail") or e.get("title")) for e in body["errors"] if isinstance(e, Mapping)]
            if parts:
                return mask_numbers(": ".join(parts))
        return f"HTTP {self.status}"


class ZendeskClient:
    """One account's API. ``login`` is (``email/token``, token) for an API token, or a bearer token."""

    def __init__(
        self,
        *,
        base_url: str,
        login: tuple[str, str] | str,
        timeout: float,
        ca_bundle: str | None = None,
        max_retry_after: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        auth: httpx.Auth | None = httpx.BasicAuth(*login) if isinstance(login, tuple) else None
        headers = {"Accept": "application/json"}
        if isinstance(login, str):
            headers["Authorization"] = f"Bearer {login}"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._http = httpx.Client(
            base_url=base_url, auth=auth, headers=headers, timeout=timeout, verify=verify, transport=transport
        )
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self.calls = 0

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, action: str, params: Mapping[str, str] | None = None, json: Any = None
    ) -> Answer:
        """One API call (429s waited out within bounds). ``action`` words failures: "read the ticket"."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            self.calls += 1
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TimeoutException as exc:
                raise CRMUnavailable(f"Zendesk did not answer in time ({action}).") from exc
            except httpx.HTTPError as exc:
                raise CRMUnavailable(f"Zendesk could not be reached ({action}): {type(exc).__name__}.") from exc
            if response.status_code != 429:
                return self._answer(response, action)
            wait = _retry_after(response)
            if wait is None or wait > self._max_retry_after or attempt == RATE_LIMIT_RETRIES:
                raise CRMUnavailable(
                    f"Zendesk's rate limit refused the request ({action}); it asks to wait "
                    f"{'an unknown time' if wait is None else f'{wait:.0f} s'}."
                )
            logger.info("Zendesk rate limit: waiting %.0f s as Retry-After asks (%s)", wait, action)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _answer(self, response: httpx.Response, action: str) -> Answer:
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        answer = Answer(response.status_code, body)
        if response.status_code in (401, 403):
            raise CRMAuthError(f"Zendesk refused the bridge's login ({action}): {answer.error()}.")
        if response.status_code >= 500:
            raise CRMUnavailable(f"Zendesk failed ({action}): {answer.error()}.")
        if response.status_code == 400:
            raise CRMRequestError(f"Zendesk refused the request ({action}): {answer.error()}.")
        return answer


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
