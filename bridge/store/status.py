"""What running processes report about themselves, for operators and for each other.

Each worker has a row in ``workers``: a heartbeat (which also renews its leases, see
:meth:`bridge.store.sends.Sends.renew`), when its last pass succeeded, and when it stopped cleanly. Values such as
the CRM's API usage are kept in ``bridge_status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from bridge.store.database import Database
from bridge.store.schema import bridge_status, singletons, workers

# Keys of ``bridge_status``: kept here, with the table, so that a reader (the overview) and a
# writer (the worker, the chat sync) share a name without importing each other.
CHAT_SYNC_KEY = "chat_sync"
# When the store was last found to have gone back in time (bridge.store.generations), and by whom.
WENT_BACK_KEY = "store_went_back"
STREAM_KEY_PREFIX = "stream:"  # + a stream's name: how its holder last said it goes
API_USAGE_KEY = "salesforce:api_usage"  # the stored key predates other CRMs; kept so no record is orphaned

# Workers beat every few seconds; one silent this long is gone (crashed, or cut off from the store).
SILENT_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started_at: float
    beat_at: float
    stopped_at: float | None
    pass_ok_at: float | None
    pass_error: str | None
    seconds_since_beat: float
    seconds_since_pass_ok: float | None = None  # None: no pass has succeeded yet

    @property
    def alive(self) -> bool:
        return self.stopped_at is None and self.seconds_since_beat < SILENT_AFTER_SECONDS


class StatusBoard:
    """Reads and writes the ``workers`` and ``bridge_status`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def beat(self, worker_id: str, *, host: str, pid: int, pass_ok: bool | None, pass_error: str | None) -> None:
        """Record that the worker is alive; ``pass_ok`` says how its latest pass went (None: no pass yet)."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            values: dict[str, Any] = {"beat_at": now, "stopped_at": None}
            if pass_ok is not None:
                values |= {"pass_error": None if pass_ok else pass_error}
                if pass_ok:
                    values["pass_ok_at"] = now
            updated = connection.execute(update(workers).where(workers.c.id == worker_id).values(values)).rowcount
            if not updated:
                connection.execute(
                    self._db.insert(workers).values(id=worker_id, host=host[:255], pid=pid, started_at=now, **values)
                )

    def stopped(self, worker_id: str) -> None:
        with self._db.tx() as connection:
            now = self._db.now(connection)
            connection.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=now, beat_at=now))

    def forget(self, older_than: float) -> int:
        """Remove workers that have not beaten for ``older_than`` seconds (restarts add new ones)."""
        with self._db.tx() as connection:
            cutoff = self._db.now(connection) - older_than
            return int(connection.execute(delete(workers).where(workers.c.beat_at < cutoff)).rowcount)

    def workers(self, *, include_stopped: bool = False) -> list[WorkerInfo]:
        with self._db.tx() as connection:
            now = self._db.now(connection)
            rows = connection.execute(select(workers).order_by(workers.c.started_at)).mappings().all()
        found = [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                started_at=row["started_at"],
                beat_at=row["beat_at"],
                stopped_at=row["stopped_at"],
                pass_ok_at=row["pass_ok_at"],
                pass_error=row["pass_error"],
                seconds_since_beat=max(0.0, now - row["beat_at"]),
                seconds_since_pass_ok=None if row["pass_ok_at"] is None else max(0.0, now - row["pass_ok_at"]),
            )
            for row in rows
        ]
        return found if include_stopped else [w for w in found if w.alive]

    def take_lease(self, name: str, owner: str, *, seconds: float) -> bool:
        """Hold ``name`` for ``seconds`` if it is free, expired or already ours: one process at a
        time does the job the name stands for, and another takes over if the holder stops beating."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            statement = self._db.insert(singletons).values(name=name, owner=owner, until=now + seconds)
            statement = statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"owner": owner, "until": now + seconds},
                where=(singletons.c.owner == owner) | (singletons.c.until < now),
            )
            connection.execute(statement)
            holder = connection.execute(select(singletons.c.owner).where(singletons.c.name == name)).scalar_one()
        return bool(holder == owner)

    def release_lease(self, name: str, owner: str) -> None:
        """Give ``name`` back, if ``owner`` holds it: the next to ask takes it at once."""
        with self._db.tx() as connection:
            connection.execute(delete(singletons).where(singletons.c.name == name, singletons.c.owner == owner))

    def lease_holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None: nobody, or the lease ran out)."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            row = connection.execute(
                select(singletons.c.owner).where(singletons.c.name == name, singletons.c.until >= now)
            ).first()
        return None if row is None else str(row[0])

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        with self._db.tx() as connection:
            put_value(self._db, connection, key, value, now=self._db.now(connection))

    def swap(self, key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
        """Store ``new`` under ``key`` only if the value is still ``old`` (None: nothing stored yet):
        a compare-and-set, so that of several processes deciding the same thing, one wins."""
        new_text = json.dumps(dict(new), sort_keys=True)
        with self._db.tx() as connection:
            now = self._db.now(connection)
            if old is None:
                statement = self._db.insert(bridge_status).values(key=key, value=new_text, updated_at=now)
                inserted = connection.execute(
                    statement.on_conflict_do_nothing(index_elements=["key"]).returning(bridge_status.c.key)
                )
                return inserted.first() is not None
            changed = connection.execute(
                update(bridge_status)
                .where(bridge_status.c.key == key, bridge_status.c.value == json.dumps(dict(old), sort_keys=True))
                .values(value=new_text, updated_at=now)
            )
            return bool(changed.rowcount == 1)

    def with_prefix(self, prefix: str) -> list[tuple[str, dict[str, Any], float]]:
        """Every record whose key starts with ``prefix``: (key, value, when it was stored)."""
        with self._db.tx() as connection:
            rows = connection.execute(
                select(bridge_status).where(bridge_status.c.key.startswith(prefix)).order_by(bridge_status.c.key)
            ).all()
        return [(row.key, json.loads(row.value), row.updated_at) for row in rows]

    def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The value stored under ``key`` and when it was stored."""
        with self._db.tx() as connection:
            row = connection.execute(select(bridge_status).where(bridge_status.c.key == key)).first()
        return (json.loads(row.value), row.updated_at) if row else None


def put_value(db: Database, connection: Connection, key: str, value: Mapping[str, Any], *, now: float) -> None:
    """Store ``value`` under ``key`` in the caller's transaction."""
    statement = db.insert(bridge_status).values(key=key, value=json.dumps(dict(value)), updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
    )
    connection.execute(statement)
