"""Shell completion, driven through a real bash the way bash's completion calls it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bridge.ops.cli import _parser
from bridge.ops.completion import script


def complete(*words: str) -> list[str]:
    """What bash offers after ``bridge <words>`` (the last word is the one being completed)."""
    line = ["bridge", *words]
    program = (
        script(_parser(), "bash")
        + f"\nCOMP_WORDS=({' '.join(repr(w) for w in line)}); COMP_CWORD={len(line) - 1}\n"
        + '_bridge_complete; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "--norc", "--noprofile"], input=program, capture_output=True, text=True, check=True)
    assert done.stderr == ""
    return sorted(line for line in done.stdout.splitlines() if line)


pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_commands_and_subcommands_complete() -> None:
    assert {"serve", "sends", "opt-outs", "status", "check"} <= set(complete(""))
    assert complete("se") == ["send", "sends", "serve"]
    assert complete("sends", "") == ["cancel", "list", "retry", "show"]
    assert complete("opt-outs", "r") == ["remove"]


def test_options_and_their_choices_complete() -> None:
    assert "--json" in complete("sends", "list", "--")
    assert complete("sends", "list", "--status", "opt") == ["opted_out"]
    assert complete("sends", "--json", "list", "--l") == ["--limit"]  # options before the subcommand are skipped


def test_the_zsh_script_loads_bash_completion_first() -> None:
    assert script(_parser(), "zsh").startswith("autoload -U +X bashcompinit && bashcompinit\n")
