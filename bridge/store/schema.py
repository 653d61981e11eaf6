"""The store's tables, as the current version defines them (SQLite and PostgreSQL alike).

Times are seconds since the epoch (float), which both databases order and compare the same way.
How an older store reaches this shape is :mod:`bridge.store.migrations`; a test checks that a store
upgraded from the first release through every migration equals one created from these definitions.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

schema_version = Table(
    "bridge_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "om:<org15>:<notification id>" for outbound messages; unique, so a redelivery inserts nothing.
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("source", String(32), nullable=False),  # the door's name, for people (see model.Origin)
    # "crm_event" or "person": what the loop guard and the send window decide on. The default is
    # the safe side, for a row an older process writes during an upgrade: guarded, no window override.
    Column("origin", String(16), nullable=False, server_default="crm_event"),
    Column("org_id", String(18)),
    Column("ticket_id", String(64), nullable=False),
    # The number agents quote for the ticket when it is not its id (a CaseNumber), as the CRM last
    # answered: the dashboard shows it and finds sends by it.
    Column("ticket_number", String(40)),
    # JSON: per-send message/agent/number overrides (API and CLI sends). A full number given in the
    # request is removed once the send is final (only its masked hint is kept).
    Column("overrides", Text),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("chat_id", Text),
    Column("message", Text),  # the text sent, for the note on the ticket
    Column("end_user_hint", String(32)),  # masked number, last digits only
    Column("attempts", Integer, nullable=False, default=0),  # requests that reached the CCAI step
    Column("not_before", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    # Incremented by every claim; writes carry the token they claimed with (fencing).
    Column("lease_token", Integer, nullable=False, default=0),
    # Claims that found the send still "sending" after its lease ended (its worker died or hung).
    Column("takeovers", Integer, nullable=False, default=0),
    # True from just before a CCAI request leaves until its answer is recorded. Finding it set on a
    # job whose lease expired means its worker died mid-request: the SMS may have been sent.
    Column("inflight", Boolean, nullable=False, default=False),
    Column("may_have_sent", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("first_attempt_at", Float),
    Column("inflight_at", Float),  # when the latest CCAI request left
    Column("ambiguous_since", Float),  # when the first request whose answer was lost left
    Column("finished_at", Float),
    Column("writeback", String(16), nullable=False, default="none"),  # the ticket's fields
    Column("writeback_task", String(16), nullable=False, default="none"),  # the note (Task) on it
    Column("writeback_attempts", Integer, nullable=False, default=0),
    Column("writeback_not_before", Float),
    Column("writeback_lease_until", Float),
    Column("writeback_owner", String(64)),  # who holds the write-back lease (renewed by heartbeats)
    Column("writeback_error", Text),
    Column("case_written_at", Float),  # when this outcome landed on the ticket (the loop guard)
    # When the state the ticket should show was set (finished, or held for the send window): the
    # order in which a ticket's write-backs must land.
    Column("state_at", Float),
    Column("segments", Integer),  # how many SMS segments the text was
    Column("template", String(40)),  # the message template the text came from (None: not a template's)
    Column("template_version", String(16)),  # a hash of that template's texts when it was sent
    # The send ended opted out by what the CRM may not know (the opt-out list, CCAI's refusal).
    Column("opt_out_learned", Boolean, nullable=False, default=False),
    # The Idempotency-Key's body fingerprint (API sends), and when an operator re-queued a send.
    Column("request_hash", String(64)),
    Column("requeued_at", Float),
    Index("ix_sends_due", "status", "not_before"),
    Index("ix_sends_writeback_due", "writeback", "writeback_not_before"),
    Index("ix_sends_ticket_attempt", "ticket_id", "first_attempt_at"),
    Index("ix_sends_lease_owner", "lease_owner"),
)

# The CCAI request pacing shared by every worker, one row per CCAI tenant. ``next_slot`` is
# no request before this time (a 429's Retry-After).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("next_slot", Float, nullable=False),
)

# When each request to a CCAI tenant left, by the database's clock (the sliding window).
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("at", Float, nullable=False),  # planned
    Column("left_at", Float, nullable=True),  # when the request actually left, once known
    Index("ix_rate_events_name_at", "name", "at"),
)

# What processes report for operators and each other: the CRM's API usage, the chat sync's progress.
bridge_status = Table(
    "bridge_status",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per worker process: its heartbeat, and whether its passes succeed.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("pass_ok_at", Float),
    Column("pass_error", Text),
)


# Numbers that must never be texted (a STOP, an agent's note, CCAI's own refusal). Never purged.
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("number", String(32), primary_key=True),  # E.164: the key the list is checked by
    Column("source", String(64), nullable=False),  # who recorded it: api, cli, ccai, an agent's Flow...
    Column("note", Text),
    Column("created_at", Float, nullable=False),
)


# The chats the bridge started, followed until they end (the chat sync), and what their
# ticket must still be told.
chats = Table(
    "chats",
    metadata,
    # Keyed by id and ticket: should CCAI reuse a chat id, the new chat's news goes to its own ticket.
    Column("chat_id", Text, primary_key=True),
    Column("send_id", Integer),
    Column("ticket_id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("status", String(40)),  # CCAI's own word, verbatim
    Column("agent", Text),
    Column("ended_at", Float),
    Column("outcome", Text),
    Column("replied", Boolean, nullable=False, default=False),
    Column("no_reply", Boolean, nullable=False, default=False),
    Column("ended", Boolean, nullable=False, default=False),
    Column("ccai_updated_at", Float),  # CCAI's time of the state applied: older states are ignored
    # The time of the newest pushed session event applied: events fence each other with it, and a
    # poll older than it keeps what the push showed (except the end, which only the poll says).
    Column("pushed_at", Float),
    # The customer's number (E.164), while the chat is followed: put on the opt-out list if CCAI
    # says the customer opted out (the send itself keeps only a masked hint).
    Column("number", String(32)),
    Column("synced_at", Float),
    Column("task_ref", String(64)),  # the note created at send time, completed when the chat ends
    Column("case_pending", Boolean, nullable=False, default=False),
    Column("task_pending", Boolean, nullable=False, default=False),
    Column("case_attempts", Integer, nullable=False, default=0),
    Column("case_not_before", Float),
    Column("case_lease_until", Float),
    Column("case_error", Text),
    Index("ix_chats_open", "ended", "created_at"),
    Index("ix_chats_ticket", "ticket_id"),
    Index("ix_chats_send", "send_id"),
)

# Session events CCAI pushed, kept (deduplicated on their id) before they are acted on.
session_events = Table(
    "session_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("timestamp", Float),
    Column("payload", Text, nullable=False),
    Column("applied", Boolean, nullable=False, default=False),
    Index("ix_session_events_applied", "applied", "timestamp"),
)


# What happened to each send, in order: the timeline operators read (``bridge sends show``, the
# dashboard). Written in the same transaction as the change it records; purged with its send.
send_log = Table(
    "send_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("send_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("event", String(32), nullable=False),
    Column("detail", Text),
    Index("ix_send_log_send", "send_id", "id"),
    # The verdict reads the last minutes of every timeline (bridge.store.health).
    Index("ix_send_log_at", "at"),
)


# Jobs exactly one process does at a time (the chat sync, long-running inputs), by lease on the
# database's clock.
singletons = Table(
    "singletons",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("until", Float, nullable=False),
)


# v11: each worker's count of the decisive writes it made (a send cleared to leave), kept here and in
# the worker's memory: a store holding fewer than the worker counted went back in time (a failover
# to a replica that was behind, a restore).
generations = Table(
    "generations",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("generation", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
# Where each CRM event stream (the Salesforce Pub/Sub topic) has been read to: an opaque position
# (a replay id, base64; none until the first event), written in the same transaction as the sends its
# events became, and when the bridge first subscribed (what "only new events" counts from).
stream_positions = Table(
    "stream_positions",
    metadata,
    Column("stream", String(200), primary_key=True),
    Column("position", Text),
    Column("started_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Each streamed event's own id (Salesforce's EventUuid), so that an event delivered again (a replay
# after a crash or a refused position) is recognised. Kept a week: a stream replays 72 hours at most.
stream_events = Table(
    "stream_events",
    metadata,
    Column("stream", String(200), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
    Index("ix_stream_events_received", "received_at"),
)

# v13: what the chat list showed of the chats the bridge created: whether it carried the ticket id the
# bridge sent, and how soon (see bridge.lookup_proof). No number or text of the customer's is kept.
lookup_evidence = Table(
    "lookup_evidence",
    metadata,
    Column("chat_id", Text, primary_key=True),
    Column("sent_at", Float, nullable=False),  # when the bridge recorded the chat (the store's clock)
    Column("first_seen_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("carried_at", Float),  # first seen carrying our ticket id
    Column("other", Boolean, nullable=False, default=False),  # seen carrying another ticket id
    Index("ix_lookup_evidence_sent", "sent_at"),
)
