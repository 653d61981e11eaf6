"""The Salesforce gateway: reads Cases and writes outcomes back, through simple-salesforce.

Everything shaped like Salesforce's API lives here: SOQL, sObject records (Case fields by the API
names of ``[writeback]``, Tasks), error codes. The rest of the bridge speaks the neutral types of
:mod:`bridge.crm`: a note is a Task, and following it up completes that Task.

simple-salesforce is synchronous and has no default timeout; the gateway gives it a session that
applies one, and async callers run these methods in a worker thread. Its exceptions and those of
requests are translated here into :class:`~bridge.errors.CRMError`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError as LibraryError
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

from bridge.crm import ApiUsage, ChatUpdate, FollowUp, Note, Ticket, TicketUpdate, WriteResult, WriteResults
from bridge.crm.salesforce.auth import SalesforceCredentials, login
from bridge.crm.salesforce.ids import is_record_id, to18
from bridge.crm.salesforce.settings import SalesforceWriteback
from bridge.errors import CRMAuthError, CRMError, CRMRequestError, CRMUnavailable
from bridge.metrics import Metrics
from bridge.model import SendStatus, status_words
from bridge.phones import mask_numbers
from bridge.times import iso_date, iso_utc

logger = logging.getLogger(__name__)

COLLECTION_LIMIT = 200  # records per sObject Collections call
OPT_OUTS_PER_CALL = 11  # 2 collections + 2 subrequests per opt-out fit the composite limit of 25
# Without this header every Case update re-runs the assignment rules and can move the Case.
NO_AUTO_ASSIGN = {"Sforce-Auto-Assign": "FALSE"}
# Error codes worth another try, for whole calls and for single records alike; anything else
# (INVALID_FIELD, ENTITY_IS_DELETED, FIELD_CUSTOM_VALIDATION_EXCEPTION, ...) gets the same answer again.
RETRYABLE_CODES = frozenset(
    {"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT", "UNAVAILABLE"}
)
# Fields every Case read selects besides the mapping's: the id and who owns it (User or Queue).
BASE_FIELDS = ("Id", "CaseNumber", "Owner.Type", "Owner.Email")
T = TypeVar("T")


def case_status(status: SendStatus) -> str:
    """The value of the status picklist (README: Salesforce set-up): the status's words, except
    that a suppressed echo shows as Skipped (the picklist has no Suppressed)."""
    return "Skipped" if status == "suppressed" else status_words(status)


def note_marker(key: str) -> str:
    """How a Task names the send it records, so that it can be found again."""
    return f"[CCAI bridge {key}]"


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
    """Reads and updates Cases in one Salesforce org (a :class:`~bridge.crm.CRMGateway`).

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
        writeback: SalesforceWriteback,
        opt_out_field: str = "",
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._credentials = credentials
        self._api_version = api_version
        self._fields = writeback
        # "Contact.<checkbox>" to tick when the bridge learns of an opt-out the CRM may not know.
        self._opt_out_field = opt_out_field.removeprefix("Contact.")
        self._session = session or TimeoutSession(timeout, ca_bundle=ca_bundle)
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def close(self) -> None:
        """Close the keep-alive connections (a server waiting for them to end would otherwise wait)."""
        self._session.close()

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
        except CRMAuthError as exc:
            if not self._credentials.can_login:
                raise CRMAuthError(
                    f"Salesforce refused the access token when asked to {action}: the token has expired or was "
                    "revoked. Set a new SALESFORCE_ACCESS_TOKEN, or use a login mode that renews itself (README)."
                ) from exc
            logger.info("Salesforce session expired; logging in again")
            client = self._client(replacing=client)
            return self._counted(lambda: call(client), action)

    def _counted(self, call: Callable[[], T], action: str) -> T:
        try:
            result = _translate(call, action=action)
        except CRMError:
            self._metrics.salesforce_calls.labels(action, "error").inc()
            raise
        self._metrics.salesforce_calls.labels(action, "ok").inc()
        return result

    def api_usage(self) -> ApiUsage | None:
        """From the last ``Sforce-Limit-Info`` header simple-salesforce saw, if any."""
        usage = getattr(self._sf, "api_usage", {}).get("api-usage") if self._sf is not None else None
        return ApiUsage(int(usage.used), int(usage.total)) if usage is not None else None

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        """Read many Cases in one SOQL query; Cases that do not exist are absent from the result (so
        is an id that cannot name one: it must not fail the other Cases of the batch)."""
        wanted = sorted({to18(i) for i in ids if is_record_id(i)})
        if not wanted:
            return {}
        # Salesforce refuses a field selected twice, in any letter case ("duplicate field selected").
        once: dict[str, str] = {}
        for name in (*BASE_FIELDS, *fields):
            once.setdefault(name.lower(), name)
        selected = ", ".join(once.values())
        # Ids were validated (letters and digits only), so quoting them cannot inject SOQL.
        soql = f"SELECT {selected} FROM Case WHERE Id IN ({', '.join(repr(i) for i in wanted)})"  # noqa: S608
        result = self._call(lambda sf: sf.query_all(soql), action="read the Case")
        tickets = {}
        for record in result.get("records", []):
            flat = dict(_flatten(record))
            # Salesforce answers with each field's own spelling, whatever the query's. Names are
            # case-insensitive, so a configured "contact.donotcall" must still find its value.
            by_lower = {name.lower(): value for name, value in flat.items()}
            flat |= {name: by_lower[name.lower()] for name in fields if name not in flat and name.lower() in by_lower}
            record_id = str(flat.get("Id", ""))
            if is_record_id(record_id):
                owner = flat.get("Owner.Email") if flat.get("Owner.Type") == "User" else None
                number = flat.get("CaseNumber")
                tickets[to18(record_id)] = Ticket(
                    id=to18(record_id),
                    fields=flat,
                    owner_email=str(owner).strip() if owner else None,
                    number=str(number) if number else None,
                )
        return tickets

    def query(self, soql: str, *, tooling: bool = False) -> list[dict[str, Any]]:
        """Records of a SOQL query (the Tooling API's with ``tooling``), for ``bridge check``."""
        if tooling:
            answer = self._call(
                lambda sf: sf.toolingexecute(f"query/?q={quote(soql)}"), action="read Setup (Tooling API)"
            )
        else:
            answer = self._call(lambda sf: sf.query_all(soql), action="read Setup")
        return [dict(record) for record in (answer or {}).get("records", [])]

    def describe(self, sobject: str) -> dict[str, dict[str, Any]]:
        """The fields of an object, by API name (each with ``type``, ``updateable``, ``relationshipName``...)."""
        answer = self._call(lambda sf: sf.restful(f"sobjects/{sobject}/describe/"), action=f"describe {sobject}")
        return {str(f["name"]): dict(f) for f in (answer or {}).get("fields", [])}

    def write_outcomes(self, updates: Sequence[TicketUpdate], notes: Sequence[Note]) -> WriteResults:
        """Update Cases and create Tasks in one API call: a composite request holding an sObject
        Collections update and an sObject Collections insert (up to 200 records each).
        Returns the per-record results of both, in order.
        """
        case_results: list[WriteResult] = []
        task_results: list[WriteResult] = []
        for start in range(0, max(len(updates), len(notes)), COLLECTION_LIMIT):
            chunk = updates[start : start + COLLECTION_LIMIT]
            case_records = [self._case_record(u) for u in chunk]
            task_records = [_task_record(n, self._fields) for n in notes[start : start + COLLECTION_LIMIT]]
            opt_outs = [u.ticket_id for u in chunk if u.opted_out] if self._opt_out_field else []
            # A composite request holds at most 25 subrequests: the two collections, then opt-outs in pairs.
            first, rest = opt_outs[:OPT_OUTS_PER_CALL], opt_outs[OPT_OUTS_PER_CALL:]
            parts = self._composite_call(self._composite(case_records, task_records) + self._contact_writes(first))
            case_results += _part_results(parts.get("cases"), len(case_records))
            task_results += _part_results(parts.get("tasks"), len(task_records))
            _log_contact_writes(parts, first)
            for index in range(0, len(rest), OPT_OUTS_PER_CALL):
                group = rest[index : index + OPT_OUTS_PER_CALL]
                _log_contact_writes(self._composite_call(self._contact_writes(group)), group)
        return WriteResults(case_results, task_results)

    def _composite_call(self, subrequests: list[dict[str, Any]]) -> dict[str, Any]:
        answer = self._call(
            lambda sf: sf.restful(
                "composite",
                method="POST",
                json={"allOrNone": False, "compositeRequest": subrequests},
                headers=NO_AUTO_ASSIGN,
            ),
            action="write the outcome back",
        )
        return {part.get("referenceId"): part for part in (answer or {}).get("compositeResponse", [])}

    def _contact_writes(self, case_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Tick the opt-out checkbox on each Case's Contact: read the Case's ContactId, then update
        that Contact, chained by a composite reference (the bridge never stores contact ids)."""
        base = f"/services/data/v{self._api_version}/sobjects"
        subrequests: list[dict[str, Any]] = []
        for index, case_id in enumerate(case_ids):
            subrequests += [
                {
                    "method": "GET",
                    "url": f"{base}/Case/{to18(case_id)}?fields=ContactId",
                    "referenceId": f"case{index}",
                },
                {
                    "method": "PATCH",
                    "url": f"{base}/Contact/@{{case{index}.ContactId}}",
                    "referenceId": f"optout{index}",
                    "body": {self._opt_out_field: True},
                },
            ]
        return subrequests

    def write_chats(self, updates: Sequence[ChatUpdate], follow_ups: Sequence[FollowUp]) -> WriteResults:
        """Chat fields on the Cases, and each follow-up completing its note's Task, in one composite
        call per 200 of each. A follow-up that does not name its Task is matched by its key."""
        refs = self._task_refs(follow_ups)
        completions = [f for f in follow_ups if refs.get(f.key)]
        found = {f.key: WriteResult(ok=True) for f in completions}
        case_results: list[WriteResult] = []
        task_results: list[WriteResult] = []
        config = self._fields
        for start in range(0, max(len(updates), len(completions)), COLLECTION_LIMIT):
            cases = [
                {
                    "attributes": {"type": "Case"},
                    "id": to18(u.ticket_id),
                    config.chat_status_field: u.status,
                    config.chat_agent_field: u.agent,
                    config.chat_ended_at_field: _datetime(u.ended_at),
                    config.chat_outcome_field: u.outcome,
                }
                for u in updates[start : start + COLLECTION_LIMIT]
            ]
            tasks = [
                {
                    "attributes": {"type": "Task"},
                    "id": refs[c.key],
                    "Status": config.task_status_done,
                    "Description": f"{c.body}\n\n{note_marker(c.key)}"[:32000],
                }
                for c in completions[start : start + COLLECTION_LIMIT]
            ]
            url = f"/services/data/v{self._api_version}/composite/sobjects"
            subrequests = [
                {
                    "method": "PATCH",
                    "url": url,
                    "referenceId": reference,
                    "body": {"allOrNone": False, "records": records},
                    "httpHeaders": NO_AUTO_ASSIGN,
                }
                for reference, records in (("cases", cases), ("tasks", tasks))
                if records
            ]
            parts = self._composite_call(subrequests)
            case_results += _part_results(parts.get("cases"), len(cases))
            task_results += _part_results(parts.get("tasks"), len(tasks))
        found |= {f.key: result for f, result in zip(completions, task_results, strict=True)}
        missing = WriteResult(ok=False, message="No Task on the Case records this send; nothing to complete.")
        return WriteResults(case_results, [found.get(f.key, missing) for f in follow_ups])

    def _task_refs(self, follow_ups: Sequence[FollowUp]) -> dict[str, str]:
        """Each follow-up's Task id: the one it names, or the Task whose key marker it carries."""
        refs = {f.key: f.note_ref for f in follow_ups if f.note_ref}
        unnamed = [f for f in follow_ups if not f.note_ref]
        if unnamed:
            notes = [Note(ticket_id=f.ticket_id, key=f.key, subject="", body="", at=0.0) for f in unnamed]
            refs |= self.existing_notes(notes)
        return refs

    def existing_notes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Those notes that a Task on their Case already records (one SOQL query): Task ids by key."""
        cases = sorted({to18(n.ticket_id) for n in notes})
        if not cases:
            return {}
        soql = (
            "SELECT Id, WhatId, Description FROM Task "  # noqa: S608 - ids validated as above
            f"WHERE WhatId IN ({', '.join(repr(c) for c in cases)}) AND CreatedDate = LAST_N_DAYS:7"
        )
        result = self._call(lambda sf: sf.query_all(soql), action="look for Tasks already written")
        found: dict[str, str] = {}
        for record in result.get("records", []):
            description = str(record.get("Description") or "")
            found |= {n.key: str(record.get("Id")) for n in notes if note_marker(n.key) in description}
        return found

    def _case_record(self, update: TicketUpdate) -> dict[str, Any]:
        config = self._fields
        record: dict[str, Any] = {
            "attributes": {"type": "Case"},
            "id": to18(update.ticket_id),
            config.status_field: case_status(update.status),
            config.error_field: update.reason,
        }
        if update.chat_id is not None:  # a refusal keeps the chat id a success wrote
            record[config.chat_id_field] = update.chat_id
        for field in update.clear:
            record[field] = None
        return record

    def _composite(self, cases: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        url = f"/services/data/v{self._api_version}/composite/sobjects"
        return [
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


def _datetime(timestamp: float | None) -> str | None:
    """A DateTime field's value (ISO 8601, UTC, with the milliseconds Salesforce writes)."""
    return None if timestamp is None else iso_utc(timestamp).replace("Z", ".000Z")


def _log_contact_writes(parts: Mapping[str, Any], case_ids: Sequence[str]) -> None:
    for index, case_id in enumerate(case_ids):
        part = parts.get(f"optout{index}") or {}
        if not 200 <= int(part.get("httpStatusCode", 0)) < 300:
            body = part.get("body")
            detail = body[0].get("message") if isinstance(body, list) and body and isinstance(body[0], Mapping) else ""
            logger.warning("Could not record the opt-out on the Contact of Case %s: %s", case_id, detail or "no answer")


def _task_record(note: Note, config: SalesforceWriteback) -> dict[str, Any]:
    return {
        "attributes": {"type": "Task"},
        "WhatId": to18(note.ticket_id),
        "Subject": note.subject,
        # Left open while a follow-up is to come (the chat's outcome completes it).
        "Status": config.task_status_open if note.awaits_follow_up else config.task_status_done,
        "Priority": "Normal",
        "ActivityDate": iso_date(note.at),
        "Description": f"{note.body}\n\n{note_marker(note.key)}"[:32000],
    }


def _part_results(part: Mapping[str, Any] | None, expected: int) -> list[WriteResult]:
    """The records' results of one composite subrequest; a refused subrequest fails all its records."""
    if expected == 0:
        return []
    if part is None:
        raise CRMUnavailable("Salesforce's composite answer lacked a part of the write-back.")
    body = part.get("body")
    if 200 <= int(part.get("httpStatusCode", 0)) < 300 and isinstance(body, list) and len(body) == expected:
        return [_record_result(item) for item in body]
    error = body[0] if isinstance(body, list) and body and isinstance(body[0], Mapping) else {}
    status = int(part.get("httpStatusCode", 0))
    code = str(error.get("errorCode") or f"HTTP_{status}")
    failed = WriteResult(
        ok=False,
        retryable=code in RETRYABLE_CODES or status >= 500,
        message=mask_numbers(f"{code}: {error.get('message') or 'The write-back subrequest was refused.'}"),
    )
    return [failed] * expected


def _record_result(item: Mapping[str, Any]) -> WriteResult:
    if item.get("success"):
        return WriteResult(ok=True, ref=str(item["id"]) if item.get("id") else None)
    first = (item.get("errors") or [{}])[0]
    code = str(first.get("statusCode") or "UNKNOWN")
    # Salesforce can repeat the refused value (STRING_TOO_LONG): it is stored and shown, so masked.
    message = mask_numbers(f"{code}: {first.get('message') or ''}")
    return WriteResult(ok=False, retryable=code in RETRYABLE_CODES, message=message)


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
        raise CRMAuthError(
            f"Salesforce refused the session when asked to {action} ({_describe(exc)}); the access token has "
            "expired or was revoked."
        ) from exc
    except LibraryError as exc:
        code, message = _first_error(exc)
        text = f"Salesforce could not {action}: {code + ': ' if code else ''}{message}"
        if code in RETRYABLE_CODES or (isinstance(exc, SalesforceGeneralError) and exc.status >= 500):
            raise CRMUnavailable(text) from exc
        raise CRMRequestError(text) from exc
    except requests.RequestException as exc:
        raise CRMUnavailable(f"Could not reach Salesforce to {action} ({type(exc).__name__}).") from exc


def _first_error(exc: LibraryError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "")
    return "", f"HTTP {exc.status}"


def _describe(exc: LibraryError) -> str:
    code, message = _first_error(exc)
    return f"{code}: {message}" if code else message
