"""The one InfluxDB line-protocol writer: escaping, field formatting and ``Point``.

``timeseries.presence`` formats the collector's hot path with these same functions, only
caching what repeats; ``tests/timeseries/test_presence_lines.py`` holds both to one text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = str | int | float | bool


def escape_key(text: str, measurement: bool = False) -> str:
    """Escape a measurement, tag key, tag value or field key for line protocol."""
    text = text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
    if not measurement:
        text = text.replace("=", "\\=")
    return text.replace("\n", "\\n")


def escape_string(value: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_field(value: FieldValue) -> str:
    """Format a field value: integers get the i suffix, strings are quoted and escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return escape_string(value)


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """Measurement and tags sorted by key (as InfluxDB stores them); empty tags left out."""
    parts = [escape_key(measurement, measurement=True)]
    for key in sorted(tags):
        value = tags[key]
        if value == "":
            continue  # line protocol has no empty tag values: an absent tag means none
        parts.append(f",{escape_key(key)}={escape_key(value)}")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Point:
    """One time-series point: measurement, tags, fields and a nanosecond timestamp."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        """The point in InfluxDB line protocol."""
        field_text = ",".join(
            f"{escape_key(key)}={format_field(value)}" for key, value in self.fields.items()
        )
        if not field_text:
            raise ValueError("a point needs at least one field")
        return f"{series_key(self.measurement, self.tags)} {field_text} {self.time_ns}"
