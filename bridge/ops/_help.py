"""What ``bridge COMMAND --help`` says besides the options: a description, examples that work as
written, and the exit statuses scripts and monitors can rely on. Every command has all three
(``tests/ops/test_cli_help.py`` checks it, and that each example parses)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

CONFIGURATION = "a setting is missing or wrong, or the arguments cannot work"


@dataclass(frozen=True)
class Doc:
    examples: tuple[str, ...]
    exits: Mapping[int, str]


DOCS: Mapping[str, Doc] = {
    "serve": Doc(
        ("bridge serve", "bridge serve --sandbox", "bridge serve --no-worker --port 8080"),
        {0: "stopped cleanly (SIGTERM or Ctrl-C)", 2: CONFIGURATION + " (or the port is taken)"},
    ),
    "worker": Doc(("bridge worker",), {0: "stopped cleanly (SIGTERM or Ctrl-C)", 2: CONFIGURATION}),
    "migrate": Doc(("bridge migrate", "bridge migrate --json"), {0: "the schema is up to date", 2: CONFIGURATION}),
    "sandbox": Doc(
        ("bridge sandbox", "bridge sandbox --rate-limit 5 --latency 0.2"),
        {0: "stopped (Ctrl-C)", 2: "the arguments cannot work"},
    ),
    "sandbox publish": Doc(
        ("bridge sandbox publish 5005g00000SBX05AAH", "bridge sandbox publish 5005g00000SBX05AAH --key click-1"),
        {0: "published", 1: "the simulated Pub/Sub API could not be reached", 2: "the arguments cannot work"},
    ),
    "sandbox fault": Doc(
        ("bridge sandbox fault ccai 429", "bridge sandbox fault ccai 503 --times 3", "bridge sandbox fault ccai off"),
        {0: "the simulated platform took the fault", 1: "it could not be reached", 2: "the arguments cannot work"},
    ),
    "sample-message": Doc(
        ("bridge sample-message", "bridge sample-message --post http://127.0.0.1:8000/salesforce/outbound-message"),
        {0: "printed (or posted and answered 2xx)", 1: "the post was refused"},
    ),
    "send": Doc(
        ("bridge send 5005g00000SBX01AAH", "bridge send 5005g00000SBX01AAH --message 'On our way' --wait"),
        {
            0: "sent (or queued, without --wait)",
            1: "not sent (the reason is printed)",
            2: CONFIGURATION,
            3: "still pending after --wait (held for the send window, or no worker running)",
        },
    ),
    "sends list": Doc(
        ("bridge sends list --status failed", "bridge sends list --since 2h --json"), {0: "listed", 2: CONFIGURATION}
    ),
    "sends show": Doc(("bridge sends show 42", "bridge sends show 42 --json"), {0: "shown", 1: "no such send"}),
    "sends retry": Doc(
        ("bridge sends retry 42", "bridge sends retry --status failed --dry-run"),
        {
            0: "queued again (or listed, with --dry-run)",
            1: "refused: it may have reached the customer",
            2: CONFIGURATION,
        },
    ),
    "salesforce setup": Doc(
        (
            "bridge salesforce setup --integration-user bridge@acme.example --activate outbound-message",
            "bridge salesforce setup --integration-user bridge@acme.example --agent ana@acme.example --json",
        ),
        {0: "every step done (or already so)", 1: "a step failed (each step's line says why)", 2: CONFIGURATION},
    ),
    "zendesk setup": Doc(
        ("bridge zendesk setup --url https://bridge.acme.example", "bridge zendesk setup --env-file .env"),
        {0: "the fields, the webhook and the example trigger exist", 1: "Zendesk refused a step", 2: CONFIGURATION},
    ),
    "sends cancel": Doc(
        ("bridge sends cancel 42",), {0: "canceled", 1: "it is under way, may have been sent, or has finished"}
    ),
    "opt-outs add": Doc(
        ("bridge opt-outs add '(415) 555-0100' --note 'replied STOP'",), {0: "on the list", 2: CONFIGURATION}
    ),
    "opt-outs remove": Doc(("bridge opt-outs remove '(415) 555-0100'",), {0: "removed", 1: "it was not on the list"}),
    "opt-outs check": Doc(
        ("bridge opt-outs check '(415) 555-0100'",), {0: "it is on the list", 1: "it is not", 2: CONFIGURATION}
    ),
    "opt-outs list": Doc(("bridge opt-outs list --limit 100",), {0: "listed", 2: CONFIGURATION}),
    "status": Doc(
        ("bridge status", "bridge status --json"),
        {0: "healthy", 1: "degraded (the reasons are printed)", 2: "down, or there is no store to read"},
    ),
    "purge": Doc(("bridge purge", "bridge purge --older-than-days 7"), {0: "purged", 2: CONFIGURATION}),
    "check": Doc(
        ("bridge check", "bridge check --json"), {0: "every check passed", 1: "a check failed", 2: CONFIGURATION}
    ),
    "completion": Doc(("source <(bridge completion bash)", "bridge completion zsh > ~/.zfunc/_bridge"), {0: "printed"}),
}


def document(parser: argparse.ArgumentParser) -> None:
    """Give every command its description (its one-line help, as a sentence), examples and exit statuses."""
    for path, sub, summary in commands(parser):
        doc = DOCS.get(path)
        if doc is None:
            continue  # a command with subcommands: each of them is documented
        sub.description = sub.description or summary[:1].upper() + summary[1:] + "."
        examples = "\n".join(f"  {example}" for example in doc.examples)
        exits = "\n".join(f"  {code}  {meaning}" for code, meaning in sorted(doc.exits.items()))
        sub.epilog = f"examples:\n{examples}\n\nexit status:\n{exits}"
        sub.formatter_class = argparse.RawDescriptionHelpFormatter


def commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """Every command under ``parser``: its path (``sends list``), its parser and its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{path} {name}".strip()
                yield full, sub, helps.get(name, "")
                yield from commands(sub, full)
