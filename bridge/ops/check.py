"""``bridge check``: verify a configuration end to end without texting anyone.

CCAI is probed with a request whose message is empty: CCAI refuses it ("message is required")
before creating a chat, and only after accepting the credentials and the numbers, so reaching that
refusal proves the endpoint, the API token and the outbound number together.
"""

from __future__ import annotations

import anyio.to_thread

from bridge.ccai.pacing import LocalRateLimiter
from bridge.crm.plugin import CheckContext, CRMPlugin, load_plugin
from bridge.errors import BridgeError, CCAIRejected
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
    if settings.ccai_base_url and settings.ccai_outbound_number:
        findings.append(await _check_ccai(settings))
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
