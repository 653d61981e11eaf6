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
