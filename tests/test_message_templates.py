from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.message_templates import Choice, TemplateBook, TemplateEntry, UnknownTemplate, build_book

DEFAULT_TEXT = "Hello about case {CaseNumber}."


def sample() -> TemplateBook:
    return build_book(
        DEFAULT_TEXT,
        {
            "case_opened": TemplateEntry(text="We opened case {CaseNumber}.", action_ids=("04k5g00000SBXAC",)),
            "awaiting_customer": TemplateEntry(
                text="We need your reply on case {CaseNumber}, {Contact.FirstName|there}.",
                label="Awaiting the customer",
                languages={
                    "es": "Necesitamos su respuesta, {Contact.FirstName|}.",
                    "pt_BR": "Precisamos da sua resposta.",
                },
            ),
        },
        template_field="CCAI_SMS_Template__c",
        language_field="Contact.Language__c",
    )


def test_nothing_asked_is_the_simple_default() -> None:
    choice = sample().choose()
    assert isinstance(choice, Choice)
    assert (choice.template.name, choice.chosen_by) == ("default", "default")
    assert choice.template.text.source == DEFAULT_TEXT


def test_a_persons_request_beats_the_rule_which_beats_the_ticket_field() -> None:
    templates = sample()
    everything = templates.choose(requested="awaiting_customer", rule_template="case_opened", ticket_value="default")
    assert isinstance(everything, Choice)
    assert (everything.template.name, everything.chosen_by) == ("awaiting_customer", "request")
    rule = templates.choose(rule_template="case_opened", ticket_value="awaiting_customer")
    assert isinstance(rule, Choice)
    assert (rule.template.name, rule.chosen_by) == ("case_opened", "rule")
    ticket = templates.choose(ticket_value=" Awaiting_Customer ")
    assert isinstance(ticket, Choice)
    assert (ticket.template.name, ticket.chosen_by) == ("awaiting_customer", "ticket")


def test_an_unknown_name_stops_the_send_instead_of_sending_the_default() -> None:
    unknown = sample().choose(ticket_value="resolvd")
    assert isinstance(unknown, UnknownTemplate)
    assert unknown.reason == (
        "There is no message template 'resolvd' (named by the ticket's CCAI_SMS_Template__c); "
        "the templates are awaiting_customer, case_opened, default."
    )


def test_the_variant_follows_the_customers_language_then_its_base_language() -> None:
    awaiting = sample().get("awaiting_customer")
    assert awaiting is not None
    assert awaiting.variant("es")[1] == "es"
    assert awaiting.variant("es-MX")[1] == "es"
    assert awaiting.variant("ES_mx")[1] == "es"
    assert awaiting.variant("pt-BR")[1] == "pt-br"
    assert awaiting.variant("pt")[1] is None
    template, language = awaiting.variant("fr")
    assert (template.source, language) == (awaiting.text.source, None)
    assert awaiting.variant(None)[1] is None


def test_the_fields_are_every_variants_and_the_choosing_fields() -> None:
    assert sample().fields == ("CCAI_SMS_Template__c", "Contact.Language__c", "CaseNumber", "Contact.FirstName")


def test_the_version_changes_with_any_text_and_only_then() -> None:
    first = sample().get("awaiting_customer")
    again = sample().get("awaiting_customer")
    assert first is not None
    assert again is not None
    assert first.version == again.version
    assert len(first.version) == 8
    changed = build_book(
        DEFAULT_TEXT,
        {"awaiting_customer": TemplateEntry(text=first.text.source, languages={"es": "Otra cosa."})},
    ).get("awaiting_customer")
    assert changed is not None
    assert changed.version != first.version


def test_a_rules_template_is_found_by_the_crms_own_id_comparison() -> None:
    def same(a: str, b: str) -> bool:
        return a[:15] == b[:15]

    assert sample().for_rule("04k5g00000SBXACAAX", same) == "case_opened"
    assert sample().for_rule("04k5g00000SBXZZ", same) is None


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"default": TemplateEntry(text="x")}, "[templates.default] is [mapping] message_template"),
        ({"Case-Opened": TemplateEntry(text="x")}, "[templates.Case-Opened]: a template's name"),
        ({"broken": TemplateEntry(text="Hi {Case Number}")}, "[templates.broken]: The message template"),
        (
            {"a": TemplateEntry(text="x", action_ids=("04k1",)), "b": TemplateEntry(text="y", action_ids=("04k1",))},
            "[templates.b] action_ids: 04k1 already sends [templates.a]",
        ),
    ],
)
def test_a_table_that_cannot_work_stops_start_up_naming_it(entries: dict[str, TemplateEntry], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        build_book(DEFAULT_TEXT, entries)


def test_a_language_code_must_look_like_one() -> None:
    with pytest.raises(ValueError, match="'spanish!' is not a language code"):
        TemplateEntry(text="x", languages={"spanish!": "y"})
