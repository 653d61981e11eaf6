"""``bridge check``: verify a configuration end to end without texting anyone.

CCAI is probed with a request whose message is empty: CCAI refuses it ("message is required")
before creating a chat, and only after accepting the credentials and the numbers, so reaching that
refusal proves the endpoint, the API token and the outbound number together. The Manager API's chat
list (which the chat sync and the lost-answer lookup read) is read with the same credentials, and
the chats the bridge created that it lists show whether this tenant carries our ticket id (the
lookup's proof, :mod:`bridge.lookup_proof`). Nothing goes over the network while CCAI's settings
are incomplete, and nothing is written anywhere.
"""

from __future__ import annotations

import time

import anyio.to_thread

from bridge import lookup_proof
from bridge.ccai.client import ListedChat
from bridge.ccai.pacing import LocalRateLimiter
from bridge.crm.plugin import CheckContext, CRMPlugin, load_plugin
from bridge.errors import BridgeError, CCAIRejected, CCAIUnavailable
from bridge.model import Finding, SmsRequest
from bridge.services import ccai_client, problems_for_serving, ticket_mapper
from bridge.settings import Settings
from bridge.store import Store
from bridge.store.database import sqlite_path
from bridge.store.migrations import latest_version

# A fictional number (555-01xx is reserved for fiction); the probe's empty message is refused anyway.
PROBE_NUMBER = "+12015550123"


async def run_checks(settings: Settings) -> list[Finding]:
    crm = load_plugin(settings.bridge_crm)
    findings = [_check_settings(settings, crm)]
    findings.append(await anyio.to_thread.run_sync(_check_store, settings))
    missing = ccai_missing(settings)
    if missing:
        findings.append(Finding("CCAI", False, f"not probed: {', '.join(missing)} not set"))
    else:
        findings.append(await _check_ccai(settings))
        findings.extend(await _check_chat_list(settings))
    context = CheckContext(
        ticket_fields=(*ticket_mapper(settings, crm.words).fields, *settings.consent.block_if_true),
        block_if_true=settings.consent.block_if_true,
        create_notes=settings.writeback.create_task,
        templates=settings.template_book(),
        public_url=settings.bridge_public_url,
    )
    findings.extend(await crm.checks(settings.crm, context))
    return findings


def _check_settings(settings: Settings, crm: CRMPlugin) -> Finding:
    problems = problems_for_serving(settings)
    if problems:
        return Finding("Settings", False, " ".join(problems))
    detail = f"complete; {crm.describe(settings.crm)}"
    if not settings.bridge_api_key:
        detail += "; the send API is off (BRIDGE_API_KEY is empty)"
    return Finding("Settings", True, detail)


def _check_store(settings: Settings) -> Finding:
    where = settings.redacted_database_url()
    sqlite_file = sqlite_path(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        # Connecting would create an empty file: checking must never change anything.
        return Finding("Store", False, f"there is no bridge store at {where}: run `bridge migrate`.")
    store = Store.from_url(settings.database_url, timeout=settings.bridge_store_timeout_seconds)
    try:
        version = store.schema_version()
    except BridgeError as exc:
        return Finding("Store", False, f"{where}: {exc}")
    finally:
        store.close()
    if version < latest_version():
        return Finding("Store", False, f"{where} is at schema version {version}; run `bridge migrate`.")
    return Finding("Store", True, f"{where} at schema version {version}")


async def _check_ccai(settings: Settings) -> Finding:
    client = ccai_client(settings, LocalRateLimiter(settings.ccai_rate_limit))
    probe = SmsRequest(
        end_user_number=PROBE_NUMBER,
        outbound_number=settings.ccai_outbound_number,
        message="",
        chat_type=settings.ccai_chat_type,
    )
    try:
        chat = await client.send(probe)
    except CCAIRejected as exc:
        if exc.message == "message is required":
            return Finding(
                "CCAI", True, f"{settings.ccai_base_url}: credentials, chat type and outbound number accepted"
            )
        if "outbound_number" in exc.message:
            return Finding("CCAI", False, f"CCAI refused CCAI_OUTBOUND_NUMBER: {exc.message}")
        return Finding("CCAI", False, f"CCAI refused the probe: {exc.message}")
    except BridgeError as exc:
        return Finding("CCAI", False, str(exc))
    finally:
        await client.aclose()
    return Finding("CCAI", False, f"CCAI accepted a probe with an empty message (chat {chat.id}); please report this.")


def ccai_missing(settings: Settings) -> list[str]:
    """The CCAI settings a probe needs and that are empty."""
    required = {
        "CCAI_SUBDOMAIN": settings.ccai_subdomain,
        "CCAI_API_TOKEN": settings.ccai_api_token.get_secret_value(),
        "CCAI_BASE_URL": settings.ccai_base_url,
        "CCAI_OUTBOUND_NUMBER": settings.ccai_outbound_number,
    }
    return [name for name, value in required.items() if not value]


# How far back ``bridge check`` looks for chats the bridge created.
RECENT_SECONDS = 7 * 86400.0


async def _check_chat_list(settings: Settings) -> list[Finding]:
    """The chat list read with the configured credentials, and the lookup's proof as it stands."""
    client = ccai_client(settings, LocalRateLimiter(settings.ccai_rate_limit))
    where = client.chat_list_url
    try:
        listed = await client.recent_chats(since=time.time() - RECENT_SECONDS)
    except CCAIUnavailable as exc:
        return [Finding("CCAI chat list", False, f"{where}: {_why(exc)}")]
    finally:
        await client.aclose()
    found = Finding("CCAI chat list", True, f"{where}: read, {len(listed)} chat(s) created in the last 7 days")
    return [found, await anyio.to_thread.run_sync(lambda: _check_lookup(settings, listed))]


def _why(exc: CCAIUnavailable) -> str:
    text = str(exc)
    if "HTTP 401" in text or "HTTP 403" in text:
        return f"{text} The credentials were refused: check CCAI_SUBDOMAIN and CCAI_API_TOKEN."
    if "HTTP 404" in text:
        return f"{text} No chat list there: check CCAI_MANAGER_URL (or CCAI_BASE_URL's host)."
    return text


def _check_lookup(settings: Settings, listed: list[ListedChat]) -> Finding:
    """Whether the chats the bridge created carry its ticket id in the list, and the stored proof."""
    sqlite_file = sqlite_path(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        return Finding("Lost-answer lookup", False, "no store yet: nothing to compare the chat list with")
    store = Store.from_url(settings.database_url, timeout=settings.bridge_store_timeout_seconds)
    try:
        ours = store.lookup_evidence.ours([chat.id for chat in listed])
        proof = lookup_proof.judge(store.lookup_evidence.recent())
    except BridgeError as exc:
        return Finding("Lost-answer lookup", False, f"the store cannot be read: {exc}")
    finally:
        store.close()
    mine = [chat for chat in listed if chat.id in ours]
    carrying = [chat for chat in mine if chat.out_ticket_id == ours[chat.id]]
    now = f"the list shows {len(mine)} chat(s) the bridge created, {len(carrying)} carrying its ticket id" + (
        f" (e.g. chat {carrying[0].id})" if carrying else (f" (chat {mine[0].id} does not)" if mine else "")
    )
    detail = f"{proof.state}: {proof.detail}; {now}"
    if not proof.trusted:
        detail += ". Until proven, a lost answer ends Unknown and is not sent again"
    return Finding("Lost-answer lookup", proof.state != "contradicted" and len(carrying) == len(mine), detail)
