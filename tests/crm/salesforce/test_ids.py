"""Salesforce record ids: the 15 → 18 character form, validation, organisation prefixes."""

from __future__ import annotations

import pytest

from bridge.crm.salesforce.ids import is_record_id, org_prefix, to18, valid_id


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("0015000000Gv7qJ", "0015000000Gv7qJAAR"),  # Salesforce's documented example
        ("5005g00000SBX02", "5005g00000SBX02AAH"),
        ("00D5g00000SBXRG", "00D5g00000SBXRGEA5"),
        ("001000000000001", "001000000000001AAA"),
    ],
)
def test_to18_adds_the_checksum_suffix(short: str, long: str) -> None:
    assert to18(short) == long
    assert to18(long) == long
    assert to18(long[:15] + long[15:].lower()) == long  # the suffix is case-insensitive


def test_ids_that_differ_only_in_case_are_different_records() -> None:
    assert to18("0015000000Gv7qJ") != to18("0015000000gv7qj")


@pytest.mark.parametrize(
    "bad", ["", "0015000000Gv7q", "0015000000Gv7qJA", "0015000000Gv7qJAAR1", "0015000000Gv7q!", "0015000000Gv7qJ "]
)
def test_to18_refuses_what_is_not_an_id(bad: str) -> None:
    assert not is_record_id(bad)
    with pytest.raises(ValueError, match="is not a Salesforce record id"):
        to18(bad)


def test_valid_id_checks_the_suffix_of_an_18_character_id() -> None:
    assert valid_id("0015000000Gv7qJ")
    assert valid_id("0015000000Gv7qJAAR")
    assert valid_id("0015000000Gv7qJaar")
    # Well-formed, but one bad id in a query makes Salesforce refuse the whole batch read with it.
    assert is_record_id("0015000000Gv7qJAAA")
    assert not valid_id("0015000000Gv7qJAAA")
    assert not valid_id("0015000000Gv7q")


def test_organisations_compare_on_their_first_15_characters() -> None:
    assert org_prefix("00D5g00000SBXRGEA5") == org_prefix("00D5g00000SBXRG") == "00D5g00000SBXRG"
