from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.settings import FileConfig, load_settings, read_file_config

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CCAI_OUTBOUND_NUMBER", "SALESFORCE_ORG_IDS", "BRIDGE_WEBHOOK_TOKEN", "BRIDGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or config/ from the working directory


def test_the_shipped_mapping_file_states_the_built_in_defaults() -> None:
    assert read_file_config(ROOT / "config" / "bridge.toml", explicit=True) == FileConfig()


def test_environment_lists_and_numbers_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAI_OUTBOUND_NUMBER", "(628) 555-0199")
    monkeypatch.setenv("SALESFORCE_ORG_IDS", "00D5g00000SBXRG, 00D5g00000OTHERXYZ")
    monkeypatch.setenv("BRIDGE_WEBHOOK_TOKEN", "new-token,old-token")
    monkeypatch.setenv("CCAI_SUBDOMAIN", "acme")
    monkeypatch.setenv("CCAI_DOMAIN", "uc1.ccaiplatform.com")
    settings = load_settings()
    assert settings.ccai_outbound_number == "+16285550199"
    assert settings.salesforce_org_ids == ("00D5g00000SBXRG", "00D5g00000OTHERXYZ")
    assert [t.get_secret_value() for t in settings.bridge_webhook_token] == ["new-token", "old-token"]
    assert settings.ccai_base_url == "https://acme.uc1.ccaiplatform.com/apps/api/v1"
    assert "new-token" not in repr(settings)


def test_a_bad_outbound_number_stops_start_up_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAI_OUTBOUND_NUMBER", "+44 20 7946 0958")
    with pytest.raises(ConfigError, match="CCAI_OUTBOUND_NUMBER"):
        load_settings()


def test_a_broken_template_in_the_mapping_file_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[mapping]\nmessage_template = "Hi {Contact First}"\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"\{Contact First\}"):
        load_settings()


def test_an_unknown_key_in_the_mapping_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[writeback]\nchat_field = "X__c"\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    with pytest.raises(ConfigError, match="chat_field"):
        load_settings()


def test_a_named_mapping_file_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", "/nonexistent/bridge.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_serving_lists_every_missing_setting() -> None:
    missing = load_settings().missing_for_serving()
    assert "CCAI_API_TOKEN" in missing
    assert "SALESFORCE_ORG_IDS" in missing
    assert "BRIDGE_WEBHOOK_TOKEN" in missing
