"""The command line follows the conventions people expect: help when called bare, a description,
examples and exit statuses for every command, --json on every command that reports, shell
completion, --since/--until, opt-outs check, retries planned before they are made, and checks that
never create anything."""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path

import pytest

from bridge.model import NewSend, Outcome
from bridge.ops._help import DOCS, commands
from bridge.ops.cli import _parser
from bridge.sandbox.cases import sample_cases
from bridge.store import Store
from tests._apps import Bridge, clean_environment, command_line
from tests._clock import Clock

MOBILE, NATIONAL, _, UK = (c["Id"] for c in sample_cases()[:4])
UK_REASON = "The Case's ContactMobile (********0958) is a GB number; only US numbers can be texted."
# Commands that report something: each takes --json. The long-running ones log (LOG_FORMAT) instead.
LONG_RUNNING = {"serve", "worker", "sandbox", "sample-message", "completion", "sandbox fault"}


@pytest.fixture
def bridge(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bridge:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bridge.db'}")
    return command_line(capsys)


@pytest.fixture
def store(tmp_path: Path, bridge: Bridge) -> Store:
    s = Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}")
    s.migrate()
    return s


def finished(store: Store, case_id: str, outcome: Outcome) -> int:
    new = NewSend(dedupe_key=f"cli:{uuid.uuid4().hex}", source="cli", origin="person", ticket_id=case_id)
    send_id = store.sends.create(new).id
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, outcome, token=job.token, create_task=False)
    return send_id


def test_bare_bridge_and_a_bare_group_print_their_help(bridge: Bridge) -> None:
    bare = bridge()
    assert bare.code == 2
    assert bare.out.startswith("usage: bridge")
    assert "`bridge COMMAND --help`" in bare.out
    group = bridge("sends")
    assert group.code == 2
    assert "usage: bridge sends" in group.out


def test_every_command_has_a_description_examples_and_exit_statuses() -> None:
    parser = _parser()
    leaves = [(path, sub) for path, sub, _ in commands(parser) if path in DOCS or not list(commands(sub))]
    assert {path for path, _ in leaves} == set(DOCS)
    for path, sub in leaves:
        text = sub.format_help()
        assert sub.description, path
        assert "examples:\n  " in text, path
        assert "exit status:\n  0  " in text, path
        for example in DOCS[path].examples:
            words = shlex.split(example.split("<(")[-1].rstrip(")").split(" > ")[0])
            assert words[0] == "bridge", example
            parser.parse_args(words[1:])  # exits (fails the test) on an option that does not exist


def test_every_reporting_command_takes_json() -> None:
    for path, sub, _ in commands(_parser()):
        if path in DOCS and path not in LONG_RUNNING:
            assert any("--json" in action.option_strings for action in sub._actions), path


def test_sends_list_since_and_until(bridge: Bridge, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    old = Store.from_url(url, clock=Clock(time.time() - 3 * 3600))
    old.migrate()
    early = finished(old, MOBILE, Outcome(status="failed", reason="x", write_back=False))
    old.close()
    recent = finished(Store.from_url(url), NATIONAL, Outcome(status="failed", reason="y", write_back=False))
    assert [r["id"] for r in bridge("sends", "list", "--since", "2h", "--json").json()] == [recent]
    assert [r["id"] for r in bridge("sends", "list", "--until", "1h", "--json").json()] == [early]
    with pytest.raises(SystemExit) as refused:
        bridge("sends", "list", "--since", "last tuesday")
    assert refused.value.code == 2


def test_opt_outs_check_says_and_exits_0_when_listed(bridge: Bridge, store: Store) -> None:
    store.opt_outs.add("+14155550100", source="agent", note="said stop")
    listed = bridge("opt-outs", "check", "(415) 555-0100")
    assert listed.code == 0
    assert "*******0100 is on the opt-out list since" in listed.out
    assert "from agent (said stop)" in listed.out
    absent = bridge("opt-outs", "check", "415-555-0199", "--json")
    assert (absent.code, absent.json()["opted_out"]) == (1, False)
    assert "555-0199" not in absent.out


def test_a_bulk_retry_is_planned_first_and_skips_what_a_retry_cannot_fix(bridge: Bridge, store: Store) -> None:
    uk = finished(store, UK, Outcome(status="failed", reason=UK_REASON, write_back=False))
    gone = finished(
        store, NATIONAL, Outcome(status="failed", reason="The Case was not found in Salesforce.", write_back=False)
    )
    fixable = finished(store, MOBILE, Outcome(status="failed", reason="Gave up after 1 hour: 503", write_back=False))
    plan = bridge("sends", "retry", "--status", "failed", "--dry-run", "--json").json()
    assert plan["would_retry"] == 1
    why = {row["id"]: row["why_not"] for row in plan["sends"]}
    assert why[fixable] is None
    assert why[uk] == "a retry cannot help: the number cannot be texted (not a US number)"
    assert "no longer exists" in why[gone]
    assert {r.status for r in store.history.find()} == {"failed"}  # a dry run changes nothing
    done = bridge("sends", "retry", "--status", "failed")
    assert "1 failed send(s) queued again." in done.out
    assert store.history.get(fixable).status == "queued"  # type: ignore[union-attr]
    assert store.history.get(uk).status == "failed"  # type: ignore[union-attr]


def test_check_never_creates_a_store(bridge: Bridge, tmp_path: Path) -> None:
    result = bridge("check", "--json")
    assert result.code == 1
    store = next(f for f in json.loads(result.out) if f["area"] == "Store")
    assert "there is no bridge store" in store["detail"]
    assert not (tmp_path / "bridge.db").exists()


def test_migrate_reports_as_json(bridge: Bridge) -> None:
    assert bridge("migrate", "--json").json()["schema_version"] >= 9
