"""The README is the front door: every command, variable and example it shows must work as written."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path

from benchmarks.__main__ import parser as benchmark_parser
from bridge.api.opt_outs import OptOutRequest
from bridge.api.sends import SendRequest
from bridge.crm.salesforce.ids import normalize_case_id
from bridge.ops.cli import _parser
from bridge.services import environment_names

README = (Path(__file__).parents[1] / "README.md").read_text()


def commands(prefix: str) -> list[list[str]]:
    """Every ``prefix …`` command in the README's code (fenced blocks and inline code)."""
    found = []
    for snippet in re.findall(r"```sh\n(.*?)```", README, re.S) + re.findall(r"`([^`\n]+)`", README):
        for line in snippet.replace("\\\n", " ").splitlines():
            if prefix not in line:
                continue
            lexer = shlex.shlex(line.split(" #")[0], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = [w.removeprefix(".venv/bin/") for w in lexer]
            for start in range(len(words)):
                if words[start : start + len(prefix.split())] == prefix.split():
                    rest = words[start + len(prefix.split()) :]
                    end = next((i for i, w in enumerate(rest) if w in ("&&", ";", "|", "||", ")")), len(rest))
                    found.append(rest[:end])
    return found


PLACEHOLDERS = ("…", "ID", "N", "S", "NUMBER", "CASE_ID", "TEXT", "EMAIL", "WHO", "URL")


def test_every_bridge_command_in_the_readme_parses() -> None:
    found = commands("bridge")
    assert len(found) >= 15
    for words in found:
        if any(w in PLACEHOLDERS or "|" in w for w in words):
            continue  # a usage line from the operations table, not a command to paste
        with contextlib.suppress(SystemExit):  # --help-like actions exit 0
            _parser().parse_args(words)


def test_every_benchmark_command_in_the_readme_parses() -> None:
    found = commands("python -m benchmarks")
    assert {words[0] for words in found} == {
        "pipeline",
        "ingest",
        "latency",
        "calls",
        "chats",
        "faults",
        "recovery",
        "pubsub",
        "zendesk",
    }
    for words in found:
        assert benchmark_parser().parse_args(words).run is not None


def test_every_variable_in_the_configuration_table_is_a_setting() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    known = environment_names()
    assert named - known - {"HOST", "PORT"} == set()
    undocumented = known - named - {"DYNO"}
    assert {n for n in undocumented if not n.startswith(("SALESFORCE_", "ZENDESK_"))} == set(), (
        "settings missing from the table"
    )


def test_every_zendesk_variable_is_in_the_zendesk_section() -> None:
    section = README.split("\n## Zendesk", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(ZENDESK_[A-Z0-9_]+)`", section))
    assert {n for n in environment_names() if n.startswith("ZENDESK_")} == named


def test_the_send_api_example_is_accepted() -> None:
    body = README.split("POST /api/v1/sends?wait=8", 1)[1].split("```", 1)[0].strip().splitlines()[-1]
    request = SendRequest.model_validate(json.loads(body), context={"ticket_ids": normalize_case_id})
    assert request.ticket_id == "5005g00000SBX01AAH"


def test_the_opt_out_example_is_accepted() -> None:
    example = re.search(r"`POST /api/v1/opt-outs` with `(\{.*?\})`", README, re.S)
    assert example is not None
    assert OptOutRequest.model_validate(json.loads(example.group(1).replace("\n", " "))).number == "+14155550100"
