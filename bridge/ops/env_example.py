"""``config/.env.example``, generated: every environment variable the settings classes read, with
its default, and what it is for in the README's words.

The names and defaults come from the settings classes (the core's and each CRM's), the sentences
from the README's Configuration table, so neither the file nor the table can fall behind the code
unnoticed: ``tests/test_config_files.py`` compares this output with the committed file. After a
change: ``python -m bridge.ops.env_example > config/.env.example``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from bridge.crm import CRMS
from bridge.crm.plugin import load_plugin
from bridge.settings import Location, Settings, section_fields

README = Path(__file__).parents[2] / "README.md"
# Shown uncommented (with an example) because the bridge cannot serve without them.
REQUIRED_EXAMPLES = {
    "CCAI_SUBDOMAIN": "acme",
    "CCAI_DOMAIN": "uc1.ccaiplatform.com",
    "CCAI_API_TOKEN": "",
    "CCAI_OUTBOUND_NUMBER": "+1 628-555-0199",
    "SALESFORCE_ORG_IDS": "",
    "BRIDGE_WEBHOOK_TOKEN": "",
}
# The login variables share one row of the table ("SALESFORCE_… login").
LOGIN = "A Salesforce login: set exactly one complete set (README, Salesforce logins)."
# Set by the host, never by hand.
NOT_FOR_PEOPLE = {"DYNO"}


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    purpose: str


def variables(readme: str | None = None) -> list[Variable]:
    """Every variable, in the order of the README's table (then any the table does not list)."""
    purposes = _purposes(README.read_text() if readme is None else readme)
    found: dict[str, Variable] = {}
    models: list[type[BaseSettings]] = [
        Location,
        Settings,
        *(load_plugin(name).settings_model for name in sorted(CRMS)),
    ]
    for model in models:
        prefix = str(model.model_config.get("env_prefix") or "").upper()
        tables = set(section_fields(model)) | set(getattr(model, "not_from_environment", ()))
        for field_name, field in model.model_fields.items():
            if field_name in tables:
                continue
            name = (str(field.validation_alias) if field.validation_alias else prefix + field_name).upper()
            if name in NOT_FOR_PEOPLE or name in found:
                continue
            purpose = purposes.get(name) or (LOGIN if name.startswith("SALESFORCE_") else "")
            found[name] = Variable(name, _default(field), purpose)
    order = list(purposes)
    return sorted(found.values(), key=lambda v: (order.index(v.name) if v.name in order else len(order), v.name))


def render(readme: str | None = None) -> str:
    lines = [
        "# Copy to .env in the working directory (or set these in the environment). Never commit .env.",
        "# Generated from the settings classes and the README's Configuration table by",
        "# `python -m bridge.ops.env_example`; every variable is described in the README (Configuration, Zendesk).",
        "# Uncommented: what the bridge cannot serve without. Commented: optional, shown with its default.",
        "",
    ]
    for variable in variables(readme):
        if variable.purpose:
            lines.append(f"# {variable.purpose}")
        if variable.name in REQUIRED_EXAMPLES:
            lines.append(f"{variable.name}={REQUIRED_EXAMPLES[variable.name]}")
        else:
            lines.append(f"# {variable.name}={variable.default}")
    return "\n".join(lines) + "\n"


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _purposes(readme: str) -> Mapping[str, str]:
    """Each variable's sentence in the README's settings tables (Configuration, then a CRM's own
    section such as Zendesk), markup removed."""
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for row in [*configuration.splitlines(), *readme.splitlines()]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        purpose = _plain(cells[2])
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            found.setdefault(name, purpose)
    return found


def _plain(markdown: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)  # links: their words only
    return text.replace("`", "").replace("\\|", "|")


if __name__ == "__main__":
    print(render(), end="")
