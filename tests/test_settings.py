from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import ConfigError
from bridge.services import load_settings, problems_for_serving
from bridge.settings import Settings

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE_URL", "DYNO")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or config/ from the working directory


def salesforce(settings: Settings) -> SalesforceSettings:
    assert isinstance(settings.crm, SalesforceSettings)
    return settings.crm


def test_the_shipped_mapping_file_states_the_built_in_defaults() -> None:
    shipped = load_settings(bridge_config=ROOT / "config" / "bridge.toml")
    built_in = load_settings()  # no config/ in the working directory: every table has its defaults
    assert shipped.file_sections() == built_in.file_sections()
    assert salesforce(shipped).file_sections() == salesforce(built_in).file_sections()


def test_without_bridge_config_the_chosen_crms_own_mapping_file_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zendesk tickets have no Salesforce fields: read with the core's defaults, its consent fields
    (Contact.DoNotCall) would name nothing and its templates fields no ticket has."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("BRIDGE_CRM", "zendesk")
    zendesk = load_settings()
    assert zendesk.bridge_config == Path("config/zendesk.toml")
    assert zendesk.consent.block_if_true == ("requester.user_fields.sms_opt_out", "requester.tags.sms_opt_out")
    assert "CaseNumber" not in zendesk.template_book().fields
    monkeypatch.setenv("BRIDGE_CRM", "salesforce")
    assert load_settings().bridge_config == Path("config/bridge.toml")


def test_a_variable_named_like_a_table_never_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGE", "hello")  # not JSON, and not the [message] table either
    monkeypatch.setenv("CONSENT", '{"block_if_true": []}')
    monkeypatch.setenv("SALESFORCE_WRITEBACK", '{"status_field": "Nope__c"}')
    settings = load_settings()
    assert settings.message.max_segments == 10
    assert settings.consent.block_if_true == ("Contact.DoNotCall", "Contact.CCAI_SMS_Opt_Out__c")
    assert salesforce(settings).writeback.status_field == "CCAI_SMS_Status__c"


def test_the_crm_is_chosen_by_name_and_an_unknown_one_lists_the_known(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(load_settings().crm, SalesforceSettings)
    monkeypatch.setenv("BRIDGE_CRM", "hubspot")
    known = r"BRIDGE_CRM: 'hubspot' is not a CRM the bridge knows \(salesforce, zendesk\)"
    with pytest.raises(ConfigError, match=known):
        load_settings()


def test_a_crm_table_key_and_a_core_one_share_the_writeback_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[writeback]\nstatus_field = "Status"\nerror_max_length = 100\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    settings = load_settings()
    assert (salesforce(settings).writeback.status_field, settings.writeback.error_max_length) == ("Status", 100)


def test_environment_lists_and_numbers_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAI_OUTBOUND_NUMBER", "(628) 555-0199")
    monkeypatch.setenv("SALESFORCE_ORG_IDS", "00D5g00000SBXRG, 00D5g00000OTHERXYZ")
    monkeypatch.setenv("BRIDGE_WEBHOOK_TOKEN", "new-token,old-token")
    monkeypatch.setenv("CCAI_SUBDOMAIN", "acme")
    monkeypatch.setenv("CCAI_DOMAIN", "uc1.ccaiplatform.com")
    settings = load_settings()
    assert settings.ccai_outbound_number == "+16285550199"
    assert salesforce(settings).org_ids == ("00D5g00000SBXRG", "00D5g00000OTHERXYZ")
    assert [t.get_secret_value() for t in salesforce(settings).webhook_token] == ["new-token", "old-token"]
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
    problems = " ".join(problems_for_serving(load_settings()))
    for name in ("CCAI_API_TOKEN", "SALESFORCE_ORG_IDS", "BRIDGE_WEBHOOK_TOKEN", "SALESFORCE_CLIENT_SECRET"):
        assert name in problems


def test_sqlite_on_heroku_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNO", "web.1")
    with pytest.raises(ConfigError, match="disk is wiped on every restart"):
        load_settings().check_storage()
    monkeypatch.setenv("BRIDGE_ALLOW_SQLITE_ON_HEROKU", "true")
    load_settings().check_storage()
    monkeypatch.setenv("BRIDGE_ALLOW_SQLITE_ON_HEROKU", "false")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/d")
    load_settings().check_storage()


def test_named_templates_are_read_from_their_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[mapping]\nlanguage_field = "Contact.Language__c"\n'
        '[templates.welcome]\nlabel = "Welcome"\ntext = "Hi {CaseNumber}"\n'
        '[templates.welcome.languages]\nes = "Hola {CaseNumber}"\n'
    )
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    book = load_settings().template_book()
    assert [t.name for t in book] == ["default", "welcome"]  # a file's [templates] replaces the built-in ones
    welcome = book.get("welcome")
    assert welcome is not None
    assert (welcome.label, sorted(welcome.languages)) == ("Welcome", ["es"])
    assert book.language_field == "Contact.Language__c"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[templates.welcome]\ntxt = "Hi"\n', "[templates] welcome.txt"),
        ('[templates.welcome]\ntext = "Hi {Case Number}"\n', "[templates.welcome]: The message template"),
        ('[templates.Welcome]\ntext = "Hi"\n', "[templates.Welcome]: a template's name"),
    ],
)
def test_a_template_table_that_cannot_work_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, named: str
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(toml)
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in str(caught.value)
