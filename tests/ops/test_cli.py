"""The ``bridge`` command in-process (``main([...])``): start-up refusals, migrate, sample messages.
The operator commands are in ``test_admin.py``; against running servers in ``tests/e2e/test_cli_wire.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.crm.salesforce.outbound_message import parse_outbound_message
from bridge.ops.cli import main, sandbox_settings
from bridge.sandbox.cases import SANDBOX_ORG_ID, sample_cases
from bridge.services import load_settings
from bridge.store.migrations import latest_version
from tests._apps import clean_environment


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_environment(monkeypatch, tmp_path)


def test_serve_without_configuration_lists_what_is_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name in ("CCAI_API_TOKEN", "SALESFORCE_ACCESS_TOKEN", "SALESFORCE_ORG_IDS", "BRIDGE_WEBHOOK_TOKEN"):
        assert name in err
    assert "bridge serve --sandbox" in err
    assert list(tmp_path.iterdir()) == []  # no store made for a server that never started


def test_an_invalid_value_is_named_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCAI_OUTBOUND_NUMBER", "12345")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "CCAI_OUTBOUND_NUMBER" in err
    assert "Traceback" not in err


def test_the_worker_without_configuration_lists_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "CCAI_API_TOKEN" in err
    assert "BRIDGE_WEBHOOK_TOKEN" not in err  # a worker has no door to protect


def test_migrate_creates_the_store_and_is_repeatable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    for _ in range(2):
        assert main(["migrate"]) == 0
        assert capsys.readouterr().out == f"Store schema is at version {latest_version()}.\n"
    assert (tmp_path / "x.db").exists()


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://x.db"])
def test_migrate_refuses_an_unknown_database_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL" in err
    assert "Traceback" not in err


def test_sample_message_prints_a_valid_outbound_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample-message"]) == 0
    org_id, notes = parse_outbound_message(capsys.readouterr().out.encode())
    assert org_id == SANDBOX_ORG_ID
    assert [n.ticket_id for n in notes] == [c["Id"] for c in sample_cases()[:3]]


def test_sample_message_for_chosen_cases(capsys: pytest.CaptureFixture[str]) -> None:
    case = sample_cases()[3]["Id"]
    assert main(["sample-message", "--case", case[:15], "--org", "00D5g00000OTHER"]) == 0
    org_id, notes = parse_outbound_message(capsys.readouterr().out.encode())
    assert (org_id, [n.ticket_id for n in notes]) == ("00D5g00000OTHER", [case])


def test_the_environment_wins_over_the_sandboxs_demo_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = {"bridge_send_window": "off", "bridge_chat_sync_seconds": 5, "ccai_base_url": "http://127.0.0.1:1/x"}
    assert sandbox_settings(defaults, chosen=set()) == defaults
    monkeypatch.setenv("BRIDGE_SEND_WINDOW", "08:00-21:00")
    monkeypatch.setenv("CCAI_BASE_URL", "https://acme.uc1.ccaiplatform.com/apps/api/v1")
    chosen = load_settings().model_fields_set
    kept = sandbox_settings(defaults, chosen=chosen)
    assert "bridge_send_window" not in kept  # the Hawaii number at 06:31 is held, as asked
    assert kept["ccai_base_url"] == "http://127.0.0.1:1/x"  # the sandbox never texts through a real tenant
    assert load_settings(**kept).bridge_send_window == "08:00-21:00"
