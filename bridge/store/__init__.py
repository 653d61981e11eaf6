"""The store: the only package that speaks SQL (SQLite by default, PostgreSQL when scaled out).

:class:`Store` opens one database and hands out its tables, each behind a class of its own:

==================  ===========================================================================
``sends``           the inbox (deduplicated) and the send step's leases (:mod:`.sends`)
``writebacks``      the write-back step's claims of finished sends (:mod:`.writebacks`)
``history``         what people read: one send, lists, timelines, activity (:mod:`.history`)
``chats``           the chats being followed, and what their tickets must still be told; how a
                    CCAI state changes one chat's row is :mod:`.chat_rows`, for poll and push alike
``session_events``  events CCAI pushed, kept until applied
``opt_outs``        numbers never to be texted
``status``          worker heartbeats, singleton leases, what processes report
``health``          the facts the verdict is made of: work in hand, runs of trouble (:mod:`.health`)
``liveness``        whether the process behind a lease still runs (:mod:`.liveness`)
``generations``     each worker's count of its decisive writes: a store that went back in time
``takeovers``       sends taken from gone workers, and from a store that went back (:mod:`.takeovers`)
``streams``         CRM event streams: how far each was read, which events were seen
``lookup_evidence`` whether the chat list shows the bridge's ticket ids (:mod:`.lookup_evidence`)
==================  ===========================================================================

Beside the tables, :mod:`.wakeups`: on PostgreSQL a transaction that makes work due announces it
(``NOTIFY``), and a worker in another process listening on a session of its own starts on it at once.

Four kinds of lease fence the work, each for its own reason, all on the database's clock:

- a send's lease carries a *token* bumped by every claim; every write is fenced on it, so a worker
  that lost its claim can never overwrite the one that took over (a late success excepted);
- a write-back's lease names its *owner*, renewed by that worker's heartbeat while it holds it;
- a chat write's lease is fenced on its *until*: a later claim always ends later;
- a *singleton* lease (the chat sync, long-running inputs) names one holder at a time, taken over
  when it is not renewed.
"""

from __future__ import annotations

from bridge.store.chats import Chats
from bridge.store.database import DEFAULT_TIMEOUT_SECONDS, Clock, Database
from bridge.store.generations import Generations
from bridge.store.health import Health
from bridge.store.history import History
from bridge.store.liveness import Liveness
from bridge.store.lookup_evidence import LookupEvidence
from bridge.store.opt_outs import OptOuts
from bridge.store.sends import Sends
from bridge.store.session_events import SessionEvents
from bridge.store.status import StatusBoard
from bridge.store.streams import Streams
from bridge.store.takeovers import Takeovers
from bridge.store.writebacks import Writebacks


class Store:
    """One database and its tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.generations = Generations(db)
        self.sends = Sends(db, self.generations)
        self.takeovers = Takeovers(db, self.generations)
        self.writebacks = Writebacks(db)
        self.history = History(db)
        self.chats = Chats(db)
        self.session_events = SessionEvents(db)
        self.opt_outs = OptOuts(db)
        self.status = StatusBoard(db)
        self.health = Health(db)
        self.liveness = Liveness(db)
        self.streams = Streams(db)
        self.lookup_evidence = LookupEvidence(db)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Store:
        return cls(Database.from_url(url, clock=clock, timeout=timeout))

    def close(self) -> None:
        self.liveness.release()
        self.db.close()

    def migrate(self) -> int:
        return self.db.migrate()

    def schema_version(self) -> int:
        return self.db.schema_version()
