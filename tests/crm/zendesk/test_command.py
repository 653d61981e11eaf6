"""``bridge zendesk ...``: the plugin's own commands, through the command line, against the account over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sandbox.zendesk_account import SANDBOX_ADMIN_EMAIL, SANDBOX_API_TOKEN
from tests._apps import Bridge, clean_environment, command_line, preserved_logging
from tests._zendesk import Account


@pytest.fixture
def bridge(
    account: Account, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Bridge]:
    account.reset()
    clean_environment(monkeypatch, tmp_path)
    for name in ("ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_CA_BUNDLE", "ZENDESK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDGE_CRM", "zendesk")
    monkeypatch.setenv("ZENDESK_URL", account.url)
    monkeypatch.setenv("ZENDESK_EMAIL", SANDBOX_ADMIN_EMAIL)
    monkeypatch.setenv("ZENDESK_API_TOKEN", SANDBOX_API_TOKEN)
    monkeypatch.setenv("ZENDESK_CA_BUNDLE", str(account.tls.ca))
    with preserved_logging():
        yield command_line(capsys)


def test_setup_prints_the_secret_or_writes_it_into_an_env_file(
    bridge: Bridge, account: Account, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=sqlite:///bridge.db\nZENDESK_WEBHOOK_SECRET=old\n")
    run = bridge("zendesk", "setup", "--url", "https://bridge.acme.example", "--env-file", str(env_file))
    assert run.code == 0, run.err
    [secret] = account.sim.signing_secrets.values()
    assert env_file.read_text() == f"DATABASE_URL=sqlite:///bridge.db\nZENDESK_WEBHOOK_SECRET={secret}\n"
    assert "Webhook 'CCAI bridge': created, calling https://bridge.acme.example/zendesk/webhook." in run.out

    again = bridge("zendesk", "setup", "--url", "https://bridge.acme.example")
    assert f"ZENDESK_WEBHOOK_SECRET={secret}" in again.out
    as_json = bridge("zendesk", "setup", "--url", "https://bridge.acme.example", "--json").json()
    assert as_json["webhook_secret"] == secret
    assert "Webhook 'CCAI bridge': exists, calling https://bridge.acme.example/zendesk/webhook." in as_json["steps"]


def test_setup_without_the_bridges_url_says_how_to_give_it(bridge: Bridge) -> None:
    run = bridge("zendesk", "setup")
    assert run.code == 2
    assert "--url or ZENDESK_WEBHOOK_URL" in run.err


def test_the_plugins_commands_are_part_of_the_command_line(bridge: Bridge) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bridge("zendesk", "--help")
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        bridge("zendesk")  # an action is required
    assert exit_info.value.code == 2
