"""Phone numbers: parse what a Case holds into E.164, apply the US-only policy, mask for logs."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True)
class PhoneProblem:
    """Why a value cannot be texted; ``reason`` is safe to show (the number is masked)."""

    reason: str


def mask(number: str | None) -> str:
    """Keep the last digits only: four for a full number, two for anything short."""
    if not number:
        return "(none)"
    digits = [c for c in number if c.isdigit()]
    keep = 4 if len(digits) >= 8 else 2
    return "*" * max(len(digits) - keep, 3) + "".join(digits[-keep:])


# Seven or more digits, with the separators people write numbers with: anything that may be a phone number.
_NUMBER_LIKE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")


def mask_numbers(text: str) -> str:
    """``text`` with every run that may be a phone number masked (for text from elsewhere, such as
    an error CCAI returns, which the bridge passes on to logs, the ticket and its callers)."""
    return _NUMBER_LIKE.sub(lambda match: mask(match.group()), text)


def us_e164(raw: str, *, label: str, reveal: bool = False) -> str:
    """For validators: a valid US number in E.164, or ``ValueError`` with the reason, the number
    masked unless ``reveal`` (an operator's own setting is not a customer's number)."""
    e164 = to_e164(raw, default_region="US", allowed_regions=("US",), label=label, reveal=reveal)
    if isinstance(e164, PhoneProblem):
        raise ValueError(e164.reason)
    return e164


# Numbers a text can reach. Toll-free, premium-rate, shared-cost, pager and the like are refused
# (audit A14: a vanity 1-800 number and a premium-rate number were texted).
_TEXTABLE = frozenset(
    {
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        phonenumbers.PhoneNumberType.VOIP,
    }
)
_KIND = {
    phonenumbers.PhoneNumberType.TOLL_FREE: "a toll-free number",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    phonenumbers.PhoneNumberType.SHARED_COST: "a shared-cost number",
    phonenumbers.PhoneNumberType.FIXED_LINE: "a landline",
    phonenumbers.PhoneNumberType.PAGER: "a pager number",
}


def to_e164(
    raw: str,
    *,
    default_region: str,
    allowed_regions: Collection[str],
    label: str,
    textable: bool = False,
    reveal: bool = False,
) -> str | PhoneProblem:
    """Parse ``raw`` (any common format) and return E.164, or the reason it cannot be used.

    ``label`` names the value in the reason, e.g. "The Case's phone number". ``textable`` also
    refuses numbers a customer's text cannot go to: with an extension (the text would reach the
    switchboard, not the person), and of a kind that cannot receive one (toll-free, premium-rate...).
    """
    shown = raw if reveal else mask(raw)
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return PhoneProblem(f"{label} ({shown}) is not a phone number.")
    if not phonenumbers.is_valid_number(parsed):
        return PhoneProblem(f"{label} ({shown}) is not a valid phone number.")
    if textable and parsed.extension:
        return PhoneProblem(
            f"{label} ({shown}) has an extension; a text would reach the switchboard, not the customer."
        )
    region = phonenumbers.region_code_for_number(parsed)
    if region not in allowed_regions:
        allowed = ", ".join(sorted(allowed_regions))
        return PhoneProblem(
            f"{label} ({shown}) is a {region or 'non-geographic'} number; only {allowed} numbers can be texted."
        )
    kind = phonenumbers.number_type(parsed)
    if textable and kind not in _TEXTABLE:
        what = _KIND.get(kind, "not a number that can receive texts")
        return PhoneProblem(f"{label} ({shown}) is {what}; it cannot be texted.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
