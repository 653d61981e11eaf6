"""Group commit: ingests that arrive while a commit is under way share the next transaction (one
flush to disk for all), each caller returns only after the commit holding its rows, and one
caller's refused data fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.errors import StoreRejected
from bridge.model import NewSend
from bridge.store import Store
from bridge.store._group_commit import GroupCommit


class Recorder:
    def __init__(self) -> None:
        self.transactions: list[list[Sequence[str]]] = []
        self.committed: set[str] = set()
        self.first_started = threading.Event()
        self.release_first = threading.Event()

    def commit(self, groups: list[Sequence[str]]) -> list[int]:
        self.transactions.append(groups)
        if len(self.transactions) == 1:
            self.first_started.set()
            assert self.release_first.wait(5)
        if any("bad" in item for group in groups for item in group):
            raise StoreRejected("refused")
        self.committed.update(item for group in groups for item in group)
        return [len(group) for group in groups]


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    recorder = Recorder()
    group: GroupCommit[str] = GroupCommit(recorder.commit)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, ["a"])
        assert recorder.first_started.wait(5)
        others = [pool.submit(group.submit, [f"b{i}", f"c{i}"]) for i in range(5)]
        while len(group._queue) < 5:  # all five queued behind the commit under way
            threading.Event().wait(0.01)
        assert not any(f.done() for f in others)  # nobody returns before its own commit
        recorder.release_first.set()
        assert first.result() == 1
        assert [f.result() for f in others] == [2] * 5
    assert [len(t) for t in recorder.transactions] == [1, 5]  # two transactions for six callers
    assert len(recorder.committed) == 11


def test_refused_data_fails_only_its_own_caller() -> None:
    recorder = Recorder()
    group: GroupCommit[str] = GroupCommit(recorder.commit)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, ["a"])
        assert recorder.first_started.wait(5)
        good = pool.submit(group.submit, ["g"])
        bad = pool.submit(group.submit, ["bad"])
        while len(group._queue) < 2:
            threading.Event().wait(0.01)
        recorder.release_first.set()
        assert (first.result(), good.result()) == (1, 1)
        with pytest.raises(StoreRejected):
            bad.result()
    assert recorder.committed == {"a", "g"}


def test_concurrent_ingests_store_each_key_once_and_count_it_once(store: Store) -> None:
    def send(key: str) -> NewSend:
        return NewSend(dedupe_key=key, source="outbound_message", origin="crm_event", ticket_id="5005g000001TkZ3AAK")

    batches = [[send(f"k{i}"), send(f"k{i + 1}"), send("shared")] for i in range(0, 40, 2)]
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(store.sends.ingest, batches))
    assert sum(counts) == 41  # k0..k40 and "shared", each counted for one caller only
    assert store.sends.ingest(batches[0]) == 0
