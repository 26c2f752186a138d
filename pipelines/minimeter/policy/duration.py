"""ISO 8601 durations as policies use them (``PT15M``, ``P1D``, ``P1M``, ``P3Y``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_PATTERN = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_MONTH_SECONDS = 30.436875 * 86400  # mean Gregorian month, for ordering only
#: A run's as-of date is assumed to lie in these years; every duration must be subtractable
#: from any instant of them (``retention: P10000Y`` is refused when read, not mid-run).
AS_OF_YEARS = (2000, 2100)
#: The earliest instant a subtraction may reach (a year of margin above ``datetime.min`` for
#: conversions between time zones).
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=False)
class Duration:
    """A calendar part (months) and an exact part (seconds)."""

    text: str
    months: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if not match or text in ("P", "PT") or text.endswith("T"):
            raise ValueError(f"{text!r} is not an ISO 8601 duration like PT15M, P1D or P1M")
        g = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        months = g["y"] * 12 + g["mo"]
        seconds = ((g["w"] * 7 + g["d"]) * 24 + g["h"]) * 3600 + g["mi"] * 60 + g["s"]
        if months == 0 and seconds == 0:
            raise ValueError(f"{text!r} is a zero duration")
        duration = cls(text, months, seconds)
        if not duration.applicable():
            first, last = AS_OF_YEARS
            raise ValueError(
                f"{text!r} is too long: subtracted from a date in {first}..{last} it would reach "
                "before the start of the calendar"
            )
        return duration

    def applicable(self) -> bool:
        """Whether this duration can be subtracted from every instant of ``AS_OF_YEARS``
        without leaving the calendar (the earliest instant is the worst case: subtraction is
        monotonic; a leap day and the last instant are tried as well)."""
        first, last = AS_OF_YEARS
        for when in (
            datetime(first, 1, 1, tzinfo=UTC),
            datetime(first, 2, 29, tzinfo=UTC),
            datetime(last, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ):
            try:
                if self.subtract_from(when) < _EARLIEST:
                    return False
            except (ValueError, OverflowError):
                return False
        return True

    @property
    def nominal_seconds(self) -> float:
        return self.months * _MONTH_SECONDS + self.seconds

    def __lt__(self, other: Duration) -> bool:
        return self.nominal_seconds < other.nominal_seconds

    def __le__(self, other: Duration) -> bool:
        return self.nominal_seconds <= other.nominal_seconds

    def __gt__(self, other: Duration) -> bool:
        return self.nominal_seconds > other.nominal_seconds

    def __ge__(self, other: Duration) -> bool:
        return self.nominal_seconds >= other.nominal_seconds

    def subtract_from(self, when: datetime) -> datetime:
        """``when`` minus this duration (calendar months, then exact seconds)."""
        year, month = divmod(when.year * 12 + (when.month - 1) - self.months, 12)
        day = min(when.day, _days_in_month(year, month + 1))
        return when.replace(year=year, month=month + 1, day=day) - timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return self.text

    def describe(self) -> str:
        names = {
            "PT15M": "15 minutes",
            "PT30M": "30 minutes",
            "PT1H": "1 hour",
            "P1D": "1 day",
            "P1M": "1 month",
            "P1Y": "1 year",
        }
        if self.text in names:
            return names[self.text]
        if self.seconds == 0 and self.months % 12 == 0:
            return f"{self.months // 12} years"
        if self.seconds == 0:
            return f"{self.months} months"
        return self.text


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


#: Sampling intervals the pipeline can coarsen to (aligned to UTC calendar boundaries).
INTERVALS = ("PT15M", "PT30M", "PT1H", "P1D", "P1M")
