"""Parameter types whose server-side check is exactly what their OpenAPI schema says.

pydantic reads a number as a Unix timestamp wherever a date is expected (`?to=0` was 1970-01-01, `?to=0.5` half a
second after it), while the schema says `format: date`: these refuse anything that is not written as an ISO 8601
date (or date-time), so a caller's mistake is a 422 naming the format, not a report of 1970.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from backend.knowledge.service import KB_PATTERN

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339 as the schema's `format: date-time` says, and what the routes also take: a space for the T, no
# seconds, no offset (then UTC), or a bare date (its midnight, UTC).
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?)?")


def _written_as(pattern: re.Pattern[str], what: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"must be {what} (a number is not read as a date)")
        return value

    return BeforeValidator(check)


def _as_utc(value: datetime) -> datetime:
    """The instant in UTC (no offset: UTC). An offset can put it past the calendar's ends (9999-12-31T23:00-05:00):
    as a bound it then means the end itself, not a 500."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.max if value.year == datetime.max.year else datetime.min).replace(tzinfo=UTC)


IsoDate = Annotated[date, _written_as(_DATE, "a date written YYYY-MM-DD, e.g. 2026-01-31")]
IsoDateTime = Annotated[
    datetime,
    _written_as(_DATE_TIME, "an ISO 8601 date-time, e.g. 2026-01-31T09:00:00Z (UTC when it has no offset), or a "
                            "date, e.g. 2026-01-31"),
    AfterValidator(_as_utc),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}),
]


def _json_number(value: Any) -> Any:
    # pydantic's lax mode reads "5" and true as numbers; JSON Schema's integer and number do not (45.0 stays an
    # integer, as JSON Schema says it is).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number, not a string or true/false")
    return value


# For JSON bodies (query strings are parsed as usual). Optional ones are their own types: a union around the
# validated type would keep a field's ge/le out of its schema's minimum/maximum.
Integer = Annotated[int, BeforeValidator(_json_number)]
Number = Annotated[float, BeforeValidator(_json_number)]
IntegerOrNone = Annotated[int | None, BeforeValidator(_json_number)]
NumberOrNone = Annotated[float | None, BeforeValidator(_json_number)]
# Schema only, where the server refuses a blank text itself (its own words): a character str.strip() keeps, spelt
# out because JSON Schema's \s (ECMA 262) and Python's whitespace differ (\x1c-\x1f, \x85, \ufeff).
NOT_BLANK = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# Schema only: the routes pass the name to check_kb, whose refusal quotes it (`invalid_kb`), with the same pattern.
KB_NAME = {"pattern": KB_PATTERN}
