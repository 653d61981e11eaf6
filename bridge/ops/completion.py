"""Shell completion for ``bridge``, generated from the command line's own parser.

``bridge completion bash`` prints a script for bash (``source <(bridge completion bash)``, or save
it in ``/etc/bash_completion.d/``); ``bridge completion zsh`` prints the same script behind zsh's
bash-completion layer. It completes commands, subcommands, options and the values of options
with fixed choices (``--status``), from a table built here, so a new command completes as soon
as it is parsed.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from typing import Literal

Shell = Literal["bash", "zsh"]

_FUNCTION = r"""
_bridge_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path=bridge word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        [[ "$word" == -* ]] && continue
        if [[ " ${_bridge_commands[$path]} " == *" $word "* ]]; then
            path="$path $word"
        fi
    done
    local choices="${_bridge_choices[$path $prev]}"
    if [[ -n "$choices" ]]; then
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "${_bridge_options[$path]}" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "${_bridge_commands[$path]}" -- "$cur"))
    fi
}
complete -F _bridge_complete bridge
"""


def script(parser: argparse.ArgumentParser, shell: Shell) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    commands, options, choices = ["declare -gA _bridge_commands=("], ["declare -gA _bridge_options=("], []
    choices.append("declare -gA _bridge_choices=(")
    for path, sub in _walk(parser, "bridge"):
        names = sorted(_subcommands(sub))
        commands.append(f"  [{shlex.quote(path)}]={shlex.quote(' '.join(names))}")
        flags = sorted(flag for action in sub._actions for flag in action.option_strings)
        options.append(f"  [{shlex.quote(path)}]={shlex.quote(' '.join(flags))}")
        for action in sub._actions:
            if action.option_strings and action.choices:
                for flag in action.option_strings:
                    key = f"{path} {flag}"
                    choices.append(f"  [{shlex.quote(key)}]={shlex.quote(' '.join(map(str, action.choices)))}")
    body = "\n".join([*commands, ")", *options, ")", *choices, ")"]) + "\n" + _FUNCTION
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, sub in _subcommands(parser).items():
        yield from _walk(sub, f"{path} {name}")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found
