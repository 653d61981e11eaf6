"""The recipient's send window: may a text go out now, and if not, when?

Quiet-hours rules are written in the recipient's local time ("not before 8 a.m. or after 9 p.m. at the
called party's location"), so a window is a daily wall-clock range applied in the recipient's time
zone. The bridge rarely knows that zone for sure. A time zone field on the Case wins; otherwise the
number's area code decides, and some area codes span two zones (Idaho's 208, South Dakota's 605,
Alaska's 907): then a moment counts as inside only if it is inside in every zone that may apply.

Everything here is a decision on plain values: the caller passes the current time, the window and the
zones, and holds the send until ``opens_at``; nothing reads a clock or a setting.

The window is wall-clock time, start inclusive and end exclusive, on every day including the days
clocks change. When a start falls in the hour skipped in spring (02:30 on a day that jumps from 02:00
to 03:00), the window opens when the clocks jump, at 03:00. In the hour repeated in autumn, a wall time
inside the window is inside both times it occurs.
"""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

from bridge._area_codes import STATE_BY_AREA_CODE

# How far ahead decide() looks for a moment that is inside in every zone. A daily window that is ever
# open opens within a day or two; a week leaves room for DST changes and still ends the search when
# the zones have no common hour at all.
HORIZON = timedelta(days=7)

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")

# Names people and other systems put in a time zone field that are not the IANA name to use. The US
# abbreviations mean the zone that observes daylight saving time: tzdata's own "EST" and "MST" are
# fixed offsets, an hour wrong all summer for the people who write them. Arizona is America/Phoenix.
_ALIASES = {
    "us/eastern": "America/New_York",
    "us/central": "America/Chicago",
    "us/mountain": "America/Denver",
    "us/pacific": "America/Los_Angeles",
    "us/alaska": "America/Anchorage",
    "us/hawaii": "Pacific/Honolulu",
    "us/arizona": "America/Phoenix",
    "us/aleutian": "America/Adak",
    "us/east-indiana": "America/Indiana/Indianapolis",
    "us/indiana-starke": "America/Indiana/Knox",
    "us/michigan": "America/Detroit",
    "us/samoa": "Pacific/Pago_Pago",
    "est": "America/New_York",
    "edt": "America/New_York",
    "cst": "America/Chicago",
    "cdt": "America/Chicago",
    "mst": "America/Denver",
    "mdt": "America/Denver",
    "pst": "America/Los_Angeles",
    "pdt": "America/Los_Angeles",
    "akst": "America/Anchorage",
    "akdt": "America/Anchorage",
    "hst": "Pacific/Honolulu",
    # Windows names, as exported by Outlook-based tools.
    "eastern standard time": "America/New_York",
    "central standard time": "America/Chicago",
    "mountain standard time": "America/Denver",
    "us mountain standard time": "America/Phoenix",
    "pacific standard time": "America/Los_Angeles",
    "alaskan standard time": "America/Anchorage",
    "hawaiian standard time": "Pacific/Honolulu",
}
# Files in the zone directory that are not a place's time.
_NOT_ZONES = frozenset({"Factory", "localtime"})


@dataclass(frozen=True)
class Window:
    """A daily wall-clock range, start inclusive and end exclusive; it crosses midnight when start > end."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("A send window is wall-clock time: its start and end carry no time zone.")
        if self.start == self.end:
            raise ValueError(f"The send window {self} starts and ends at the same time; write off to send at any hour.")

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, local: time) -> bool:
        """Whether the wall-clock time ``local`` is inside the window."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class WindowDecision:
    """Whether a send may go out now and, if not, when.

    ``opens_at`` (UTC) is the earliest moment inside the window in every zone; ``zone`` is the zone that
    opens last and ``local_opening`` the opening in that zone, for the reason shown on the Case.
    ``opens_at`` is None when the window is open, or when no moment within :data:`HORIZON` fits every
    zone; ``reason`` says which, as a sentence, whenever the send is not open.
    """

    open: bool
    opens_at: datetime | None = None
    zone: str | None = None
    local_opening: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class WindowRules:
    """The send window settings: the default, per-state overrides, and how to find the recipient's zone."""

    default: Window | None
    states: Mapping[str, Window | None]
    default_zone: str = "America/New_York"
    timezone_field: str = ""


@dataclass(frozen=True)
class WindowCheck:
    """The window that applies to a recipient, the zones their time is read in, and the decision at a moment."""

    window: Window
    zones: tuple[str, ...]
    decision: WindowDecision


def check(rules: WindowRules, number: str, *, zone_field: object, now: datetime) -> WindowCheck | None:
    """The send window for ``number`` (E.164) at ``now``; ``zone_field`` is the value of the ticket's
    time zone field (``rules.timezone_field``), if any. None when no window applies."""
    window = window_for(state_for_number(number), rules.default, rules.states)
    if window is None:
        return None
    field_zone = timezone_from_field(zone_field) if rules.timezone_field else None
    zones = recipient_zones(number, field_zone=field_zone, default=rules.default_zone)
    return WindowCheck(window=window, zones=zones, decision=decide(now, window, zones))


def parse_window(text: str) -> Window | None:
    """``"08:00-21:00"`` → a :class:`Window`; ``"off"`` (any case) → None, meaning send at any hour."""
    if text.strip().lower() == "off":
        return None
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"The send window {text!r} is not a range of times such as 08:00-21:00 (or off).")
    hours_minutes = [int(g) for g in match.groups()]
    for hour, minute in (hours_minutes[:2], hours_minutes[2:]):
        if hour > 23 or minute > 59:
            raise ValueError(
                f"The send window {text!r} has {hour:02d}:{minute:02d}, which is not a time of day (00:00 to 23:59)."
            )
    start_hour, start_minute, end_hour, end_minute = hours_minutes
    return Window(time(start_hour, start_minute), time(end_hour, end_minute))


def window_for(
    number_state: str | None, default: Window | None, overrides: Mapping[str, Window | None]
) -> Window | None:
    """The window that applies to a number in ``number_state``: its override if it has one, else ``default``.

    An override of None turns the window off for that state.
    """
    if number_state is not None:
        by_state = {state.upper(): window for state, window in overrides.items()}
        if number_state.upper() in by_state:
            return by_state[number_state.upper()]
    return default


def decide(now: datetime, window: Window | None, zones: Sequence[str]) -> WindowDecision:
    """Whether a send may go out at ``now`` (aware) to a recipient who may be in any of ``zones``.

    A window of None (off) is always open. ``zones`` must hold at least one IANA name: pass the default
    zone when nothing is known about the recipient.
    """
    if now.utcoffset() is None:
        raise ValueError(f"The send window needs an aware current time, not {now.isoformat()}.")
    now = now.astimezone(UTC)
    if window is None:
        return WindowDecision(open=True)
    loaded = _load_zones(zones)
    if _inside_everywhere(now, window, loaded):
        return WindowDecision(open=True)
    until = now + HORIZON
    candidates = sorted({edge for zone in loaded.values() for edge in _openings(window, zone, now, until)})
    for moment in candidates:
        if _inside_everywhere(moment, window, loaded):
            # The zone to name is the one that was still closed just before: the others were waiting for it.
            before = max(now, moment - timedelta(seconds=1))
            name = next((n for n, z in loaded.items() if not window.contains(_wall(before, z))), next(iter(loaded)))
            decision = WindowDecision(
                open=False, opens_at=moment, zone=name, local_opening=moment.astimezone(loaded[name])
            )
            return replace(decision, reason=scheduled_reason(decision, window))
    names = list(loaded)
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return WindowDecision(
        open=False,
        reason=(
            f"The send window {window} is never open in {listed} at the same time "
            f"(looked {HORIZON.days} days ahead); the text cannot be scheduled."
        ),
    )


def scheduled_reason(decision: WindowDecision, window: Window) -> str:
    """The reason shown for a held send, e.g. "Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)".

    The time is the wall-clock time in the zone that opens last, which is the start of the window except
    on a day the clocks skip it.
    """
    if decision.zone is None or decision.local_opening is None:
        raise ValueError("Only a decision with an opening time is scheduled.")
    return f"Scheduled for {decision.local_opening:%H:%M} {decision.zone} (send window {window})"


def zones_for_number(e164: str) -> tuple[str, ...]:
    """The time zones of a number's area code; empty when phonenumbers says nothing.

    In the North American plan that is every zone phonenumbers places any number of the area code
    in, not only the one it gives this exchange: its data names one zone for a prefix it has no
    entry for (northwest Indiana's 219 reads as Eastern), and the window must hold in all of them.
    Non-geographic numbers (toll-free, premium, 5XX) come back empty rather than as every zone of the
    numbering plan, so the caller falls back to its default zone.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    if not phonenumbers.is_number_geographical(parsed):
        return ()
    if parsed.country_code == 1 and (area := _nanp_zones().get(str(parsed.national_number)[:3])):
        return area
    zones: tuple[str, ...] = phone_timezones.time_zones_for_number(parsed)
    return tuple(z for z in zones if z != "Etc/Unknown")


# Overlay area codes serve their parent's area, but phonenumbers (9.0.x) gives some of them a single
# zone, or the wrong one (689, Orlando, as Central). Their zones are added to the overlay's, never
# put in their place, so the window can only get stricter. Source: NANPA's overlay assignments.
_OVERLAYS = {"364": "270", "448": "850", "689": "407", "930": "812"}


@functools.cache
def _nanp_zones() -> dict[str, tuple[str, ...]]:
    """Every zone phonenumbers' data places each North American area code in."""
    zones: dict[str, set[str]] = {}
    for prefix, names in TIMEZONE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4:
            zones.setdefault(prefix[1:4], set()).update(n for n in names if n != "Etc/Unknown")
    for overlay, parent in _OVERLAYS.items():
        zones.setdefault(overlay, set()).update(zones.get(parent, ()))
    return {area: tuple(sorted(names)) for area, names in zones.items() if names}


def state_for_number(e164: str) -> str | None:
    """The two-letter code of the US state, district or territory a number's area code serves, if any."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 1:
        return None
    return STATE_BY_AREA_CODE.get(str(parsed.national_number)[:3])


def timezone_from_field(value: object) -> str | None:
    """The IANA zone a CRM field names, or None when it names none.

    Accepts IANA names (Salesforce's ``TimeZoneSidKey`` values are IANA names) in any letter case,
    legacy names such as ``US/Eastern`` or ``GMT``, the US abbreviations and the common Windows names.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.lower() in _ALIASES:
        return _ALIASES[text.lower()]
    return _zone_names().get(text.lower())


def recipient_zones(e164: str, *, field_zone: str | None, default: str) -> tuple[str, ...]:
    """Whose time applies: the Case's zone field, else the number's zones, else ``default``."""
    if field_zone:
        return (field_zone,)
    return zones_for_number(e164) or (default,)


@functools.cache
def _zone_names() -> dict[str, str]:
    # Lower-case name to name: no two zones differ only in case.
    return {name.lower(): name for name in zoneinfo.available_timezones() - _NOT_ZONES}


def zone_info(name: str) -> ZoneInfo:
    """The zone by its IANA name, or ``ValueError`` saying it is not known."""
    return _load_zones((name,))[name]


def _load_zones(names: Sequence[str]) -> dict[str, ZoneInfo]:
    if isinstance(names, str):
        names = (names,)
    if not names:
        raise ValueError("The send window needs at least one time zone; pass the default zone when none is known.")
    loaded: dict[str, ZoneInfo] = {}
    for name in names:
        try:
            loaded[name] = ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{name!r} is not a known time zone.") from exc
    return loaded


def _wall(moment: datetime, zone: ZoneInfo) -> time:
    return moment.astimezone(zone).time()


def _inside_everywhere(moment: datetime, window: Window, zones: Mapping[str, ZoneInfo]) -> bool:
    return all(window.contains(_wall(moment, zone)) for zone in zones.values())


def _openings(window: Window, zone: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """Every moment in (after, until] at which ``zone``'s wall clock may enter the window.

    The clock enters the window when it reaches the start, or when it jumps into the window at a UTC
    offset change (a start in the skipped spring hour; an end in the repeated autumn hour). Between
    these moments insideness cannot begin, so the earliest moment inside in every zone is among them.
    """
    first: date = after.astimezone(zone).date() - timedelta(days=1)
    last: date = until.astimezone(zone).date() + timedelta(days=1)
    day = first
    while day <= last:
        local = datetime.combine(day, window.start, tzinfo=zone)
        for fold in (0, 1):
            moment = local.replace(fold=fold).astimezone(UTC)
            if after < moment <= until:
                yield moment
        day += timedelta(days=1)
    yield from (change for change in _offset_changes(zone, after, until) if after < change <= until)


def _offset_changes(zone: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    # zoneinfo has no public list of transitions: sample hourly (no zone changes offset twice within an
    # hour) and bisect each change down to the second, the resolution of the tz database.
    def offset_at(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, zone).utcoffset()

    start, stop = math.floor(after.timestamp()), math.ceil(until.timestamp())
    for hour in range(start, stop, 3600):
        low, high = hour, min(hour + 3600, stop)
        before = offset_at(low)
        if offset_at(high) == before:
            continue
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if offset_at(middle) == before else (low, middle)
        yield datetime.fromtimestamp(high, UTC)
