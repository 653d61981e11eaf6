"""``python -m benchmarks faults``: a long chaos run against the two promises (not a test).

A web process and several worker processes on PostgreSQL, each worker behind its own database
proxy, the simulated platforms with chats that end within a second (so CCAI's "active session"
refusal cannot hide a second SMS), and outbound messages arriving for the first part of the run.
Meanwhile, at random (seeded), a worker is paused (SIGSTOP) or killed and restarted, its database
link is held, blackholed or reset, or PostgreSQL's clock steps forward. Then everything heals and
the run waits for every acknowledged Case to be written back.

It reports what the customers got (Cases texted once, twice, never) and how long the bridge took
to settle after the last fault. The fault suites in ``tests/e2e`` prove each mechanism in seconds;
this is the long, random mix of them.
"""

from __future__ import annotations

import random
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks._procs import bridge_env, start, start_sandbox, stop, wait_until_up
from bridge.crm.salesforce.ids import to18
from bridge.errors import ConfigError
from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_WEBHOOK_TOKEN, free_port
from bridge.store import Store
from tests._faults import PgClock, pause, resume
from tests._pgproxy import PgProxy

FAULTS = ("pause", "kill", "hold", "blackhole", "reset", "clock")


def run_faults(
    *, database_url: str, workers: int, cases: int, seconds: float, seed: int, faults: tuple[str, ...] = FAULTS
) -> dict[str, Any]:
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("The fault run needs PostgreSQL: pass --database-url postgresql://...")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ConfigError(f"Unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}.")
    directory = Path(tempfile.mkdtemp(prefix="bridge-faults-"))
    schema = f"faults_{uuid.uuid4().hex[:8]}"
    admin = Store.from_url(database_url)
    with admin.db.engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    schema_url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    clock = PgClock(schema_url)
    processes: list[Popen[Any]] = []
    proxies: list[PgProxy] = []
    try:
        sandbox, info = start_sandbox(directory, latency=0.2, chat_life="selecting@0,finished@1")
        processes.append(sandbox)
        store = Store.from_url(clock.url)
        store.migrate()
        store.close()
        env = bridge_env(info, DATABASE_URL=clock.url, BRIDGE_EMBEDDED_WORKER="false", BRIDGE_POLL_SECONDS="0.5")
        port = free_port()
        processes.append(
            start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "web.log")
        )
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        fleet = _Fleet(env, directory, clock.url)
        for _ in range(workers):
            proxies.append(fleet.add(PgProxy.for_url(clock.url)))
        ids = _add_cases(info, cases)
        acked_ids: set[str] = set()
        feed = threading.Thread(target=_feed, args=(port, ids, seconds * 0.9, acked_ids), daemon=True)
        feed.start()
        chaos = _Chaos(fleet, clock, random.Random(seed), faults)
        chaos.run(seconds)
        feed.join()
        chaos.heal()
        healed = time.monotonic()
        acked = [case_id for case_id in ids if case_id in acked_ids]
        settled = _wait_written(info, acked, timeout=300)
        figures = _figures(info, ids, acked)
        figures |= {
            "faults injected": dict(chaos.injected),
            "settled after the last fault (s)": round(settled - healed, 1) if settled else "not within 300 s",
            "logs": str(directory),
        }
        return figures
    finally:
        if "fleet" in locals():
            fleet.stop()
        stop(processes)
        for proxy in proxies:
            proxy.close()
        clock.close()
        with admin.db.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


class _Fleet:
    """The worker processes, each behind its own proxy."""

    def __init__(self, env: dict[str, str], directory: Path, url: str) -> None:
        self._env = env
        self._directory = directory
        self._url = url
        self.workers: list[tuple[PgProxy, Popen[Any] | None]] = []

    def add(self, proxy: PgProxy) -> PgProxy:
        self.workers.append((proxy, None))
        self.restart(len(self.workers) - 1)
        return proxy

    def restart(self, index: int) -> None:
        proxy, _ = self.workers[index]
        env = {**self._env, "DATABASE_URL": proxy.url(self._url)}
        process = start(["worker"], env=env, log=self._directory / f"worker{index}.log")
        self.workers[index] = (proxy, process)

    def stop(self) -> None:
        stop([p for _, p in self.workers if p is not None])


class _Chaos:
    def __init__(self, fleet: _Fleet, clock: PgClock, rng: random.Random, faults: tuple[str, ...]) -> None:
        self._fleet = fleet
        self._clock = clock
        self._rng = rng
        self._faults = faults
        self._timers: list[threading.Timer] = []
        self.injected: Counter[str] = Counter()

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(self._rng.uniform(2, 6))
            kind = self._rng.choice(self._faults)
            index = self._rng.randrange(len(self._fleet.workers))
            self._inject(kind, index)
            self.injected[kind] += 1

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.start()
        self._timers.append(timer)

    def _inject(self, kind: str, index: int) -> None:
        proxy, process = self._fleet.workers[index]
        rng = self._rng
        if kind == "pause" and process is not None and process.poll() is None:
            pause(process.pid)
            self._later(rng.uniform(5, 25), lambda: resume(process.pid))
        elif kind == "kill" and process is not None:
            process.kill()
            process.wait()
            self._later(rng.uniform(1, 5), lambda: self._fleet.restart(index))
        elif kind in ("hold", "blackhole", "reset"):
            proxy.set_mode(kind)  # type: ignore[arg-type]
            self._later(rng.uniform(3, 20) if kind != "reset" else rng.uniform(1, 5), lambda: proxy.set_mode("pass"))
        elif kind == "clock":
            self._clock.step(rng.uniform(30, 120))

    def heal(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for index, (proxy, process) in enumerate(self._fleet.workers):
            proxy.set_mode("pass")
            if process is not None and process.poll() is None:
                resume(process.pid)
            else:
                self._fleet.restart(index)


def _feed(port: int, ids: list[str], seconds: float, acked: set[str]) -> None:
    """Outbound messages of 1-5 Cases spread over ``seconds``; redelivered until acknowledged, as
    Salesforce does."""
    rng = random.Random(len(ids))
    batches: list[list[str]] = []
    position = 0
    while position < len(ids):
        size = rng.randint(1, 5)
        batches.append(ids[position : position + size])
        position += size
    gap = seconds / max(1, len(batches))
    with httpx.Client(timeout=30) as client:
        for batch in batches:
            for _ in range(20):
                try:
                    answer = client.post(
                        f"http://127.0.0.1:{port}/salesforce/outbound-message",
                        params={"token": SANDBOX_WEBHOOK_TOKEN},
                        content=outbound_message(batch),
                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                    )
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    acked.update(batch)
                    break
                time.sleep(1)
            time.sleep(gap)


def _add_cases(info: dict[str, Any], count: int) -> list[str]:
    cases = [
        {
            "Id": to18(f"5005g00000F{i:04d}"),
            "CaseNumber": f"0009{i:04d}",
            "ContactMobile": f"+1 415-555-{1000 + i:04d}",
            "Owner.Type": "User",
            "Owner.Email": "ana.agent@example.com",
        }
        for i in range(count)
    ]
    with _salesforce(info) as client:
        client.post("/_sandbox/control", json={"cases": cases}).raise_for_status()
    return [c["Id"] for c in cases]


def _salesforce(info: dict[str, Any]) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(info["ca_file"]))
    return httpx.Client(base_url=info["salesforce_url"], verify=context, timeout=30)


def _wait_written(info: dict[str, Any], acked: list[str], *, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    with _salesforce(info) as client:
        while time.monotonic() < deadline:
            written = client.get("/_sandbox/state").json()["cases"]
            if all(written[c].get("CCAI_SMS_Status__c") for c in acked):
                return time.monotonic()
            time.sleep(1)
    return None


def _figures(info: dict[str, Any], ids: list[str], acked: list[str]) -> dict[str, Any]:
    chats = Counter(sms["ticket_id"] for sms in httpx.get(f"{info['ccai_url']}/_sandbox/state").json()["accepted"])
    with _salesforce(info) as client:
        written = client.get("/_sandbox/state").json()["cases"]
    return {
        "Cases posted / acknowledged": f"{len(ids)} / {len(acked)}",
        "texted once": sum(1 for c in acked if chats[c] == 1),
        "texted twice or more": sum(1 for c in ids if chats[c] > 1),
        "acknowledged, never texted": sum(1 for c in acked if chats[c] == 0),
        "Case statuses": dict(Counter(written[c].get("CCAI_SMS_Status__c") for c in acked)),
    }


def run_recovery(*, database_url: str, sends: int, lease: float) -> dict[str, Any]:
    """``python -m benchmarks recovery``: ``kill -9`` of the only worker with work in hand, beside a
    live one, with the usual lease: how long until every send it held is recorded, once when it had
    only claimed them, and once with their requests in flight at CCAI (those wait for CCAI's deadline
    before their chats are looked up, whatever the lease)."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("The recovery run needs PostgreSQL: pass --database-url postgresql://...")
    figures: dict[str, Any] = {"lease (s)": lease}
    for case, label in (("claimed", "claimed, nothing sent"), ("in_flight", "requests in flight")):
        seconds, texted, twice = _one_recovery(database_url, sends=sends, lease=lease, case=case)
        figures[f"kill -9 → all {sends} recorded, {label} (s)"] = seconds
        figures[f"texted once / twice ({label})"] = f"{texted} / {twice}"
    return figures


def _one_recovery(database_url: str, *, sends: int, lease: float, case: str) -> tuple[float | str, int, int]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-recovery-"))
    schema = f"recovery_{uuid.uuid4().hex[:8]}"
    admin = Store.from_url(database_url)
    with admin.db.engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    processes: list[Popen[Any]] = []
    try:
        sandbox, info = start_sandbox(directory, latency=0.1, chat_life="selecting@0,finished@1")
        processes.append(sandbox)
        store = Store.from_url(url)
        store.migrate()
        store.close()
        env = bridge_env(info, DATABASE_URL=url, BRIDGE_EMBEDDED_WORKER="false", BRIDGE_LEASE_SECONDS=str(lease))
        port = free_port()
        processes.append(
            start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "web.log")
        )
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        ids = _add_cases(info, sends)
        if case == "claimed":  # the victim's read of the Cases hangs: it holds them, nothing left
            with _salesforce(info) as client:
                client.post("/_sandbox/control", json={"slow_next": [{"path": "/query", "seconds": 120}]})
        else:  # CCAI takes 8 s to create each chat: the victim dies with every request under way
            httpx.post(f"{info['ccai_url']}/_sandbox/control", json={"fault": {"delay": 8}}).raise_for_status()
        victim = start(["worker"], env=env, log=directory / "victim.log")
        processes.append(victim)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/salesforce/outbound-message",
            params={"token": SANDBOX_WEBHOOK_TOKEN},
            content=outbound_message(ids),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            timeout=30,
        )
        answer.raise_for_status()
        _wait_until(lambda: _victim_holds(info, case, sends), timeout=60)
        processes.append(start(["worker"], env=env, log=directory / "survivor.log"))
        time.sleep(3)  # the survivor is up and polling
        victim.kill()
        victim.wait()
        killed = time.monotonic()
        written = _wait_written(info, ids, timeout=120)
        chats = Counter(sms["ticket_id"] for sms in httpx.get(f"{info['ccai_url']}/_sandbox/state").json()["accepted"])
        seconds: float | str = round(written - killed, 1) if written else "not within 120 s"
        return seconds, sum(1 for c in ids if chats[c] == 1), sum(1 for c in ids if chats[c] > 1)
    finally:
        stop(processes)
        with admin.db.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


def _victim_holds(info: dict[str, Any], case: str, sends: int) -> bool:
    if case == "claimed":
        with _salesforce(info) as client:
            return any("/query" in call["path"] for call in client.get("/_sandbox/state").json()["calls"])
    arrived = httpx.get(f"{info['ccai_url']}/_sandbox/state").json()["request_times"]
    return len(arrived) >= sends


def _wait_until(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s")
        time.sleep(0.1)
