"""Signed webhook deliveries from the sandbox Zendesk, with Zendesk's retries and circuit breaker.

Documented (developer.zendesk.com, "Verifying webhook authenticity", the Webhooks API reference,
and attempts recorded from a real account in zenpy's test cassettes):

- every request carries ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(signing secret,
  ``X-Zendesk-Webhook-Signature-Timestamp`` + raw body)); the timestamp is ISO 8601 to the second
  (``2023-09-18T23:38:13Z``); also ``X-Zendesk-Account-Id``, ``X-Zendesk-Webhook-Id``,
  ``X-Zendesk-Webhook-Invocation-Id`` (the same on every attempt of one invocation),
  ``User-Agent: Zendesk Webhook`` and ``Content-Type: application/json; charset=utf-8``;
- the webhook's own authentication (``bearer_token``, ``basic_auth`` or ``api_key``) is added;
- a request times out after about 10-12 s; failed requests are retried on some answers; a circuit
  breaker pauses a webhook whose requests fail 70 % of the time over 5 minutes, or more than 1,000
  times; invocation statuses include ``terminated``, ``throttled`` and ``circuit broken``;
- deliveries may be duplicated: receivers must be idempotent.

Assumed where the docs are silent, and switchable for tests: retried answers are 409, 429 and 503
with a ``Retry-After`` under 60 s (waited for), timeouts and connection failures, up to
``retries`` more attempts ``retry_delay`` apart; any other failure ends the invocation
(``terminated``); a success is ``success``, retries used up ``failed``; the breaker needs at least
``breaker_min`` attempts in its window and, once open, drops new invocations (``circuit broken``)
for ``breaker_pause`` seconds.

Fault switches (``WebhookFaults``): ``redeliver_success`` delivers the next N successful
invocations once more (same invocation id, a new timestamp and signature); ``signature``
``wrong`` or ``missing``; ``timestamp_skew`` seconds added to the signed timestamp; ``timeout``
overrides the request timeout; ``hold`` delays every delivery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bridge.sandbox.zendesk_account import stamp

logger = logging.getLogger(__name__)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RETRIED = frozenset({409, 429, 503})


def new_ulid(now: float) -> str:
    """A ULID (48 bits of milliseconds, 80 random bits), the form of Zendesk's webhook and invocation ids."""
    value = (int(now * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_signing_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class WebhookFaults:
    redeliver_success: int = 0
    signature: str | None = None  # "wrong" or "missing"
    timestamp_skew: float = 0.0
    timeout: float | None = None
    hold: float = 0.0

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a control body's ``webhook_faults``; raises ``ValueError`` naming a bad key or value."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"webhook_faults may set only {sorted(self.__dataclass_fields__)}, not {sorted(unknown)}.")
        if changes.get("signature") not in (None, "wrong", "missing"):
            raise ValueError("webhook_faults signature must be wrong, missing or null.")
        for name, value in changes.items():
            setattr(self, name, value)


@dataclass
class Invocation:
    id: str
    webhook_id: str
    body: bytes
    status: str = "queued"
    status_code: int | None = None
    completed_at: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"id": self.id, "status": self.status, "latest_completed_at": self.completed_at}
        if self.status_code is not None:
            summary["status_code"] = self.status_code
        return summary


@dataclass
class _Breaker:
    window: float = 300.0
    minimum: int = 10
    pause: float = 30.0
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    open_until: float = 0.0

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def record(self, now: float, failed: bool) -> None:
        self.outcomes.append((now, failed))
        while self.outcomes and self.outcomes[0][0] <= now - self.window:
            self.outcomes.popleft()
        failures = sum(1 for _, bad in self.outcomes if bad)
        if failures > 1000 or (len(self.outcomes) >= self.minimum and failures >= 0.7 * len(self.outcomes)):
            self.open_until = now + self.pause
            self.outcomes.clear()
            logger.warning("sandbox Zendesk: circuit breaker open for %.0f s", self.pause)


@dataclass
class WebhookDeliverer:
    """Delivers invocations from a background task; ``webhooks`` and ``secrets`` are the account's."""

    account_id: int
    webhooks: dict[str, dict[str, Any]]
    signing_secrets: dict[str, str]
    clock: Callable[[], float] = time.time
    transport: httpx.AsyncBaseTransport | None = None
    timeout: float = 12.0
    retries: int = 3
    retry_delay: float = 0.5
    faults: WebhookFaults = field(default_factory=WebhookFaults)
    invocations: dict[str, Invocation] = field(default_factory=dict)
    breaker_min: int = 10
    breaker_pause: float = 30.0
    _queue: asyncio.Queue[Invocation] | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _breakers: dict[str, _Breaker] = field(default_factory=dict, init=False)

    def invoke(self, webhook_id: str, body: str) -> Invocation:
        """Queue one invocation (a trigger fired); starts the delivery task on first use."""
        invocation = Invocation(id=new_ulid(self.clock()), webhook_id=webhook_id, body=body.encode())
        self.invocations[invocation.id] = invocation
        breaker = self._breakers.setdefault(webhook_id, _Breaker(minimum=self.breaker_min, pause=self.breaker_pause))
        if breaker.is_open(self.clock()):
            invocation.status, invocation.completed_at = "circuit broken", stamp(self.clock())
            invocation.attempts.append(self._attempt_record(invocation, "circuit broken"))
            return invocation
        if self.webhooks.get(webhook_id, {}).get("status") != "active":
            invocation.status = "inactive"
            return invocation
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._queue.put_nowait(invocation)
        return invocation

    def pending(self) -> int:
        return sum(1 for i in self.invocations.values() if i.status in ("queued", "retrying"))

    async def aclose(self) -> None:
        task, self._task, self._queue = self._task, None, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        async with httpx.AsyncClient(transport=self.transport) as client:
            while True:
                invocation = await queue.get()
                # Each invocation is delivered on its own: a slow endpoint does not hold the others.
                asyncio.get_running_loop().create_task(self._deliver(client, invocation))

    async def _deliver(self, client: httpx.AsyncClient, invocation: Invocation) -> None:
        if self.faults.hold:
            await asyncio.sleep(self.faults.hold)
        for attempt in range(self.retries + 1):
            status, wait = await self._attempt(client, invocation)
            if status is not None and 200 <= status < 300:
                invocation.status, invocation.status_code = "success", status
                if self.faults.redeliver_success > 0:
                    self.faults.redeliver_success -= 1
                    await self._attempt(client, invocation)
                return
            if wait is None or attempt == self.retries:
                invocation.status = "terminated" if wait is None else "failed"
                invocation.status_code = status
                return
            invocation.status = "retrying"
            await asyncio.sleep(wait)

    async def _attempt(self, client: httpx.AsyncClient, invocation: Invocation) -> tuple[int | None, float | None]:
        """One request. Returns (status or None, seconds to wait before a retry, or None for no retry)."""
        webhook = self.webhooks.get(invocation.webhook_id)
        if webhook is None:
            return None, None
        headers = self._headers(webhook, invocation)
        timeout = self.faults.timeout if self.faults.timeout is not None else self.timeout
        breaker = self._breakers[invocation.webhook_id]
        try:
            response = await client.request(
                webhook.get("http_method", "POST"),
                webhook["endpoint"],
                content=invocation.body,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            logger.info("sandbox Zendesk: webhook %s delivery failed (%s)", invocation.webhook_id, type(exc).__name__)
            breaker.record(self.clock(), failed=True)
            invocation.completed_at = stamp(self.clock())
            invocation.attempts.append(self._attempt_record(invocation, "retrying", headers=headers))
            return None, self.retry_delay
        failed = not response.is_success
        breaker.record(self.clock(), failed=failed)
        invocation.completed_at = stamp(self.clock())
        invocation.attempts.append(
            self._attempt_record(invocation, "success" if not failed else "failed", response=response, headers=headers)
        )
        return response.status_code, None if not failed else _retry_wait(response, self.retry_delay)

    def _headers(self, webhook: Mapping[str, Any], invocation: Invocation) -> dict[str, str]:
        timestamp = stamp(self.clock() + self.faults.timestamp_skew)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Account-Id": str(self.account_id),
            "X-Zendesk-Webhook-Id": invocation.webhook_id,
            "X-Zendesk-Webhook-Invocation-Id": invocation.id,
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        }
        secret = self.signing_secrets[invocation.webhook_id]
        if self.faults.signature == "wrong":
            secret = new_signing_secret()
        if self.faults.signature != "missing":
            headers["X-Zendesk-Webhook-Signature"] = sign(secret, timestamp, invocation.body)
        headers.update(_authentication(webhook.get("authentication")))
        return headers

    def _attempt_record(
        self,
        invocation: Invocation,
        status: str,
        *,
        response: httpx.Response | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": invocation.webhook_id,
            "invocation_id": invocation.id,
            "status": status,
            "completed_at": stamp(self.clock()),
        }
        if headers is not None:
            shown = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            payload = invocation.body.decode()
            record["request"] = {"headers": [{"key": k, "value": v} for k, v in shown.items()], "payload": payload}
        if response is not None:
            record["status_code"] = response.status_code
            record["response"] = {
                "headers": [{"key": k, "value": v} for k, v in response.headers.items()],
                "payload": response.text[:1000],
            }
        return record


def _retry_wait(response: httpx.Response, default: float) -> float | None:
    if response.status_code not in _RETRIED:
        return None
    if response.status_code == 409:
        return default
    try:
        retry_after = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return retry_after if 0 <= retry_after < 60 else None


def _authentication(auth: Mapping[str, Any] | None) -> dict[str, str]:
    if not auth:
        return {}
    data = auth.get("data") or {}
    kind = auth.get("type")
    if kind == "bearer_token":
        return {"Authorization": f"Bearer {data.get('token', '')}"}
    if kind == "basic_auth":
        pair = f"{data.get('username', '')}:{data.get('password', '')}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    if kind == "api_key":
        return {str(data.get("name", "")): str(data.get("value", ""))}
    return {}
