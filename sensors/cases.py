"""An alarm becomes a city management case: the live twin feeding the grid-management loop
(一网统管). The case is reported at the sensor, classified from what the sensor watches, and
dispatched like any other case."""

from __future__ import annotations

import psycopg

from cases.store import NewCase, create_case
from twin.auth import Principal
from twin.errors import Conflict, InvalidParameter, NotFound

# The event class (事件) an alarm most likely reports, by sensor kind and the utility the
# sensor is attached to (CJJ 61 classes: JS water supply, RQ gas, PS/YS storm, PS/WS sewer);
# None: the caller must say.
_EVENT_CLASS = {
    ("pressure", "JS"): "0402",  # 自来水管破裂
    ("flow", "JS"): "0402",
    ("pressure", "RQ"): "0403",  # 燃气管道破裂
    ("gas", None): "0403",
    ("level", "YS"): "0405",  # 道路积水
    ("level", "WS"): "0404",  # 下水道堵塞或破损
    ("level", "PS"): "0404",
    ("rain", None): "0405",
}
_RULE_WORDS = {"low": "低于下限", "high": "高于上限", "rate": "变化过快"}


def event_class(kind: str, utility: str | None, subclass: str | None) -> str | None:
    """The likely event class of an alarm of a ``kind`` sensor on a network of ``utility``."""
    for key in ((kind, subclass), (kind, utility), (kind, None)):
        if key in _EVENT_CLASS:
            return _EVENT_CLASS[key]
    return None


async def case_from_alarm(
    conn: psycopg.AsyncConnection,
    who: Principal,
    alarm_id: int,
    class_code: str | None = None,
    title: str | None = None,
) -> str:
    """Report a case for an alarm and note it on the alarm; one case per alarm."""
    cur = await conn.execute(
        """
        SELECT a.rule, a.peak_value, a.threshold, a.case_code, a.opened_at, s.sensor_id, s.kind,
               s.unit, s.network, s.component_code, ST_X(s.geom), ST_Y(s.geom),
               n.utility, n.subclass
        FROM twin.alarms a JOIN twin.sensors s ON s.fid = a.sensor
        LEFT JOIN twin.pipe_networks n ON n.name = s.network
        WHERE a.id = %s FOR UPDATE OF a
        """,
        [alarm_id],
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no alarm {alarm_id}; see /alarms")
    rule, peak, threshold, existing, opened, sensor, kind, unit, _network = row[:9]
    component, lon, lat, utility, subclass = row[9:]
    if existing:
        raise Conflict(f"alarm {alarm_id} already has case {existing}; see /cases/{existing}")
    chosen = class_code or (None if component else event_class(kind, utility, subclass))
    if chosen is None and not component:
        raise InvalidParameter(
            f"no case class follows from a {kind} sensor: give class_code (an event class, "
            "see /cases/classes)"
        )
    new = NewCase(
        title=title or f"{sensor} {kind} {_RULE_WORDS[rule]}: {peak:g} {unit} (阈值 {threshold:g})",
        kind="部件" if component and not class_code else "事件" if chosen else None,
        class_code=None if component and not class_code else chosen,
        description=f"alarm {alarm_id} ({rule}) opened {opened.isoformat()}",
        point=None if component and not class_code else (lon, lat),
        component=component if component and not class_code else None,
        source="alarm",
        source_ref=str(alarm_id),
    )
    code = await create_case(conn, who, new)
    await conn.execute("UPDATE twin.alarms SET case_code = %s WHERE id = %s", [code, alarm_id])
    return code
