"""MQTT payloads as readings: a JSON object ``{"sensor", "time", "value"}``, a JSON array of
them, CSV lines ``sensor,time,value`` (with or without a header), and on a topic naming the
sensor (``citytwin/readings/<sensor_id>``) ``{"time", "value"}`` or a bare number. A reading
without a time is taken at the moment it arrived (UTC)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

Row = tuple[str, int, float]  # sensor id, µs since the epoch (UTC), value
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_KEYS = {"sensor": "sensor", "sensor_id": "sensor", "time": "time", "t": "time"}
_KEYS |= {"timestamp": "time", "value": "value", "v": "value"}


class Unreadable(ValueError):
    """A part of a payload that is not a reading; the message says why."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time_us(value: object, now_us: int) -> int:
    if value is None:
        return now_us
    if not isinstance(value, str):
        raise Unreadable(f"time {_short(value)} is not an ISO 8601 text")
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise Unreadable(f"time {_short(value)} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Unreadable(f"time {_short(value)} has no zone: add Z or an offset such as +08:00")
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _number(value: object) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise Unreadable(f"value {_short(value)} is not a number") from None
    if not math.isfinite(number):
        raise Unreadable(f"value {_short(value)} is not a finite number")
    return number


def _sensor(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise Unreadable("no sensor id (in the reading or the topic)")
    return value.strip()


def _record(item: object, topic_sensor: str | None, now_us: int) -> Row:
    if not isinstance(item, dict):
        raise Unreadable("not a JSON object")
    fields = {_KEYS.get(k, k): v for k, v in item.items()}
    if "value" not in fields:
        raise Unreadable("no value")
    if isinstance(fields["value"], str):  # JSON says what is a number; a text is a wrong type
        raise Unreadable(f"value {_short(fields['value'])} is a text, not a number")
    sensor = _sensor(fields.get("sensor", topic_sensor))
    return sensor, _time_us(fields.get("time"), now_us), _number(fields["value"])


def _read_csv(payload: bytes) -> tuple[list[Row], list[str]]:
    try:
        lines = [
            [f.strip() for f in line]
            for line in csv.reader(io.StringIO(payload.decode("utf-8-sig")))
            if any(f.strip() for f in line)
        ]
    except (UnicodeDecodeError, csv.Error):
        return [], ["neither JSON nor CSV text"]
    if not lines:
        return [], ["an empty message"]
    order = {"sensor": 0, "time": 1, "value": 2}
    head = [f.lower() for f in lines[0]]
    if all(h in _KEYS for h in head):
        named = [_KEYS[h] for h in head]
        if not {"sensor", "time", "value"} <= set(named):
            return [], ["a CSV header without sensor, time and value"]
        order = {name: named.index(name) for name in order}
        lines = lines[1:]
    width = max(order.values()) + 1
    rows: list[Row] = []
    bad: list[str] = []
    for n, fields in enumerate(lines, start=1):
        if len(fields) < width:
            bad.append(f"line {n}: {len(fields)} field(s), expected sensor,time,value")
            continue
        try:
            at = _time_us(fields[order["time"]], 0)
            rows.append((_sensor(fields[order["sensor"]]), at, _number(fields[order["value"]])))
        except Unreadable as exc:
            bad.append(f"line {n}: {exc}")
    return rows, bad


def read_payload(
    payload: bytes, topic_sensor: str | None, now_us: int
) -> tuple[list[Row], list[str]]:
    """The readings of one message, and why each part of it that is no reading is not."""
    try:
        doc = json.loads(payload)
    except ValueError:  # not JSON (nor text JSON can decode): CSV, or nothing
        return _read_csv(payload)
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        if topic_sensor is None:
            return [], ["a bare number needs its sensor in the topic (.../<sensor_id>)"]
        try:
            return [(topic_sensor, now_us, _number(doc))], []
        except Unreadable as exc:
            return [], [str(exc)]
    if not isinstance(doc, dict | list):
        return [], [f"JSON {type(doc).__name__} is not a reading"]
    items = doc if isinstance(doc, list) else [doc]
    rows: list[Row] = []
    bad: list[str] = [] if items else ["an empty JSON array"]
    for i, item in enumerate(items, start=1):
        try:
            rows.append(_record(item, topic_sensor, now_us))
        except Unreadable as exc:
            bad.append(f"item {i}: {exc}" if isinstance(doc, list) else str(exc))
    return rows, bad


def topic_prefix(topic_filter: str) -> tuple[str, ...] | None:
    """The levels of a filter before its first wildcard; None for an exact topic."""
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            return tuple(levels[:i])
    return None


def topic_sensor(topic: str, prefix: tuple[str, ...] | None) -> str | None:
    """The sensor a topic names: its last level, when it is deeper than the filter's fixed
    part (``citytwin/readings/P-001`` under ``citytwin/readings/#``)."""
    if prefix is None:
        return None
    levels = topic.split("/")
    if len(levels) <= len(prefix) or tuple(levels[: len(prefix)]) != prefix:
        return None
    return levels[-1] or None
