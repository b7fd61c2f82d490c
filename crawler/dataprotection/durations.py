"""ISO 8601 durations, read strictly (policy ``retention:`` fields).

``P180D``, ``P3Y``, ``P1Y6M``, ``P2W``, ``PT12H``: whole numbers, upper-case
designators, at least one part, not zero, at most 100 years. Years and months
are calendar ones (``P1Y`` before 2025-02-28 is 2024-02-28). Written here, not
with a library: pydantic's timedelta also takes plain numbers and clock
times, and isodate accepts fractions and negative durations; a retention
period a person wrote must mean one thing.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_DURATION = re.compile(
    r"P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)
_PARTS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
#: The longest period accepted: 100 years (a typo such as P1800Y is not a schedule).
MAX_YEARS = 100


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration as written, and the calendar arithmetic to go back by it."""

    text: str
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this duration (calendar years and months; the day clamped to the month's last)."""
        total_months = moment.year * 12 + (moment.month - 1) - (self.years * 12 + self.months)
        year, month = divmod(total_months, 12)
        month += 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        shifted = moment.replace(year=year, month=month, day=day)
        return shifted - timedelta(weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds)

    def approx_days(self) -> float:
        return self.years * 365.25 + self.months * 30.44 + self.weeks * 7 + self.days + (self.hours * 3600 + self.minutes * 60 + self.seconds) / 86400


def parse_duration(text: str) -> Duration:
    """``text`` as a Duration; ValueError saying what is accepted."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 duration such as 'P180D', got {type(text).__name__}")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration; write e.g. 'P180D' (180 days), 'P3Y', 'P1Y6M', 'P2W' or 'PT12H' "
            "(whole numbers, upper-case letters, no sign or fractions)"
        )
    values = {name: int(match.group(name) or 0) for name in _PARTS}
    if not any(values.values()):
        raise ValueError(f"{text!r} is zero: a retention of nothing would delete every item as it is stored")
    duration = Duration(text, **values)
    if duration.approx_days() > MAX_YEARS * 366:
        raise ValueError(f"{text!r} is longer than {MAX_YEARS} years")
    return duration


