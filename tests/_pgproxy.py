"""A TCP proxy between bridge processes and PostgreSQL that misbehaves on request.

Modes, for every connection at once:

- ``pass``: bytes flow both ways;
- ``blackhole``: bytes are read and thrown away (the peer's kernel acknowledged them, so TCP never
  notices: a middlebox that lost its state, or a hung server);
- ``hold``: bytes are kept, then delivered in order when the mode changes (a partition that heals);
- ``reset``: every connection is ended with a TCP RST, and new ones too while the mode lasts.

Triggers, armed once, read the client's messages (the simple and the extended query protocol):

- :meth:`PgProxy.hold_after_commit`: the next ``COMMIT`` of a transaction that ran a statement
  matching a pattern is forwarded, then every connection is held for some seconds: the server
  committed, the client does not know yet (a worker stalled right after its write landed);
- :meth:`PgProxy.cut_after_commit`: the same ``COMMIT`` is forwarded, its answer thrown away and the
  client reset: a commit whose answer was lost.

:meth:`PgProxy.failover` points new connections elsewhere (their startup parameters rewritten, e.g.
another schema in ``options``) and resets the existing ones, as a promoted replica takes over.
Every trigger that fires is recorded as an event tests can wait for.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["pass", "blackhole", "hold", "reset"]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


@dataclass
class _Trigger:
    kind: Literal["hold", "cut"]
    pattern: re.Pattern[str]
    seconds: float = 0.0


@dataclass
class Event:
    kind: str
    at: float
    detail: str = ""


@dataclass
class _Link:
    """One client connection and its server connection."""

    number: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    held: list[tuple[asyncio.StreamWriter, bytes]] = field(default_factory=list)
    matched: str | None = None  # the armed pattern a statement of the open transaction matched
    cut_answer: bool = False  # throw the server's next answer away and reset the client

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]


class PgProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target``. Thread-safe controls."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pgproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: dict[int, _Link] = {}
        self._next = 0
        self._mode: Mode = "pass"
        self._trigger: _Trigger | None = None
        self._rewrite: dict[str, str] = {}
        self._events: list[Event] = []
        self._pumps: set[asyncio.Future[None]] = set()
        self._changed = threading.Condition()
        self.port = 0

    @classmethod
    def for_url(cls, url: str) -> PgProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432).start()

    def start(self) -> PgProxy:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop)
        self._server = server.result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL) pointed at this proxy."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links.values()):
                for writer in link.writers():
                    writer.close()
            pumps = list(self._pumps)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await asyncio.sleep(0.05)  # the connection handlers see their pumps end and return

        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- controls ---------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        self._call_soon(lambda: self._switch(mode))

    def hold_after_commit(self, pattern: str, seconds: float) -> None:
        """Forward the next COMMIT of a transaction that ran a statement matching ``pattern``, then
        hold every connection for ``seconds``."""
        self._call_soon(lambda: setattr(self, "_trigger", _Trigger("hold", re.compile(pattern), seconds)))

    def cut_after_commit(self, pattern: str) -> None:
        """Forward the next such COMMIT, throw its answer away and reset that client."""
        self._call_soon(lambda: setattr(self, "_trigger", _Trigger("cut", re.compile(pattern))))

    def failover(self, rewrite: dict[str, str]) -> None:
        """Reset every connection; new ones carry startup parameters with each key of ``rewrite``
        replaced by its value (e.g. a schema name in ``options``)."""

        def switch() -> None:
            self._rewrite = dict(rewrite)
            for link in list(self._links.values()):
                self._reset(link)
            self._record("failover", str(rewrite))

        self._call_soon(switch)

    def events(self, kind: str | None = None) -> list[Event]:
        with self._changed:
            return [e for e in self._events if kind is None or e.kind == kind]

    def wait_for(self, kind: str, *, timeout: float = 20.0) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self._events if e.kind == kind]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the proxy saw no {kind!r} event in {timeout} s")
                self._changed.wait(left)

    # -- the loop's side --------------------------------------------------------------------

    def _call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def _call_soon(self, function: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                function()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(timeout=10)

    def _record(self, kind: str, detail: str = "") -> None:
        with self._changed:
            self._events.append(Event(kind, time.time(), detail))
            self._changed.notify_all()

    def _switch(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "reset":
            for link in list(self._links.values()):
                self._reset(link)
        if mode != "hold":
            for link in list(self._links.values()):
                held, link.held = link.held, []
                for writer, data in held:
                    if mode == "pass" and not writer.is_closing():
                        writer.write(data)
        self._record("mode", mode)

    def _reset(self, link: _Link) -> None:
        for writer in link.writers():
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._links.pop(link.number, None)

    def _deliver(self, link: _Link, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self._mode == "pass" and not link.held:
            writer.write(data)
        elif self._mode in ("hold", "pass"):
            link.held.append((writer, data))
        # blackhole: dropped; reset: the link is being torn down

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next += 1
        link = _Link(number=self._next, client=writer)
        if self._mode == "reset":
            self._reset(link)
            return
        self._links[link.number] = link
        try:
            startup = await self._startup(reader, writer)
            if startup is None:
                return
            server_reader, server_writer = await asyncio.open_connection(*self._target)
            link.server = server_writer
            self._deliver(link, server_writer, startup)
            pumps = [
                asyncio.ensure_future(self._upstream(link, reader)),
                asyncio.ensure_future(self._downstream(link, server_reader)),
            ]
            self._pumps.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._links.pop(link.number, None)
            for w in link.writers():
                w.close()

    async def _startup(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        """The client's startup message (rewritten); SSL and GSS encryption requests are declined
        here, so that the rest of the conversation is readable."""
        while True:
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
            code = struct.unpack("!i", body[:4])[0]
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                writer.write(b"N")
                continue
            if code == _CANCEL_REQUEST:
                _, server_writer = await asyncio.open_connection(*self._target)
                server_writer.write(struct.pack("!i", length) + body)
                await server_writer.drain()
                server_writer.close()
                return None
            return self._rewritten(body)

    def _rewritten(self, body: bytes) -> bytes:
        fields = body[4:].split(b"\0")
        for index in range(1, len(fields), 2):
            value = fields[index].decode()
            for old, new in self._rewrite.items():
                value = value.replace(old, new)
            fields[index] = value.encode()
        payload = body[:4] + b"\0".join(fields)
        return struct.pack("!i", len(payload) + 4) + payload

    async def _upstream(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Client to server, a message at a time, watching for the armed trigger."""
        assert link.server is not None
        while True:
            header = await reader.readexactly(5)
            kind, length = header[:1], struct.unpack("!i", header[1:])[0]
            body = await reader.readexactly(length - 4)
            query = _query_text(kind, body)
            fire = None
            if query is not None:
                fire = self._watch(link, query)
            self._deliver(link, link.server, header + body)
            if fire is not None:
                self._fire(link, fire)
            if kind == b"X":
                return

    def _watch(self, link: _Link, query: str) -> _Trigger | None:
        trigger = self._trigger
        words = query.strip().upper()
        if words.startswith(("COMMIT", "ROLLBACK")):
            matched, link.matched = link.matched, None
            if trigger is not None and matched is not None and words.startswith("COMMIT"):
                self._trigger = None
                return trigger
            return None
        if trigger is not None and trigger.pattern.search(query):
            link.matched = trigger.pattern.pattern
        return None

    def _fire(self, link: _Link, trigger: _Trigger) -> None:
        if trigger.kind == "cut":
            link.cut_answer = True
            self._record("commit", f"cut link {link.number}")
            return
        self._switch("hold")
        self._record("commit", f"held for {trigger.seconds} s after link {link.number}")
        self._loop.call_later(trigger.seconds, lambda: self._switch("pass") if self._mode == "hold" else None)

    async def _downstream(self, link: _Link, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                link.client.close()
                return
            if link.cut_answer:
                self._reset(link)
                return
            self._deliver(link, link.client, data)


def _query_text(kind: bytes, body: bytes) -> str | None:
    """The SQL of a simple query ('Q') or of a statement being parsed ('P')."""
    if kind == b"Q":
        return body.rstrip(b"\0").decode(errors="replace")
    if kind == b"P":
        _name, _, rest = body.partition(b"\0")
        return rest.partition(b"\0")[0].decode(errors="replace")
    return None
