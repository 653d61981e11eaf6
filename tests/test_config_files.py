"""The configuration files people copy agree with the code: ``config/.env.example`` is what the
settings classes and the README generate (it never drifts), and ``config/bridge.toml`` documents
every key of every table, with its default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bridge.crm import CRMS
from bridge.crm.plugin import load_plugin
from bridge.ops.env_example import render, variables
from bridge.services import load_settings
from bridge.settings import FileBacked, Settings, section_fields
from tests._apps import clean_environment

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "config" / ".env.example"
TOML = ROOT / "config" / "bridge.toml"


def test_the_env_example_is_generated_from_the_settings() -> None:
    assert EXAMPLE.read_text() == render(), (
        "config/.env.example is out of date: python -m bridge.ops.env_example > config/.env.example"
    )


def test_the_env_example_names_every_setting_and_only_settings() -> None:
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.M))
    assert {v.name for v in variables()} == named
    assert {"BRIDGE_ALERT_WEBHOOK_URL", "SALESFORCE_PRIVATE_KEY_FILE", "CCAI_MAX_CONCURRENCY"} <= named
    assert all(v.purpose for v in variables()), [v.name for v in variables() if not v.purpose]


def test_the_env_example_as_it_is_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_environment(monkeypatch, tmp_path)
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    settings = load_settings()  # every value it offers parses
    assert settings.ccai_subdomain == "acme"


def test_a_drifted_example_is_caught() -> None:
    readme = (ROOT / "README.md").read_text().replace("| `BRIDGE_RETENTION_DAYS` |", "| `BRIDGE_RETENTION_DAYZ` |")
    assert render(readme) != EXAMPLE.read_text()


@pytest.mark.parametrize("crm", sorted(CRMS))
def test_each_crms_mapping_file_documents_every_key(crm: str) -> None:
    plugin = load_plugin(crm)
    path = ROOT / plugin.default_config
    shipped = tomllib.loads(path.read_text())
    models: list[type[FileBacked]] = [Settings, plugin.settings_model]
    for model in models:
        # The core's defaults are Salesforce's (config/bridge.toml states them); another CRM's file
        # documents every core key with its own values, and its own tables with their defaults.
        states_defaults = crm == "salesforce" or model is plugin.settings_model
        for table in section_fields(model):
            annotation = model.model_fields[table].annotation
            assert isinstance(annotation, type)
            defaults = annotation()
            for key in annotation.model_fields:
                assert key in shipped.get(table, {}), f"[{table}] {key} is not in {path.name}"
                if not states_defaults:
                    continue
                default = getattr(defaults, key)
                shown = shipped[table][key]
                assert (list(default) if isinstance(default, tuple) else default) == shown, f"[{table}] {key}"
