"""The CRM gateway: read Cases and write outcomes back, through simple-salesforce.

simple-salesforce is synchronous and has no default timeout; the gateway gives it a session that
applies one, and async callers run these methods in a worker thread. Its exceptions and those of
requests are translated here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError as LibraryError
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

from bridge.errors import SalesforceAuthError, SalesforceError, SalesforceRequestError, SalesforceUnavailable
from bridge.metrics import Metrics
from bridge.model import RecordResult, Ticket
from bridge.record_ids import is_record_id, to18
from bridge.salesforce_auth import SalesforceCredentials, login

logger = logging.getLogger(__name__)

COLLECTION_LIMIT = 200  # records per sObject Collections call
# Without this header every Case update re-runs the assignment rules and can move the Case.
NO_AUTO_ASSIGN = {"Sforce-Auto-Assign": "FALSE"}
_RETRYABLE_CODES = {"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"}
T = TypeVar("T")


class CaseGateway(Protocol):
    """What the worker needs from the CRM."""

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]: ...

    def write_back(
        self, updates: Sequence[tuple[str, Mapping[str, Any]]], tasks: Sequence[Mapping[str, Any]]
    ) -> tuple[list[RecordResult], list[RecordResult]]: ...

    def api_usage(self) -> tuple[int, int] | None:
        """The org's API calls used and allowed today, as last reported by Salesforce."""


class TimeoutSession(requests.Session):
    """A requests session that applies a timeout (and, when given, a CA bundle) to every call.

    The CA bundle is passed per request because requests lets ``REQUESTS_CA_BUNDLE`` in the
    environment override a session's ``verify``; an explicitly configured bundle must win.
    """

    def __init__(self, timeout: float, *, ca_bundle: str | None = None) -> None:
        super().__init__()
        self._timeout = timeout
        self._ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        if self._ca_bundle:
            kwargs.setdefault("verify", self._ca_bundle)
        return super().request(method, url, *args, **kwargs)


class SalesforceGateway:
    """Reads and updates Cases in one Salesforce org.

    It logs in on first use. When Salesforce answers 401 ``INVALID_SESSION_ID`` and the login mode
    can renew itself, it logs in again and retries the call once; a bare access token cannot be
    renewed, so the error says the token expired.
    """

    def __init__(
        self,
        *,
        credentials: SalesforceCredentials,
        api_version: str,
        timeout: float,
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._credentials = credentials
        self._api_version = api_version
        self._session = session or TimeoutSession(timeout, ca_bundle=ca_bundle)
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def _client(self, *, replacing: Salesforce | None = None) -> Salesforce:
        with self._lock:
            # Renew only if nobody else has since the failing call (threads share the client).
            if self._sf is None or (replacing is not None and self._sf is replacing):
                token, instance = login(self._credentials, session=self._session, api_version=self._api_version)
                self.logins += 1
                self._sf = Salesforce(
                    session_id=token, instance=instance, version=self._api_version, session=self._session
                )
            return self._sf

    def _call(self, call: Callable[[Salesforce], T], *, action: str) -> T:
        client = self._client()
        try:
            return self._counted(lambda: call(client), action)
        except SalesforceAuthError as exc:
            if not self._credentials.can_login:
                raise SalesforceAuthError(
                    f"Salesforce refused the access token when asked to {action}: the token has expired or was "
                    "revoked. Set a new SALESFORCE_ACCESS_TOKEN, or use a login mode that renews itself (README)."
                ) from exc
            logger.info("Salesforce session expired; logging in again")
            client = self._client(replacing=client)
            return self._counted(lambda: call(client), action)

    def _counted(self, call: Callable[[], T], action: str) -> T:
        try:
            result = _translate(call, action=action)
        except SalesforceError:
            self._metrics.salesforce_calls.labels(action, "error").inc()
            raise
        self._metrics.salesforce_calls.labels(action, "ok").inc()
        return result

    def api_usage(self) -> tuple[int, int] | None:
        """From the last ``Sforce-Limit-Info`` header simple-salesforce saw, if any."""
        usage = getattr(self._sf, "api_usage", {}).get("api-usage") if self._sf is not None else None
        return (int(usage.used), int(usage.total)) if usage is not None else None

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        """Read many Cases in one SOQL query; Cases that do not exist are absent from the result."""
        wanted = sorted({to18(i) for i in ids})
        if not wanted:
            return {}
        # Ids were validated (letters and digits only), so quoting them cannot inject SOQL.
        soql = f"SELECT {', '.join(fields)} FROM Case WHERE Id IN ({', '.join(repr(i) for i in wanted)})"  # noqa: S608
        result = self._call(lambda sf: sf.query_all(soql), action="read the Case")
        tickets = {}
        for record in result.get("records", []):
            flat = dict(_flatten(record))
            record_id = str(flat.get("Id", ""))
            if is_record_id(record_id):
                tickets[to18(record_id)] = Ticket(id=to18(record_id), fields=flat)
        return tickets

    def describe(self, sobject: str) -> dict[str, dict[str, Any]]:
        """The fields of an object, by API name (each with ``type``, ``updateable``, ``relationshipName``...)."""
        answer = self._call(lambda sf: sf.restful(f"sobjects/{sobject}/describe/"), action=f"describe {sobject}")
        return {str(f["name"]): dict(f) for f in (answer or {}).get("fields", [])}

    def write_back(
        self, updates: Sequence[tuple[str, Mapping[str, Any]]], tasks: Sequence[Mapping[str, Any]]
    ) -> tuple[list[RecordResult], list[RecordResult]]:
        """Update Cases and create Tasks in one API call: a composite request holding an sObject
        Collections update and an sObject Collections insert (up to 200 records each).
        Returns the per-record results of both, in order.
        """
        case_results: list[RecordResult] = []
        task_results: list[RecordResult] = []
        for start in range(0, max(len(updates), len(tasks)), COLLECTION_LIMIT):
            case_records = [
                {"attributes": {"type": "Case"}, "id": case_id, **fields}
                for case_id, fields in updates[start : start + COLLECTION_LIMIT]
            ]
            task_records = [
                {"attributes": {"type": "Task"}, **task} for task in tasks[start : start + COLLECTION_LIMIT]
            ]
            answer = self._call(
                lambda sf, c=case_records, t=task_records: sf.restful(  # type: ignore[misc]
                    "composite", method="POST", json=self._composite(c, t), headers=NO_AUTO_ASSIGN
                ),
                action="write the outcome back",
            )
            parts = {part.get("referenceId"): part for part in (answer or {}).get("compositeResponse", [])}
            case_results += _part_results(parts.get("cases"), len(case_records))
            task_results += _part_results(parts.get("tasks"), len(task_records))
        return case_results, task_results

    def _composite(self, cases: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
        url = f"/services/data/v{self._api_version}/composite/sobjects"
        subrequests = [
            {
                "method": method,
                "url": url,
                "referenceId": reference,
                "body": {"allOrNone": False, "records": records},
                # Each subrequest carries it too: no assignment rule may move the Case.
                "httpHeaders": NO_AUTO_ASSIGN,
            }
            for method, reference, records in (("PATCH", "cases", cases), ("POST", "tasks", tasks))
            if records
        ]
        return {"allOrNone": False, "compositeRequest": subrequests}


def _part_results(part: Mapping[str, Any] | None, expected: int) -> list[RecordResult]:
    """The records' results of one composite subrequest; a refused subrequest fails all its records."""
    if expected == 0:
        return []
    if part is None:
        raise SalesforceUnavailable("Salesforce's composite answer lacked a part of the write-back.")
    body = part.get("body")
    if 200 <= int(part.get("httpStatusCode", 0)) < 300 and isinstance(body, list) and len(body) == expected:
        return [_record_result(item) for item in body]
    error = body[0] if isinstance(body, list) and body and isinstance(body[0], Mapping) else {}
    failed = RecordResult(
        ok=False,
        error_code=str(error.get("errorCode") or f"HTTP_{part.get('httpStatusCode')}"),
        message=str(error.get("message") or "The write-back subrequest was refused."),
    )
    return [failed] * expected


def _record_result(item: Mapping[str, Any]) -> RecordResult:
    if item.get("success"):
        return RecordResult(ok=True)
    errors = item.get("errors") or [{}]
    first = errors[0]
    return RecordResult(
        ok=False, error_code=str(first.get("statusCode") or "UNKNOWN"), message=str(first.get("message") or "")
    )


def _flatten(record: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _translate(call: Callable[[], T], *, action: str) -> T:
    try:
        return call()
    except SalesforceExpiredSession as exc:
        raise SalesforceAuthError(
            f"Salesforce refused the session when asked to {action} ({_describe(exc)}); the access token has "
            "expired or was revoked."
        ) from exc
    except LibraryError as exc:
        code, message = _first_error(exc)
        text = f"Salesforce could not {action}: {code + ': ' if code else ''}{message}"
        if code in _RETRYABLE_CODES or (isinstance(exc, SalesforceGeneralError) and exc.status >= 500):
            raise SalesforceUnavailable(text) from exc
        raise SalesforceRequestError(text) from exc
    except requests.RequestException as exc:
        raise SalesforceUnavailable(f"Could not reach Salesforce to {action} ({type(exc).__name__}).") from exc


def _first_error(exc: LibraryError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "")
    return "", f"HTTP {exc.status}"


def _describe(exc: LibraryError) -> str:
    code, message = _first_error(exc)
    return f"{code}: {message}" if code else message
