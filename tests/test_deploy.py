"""The files a host reads (Procfile, app.json) agree with the code."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.ops.cli import _parser
from bridge.services import environment_names

ROOT = Path(__file__).parents[1]


def test_procfile_processes_are_commands_the_cli_accepts() -> None:
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(processes) == {"web", "worker", "release"}
    for command in processes.values():
        words = command.replace("$PORT", "8000").split()
        assert words[0] == "bridge"
        _parser().parse_args(words[1:])  # exits (fails the test) on an unknown option


def test_app_json_describes_only_real_settings_and_provisions_postgres() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    known = environment_names()
    assert set(app["env"]) <= known, set(app["env"]) - known
    assert any(addon["plan"].startswith("heroku-postgresql") for addon in app["addons"])
    assert set(app["formation"]) == {"web", "worker"}
    assert (ROOT / ".python-version").read_text().strip().startswith("3.")


# Heroku's app.json schema (devcenter.heroku.com/articles/app-json-schema; the limits of Heroku's own
# validator: a name of at most 30 characters, a description of at most 140).
APP_JSON_KEYS = {
    "name", "description", "keywords", "website", "repository", "logo", "success_url", "scripts", "env",
    "formation", "addons", "buildpacks", "environments", "stack", "image",
}  # fmt: skip
ENV_KEYS = {"description", "value", "required", "generator"}
DYNO_SIZES = {"eco", "basic", "standard-1x", "standard-2x", "performance-m", "performance-l"}


def test_app_json_follows_herokus_schema() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert set(app) <= APP_JSON_KEYS, set(app) - APP_JSON_KEYS
    assert 3 <= len(app["name"]) <= 30
    assert len(app["description"]) <= 140
    for name, spec in app["env"].items():
        assert set(spec) <= ENV_KEYS, name
        assert spec.get("generator", "secret") == "secret", name
        assert isinstance(spec.get("value", ""), str), name
    for process, spec in app["formation"].items():
        assert isinstance(spec["quantity"], int), process
        assert spec["quantity"] >= 0, process
        assert spec["size"] in DYNO_SIZES, process


def test_the_deploy_button_lands_on_the_dashboard_with_a_password_the_deployer_can_read() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert app["success_url"] == "/dashboard"
    password = app["env"]["BRIDGE_DASHBOARD_PASSWORD"]
    assert password["generator"] == "secret"
    assert "heroku config:get BRIDGE_DASHBOARD_PASSWORD" in password["description"]
    readme = (ROOT / "README.md").read_text()
    assert "[![Deploy to Heroku](https://www.herokucdn.com/deploy/button.svg)](https://www.heroku.com/deploy" in readme
    assert "heroku config:get BRIDGE_DASHBOARD_PASSWORD" in readme
