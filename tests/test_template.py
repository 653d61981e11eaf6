from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.template import MissingField, Template


def test_renders_fields_relations_and_fallbacks() -> None:
    template = Template("Hi {Contact.FirstName|there}, case {CaseNumber} from {Account.Name} {{ok}}")
    assert template.fields == ("Contact.FirstName", "CaseNumber", "Account.Name")
    values = {"CaseNumber": "00001001", "Account.Name": "Acme", "Contact.FirstName": None}
    assert template.render(values) == "Hi there, case 00001001 from Acme {ok}"


def test_an_empty_field_without_fallback_is_never_half_rendered() -> None:
    assert Template("Case {CaseNumber}: {Subject}").render({"CaseNumber": "1", "Subject": "  "}) == MissingField(
        "Subject"
    )


@pytest.mark.parametrize("source", ["Hi {", "Hi }", "Hi {}", "Hi {Not a field}", "{Owner..Email}", "{1abc}"])
def test_template_syntax_errors_stop_start_up(source: str) -> None:
    with pytest.raises(ConfigError, match="message template"):
        Template(source)
