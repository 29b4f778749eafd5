"""CJJ 61 vocabularies (classes, materials, laying, states, point kinds) and 8-digit feature codes.

A feature code is ``5`` + class digit + 2-digit sub-class index + geometry digit (1 line, 2 point)
+ point-kind digit (1 feature 特征, 2 fitting 附属物; 0 for lines) + 2-digit sequence. The
standard's examples fix three of them: 雨水管段 52011000, 雨水箅 52012204, 消防栓 51022202. The
sequence numbers beyond those examples (`FITTING_SEQUENCE`, `FEATURE_SEQUENCE`) are this
project's convention, chosen so that the examples come out right.
"""

from __future__ import annotations

from pipelines.model import NODE_KINDS, STATES, SUBCLASSES, UTILITIES

# --- classes and sub-classes ----------------------------------------------------------------
# Common names a survey table uses for a class beyond the standard's own.
_CLASS_ALIASES: dict[str, tuple[str, str | None]] = {
    "供水": ("JS", None),
    "上水": ("JS", None),
    "自来水": ("JS", None),
    "下水": ("PS", None),
    "电信": ("TX", None),
    "water": ("JS", None),
    "sewer": ("PS", "WS"),
    "sewage": ("PS", "WS"),
    "storm": ("PS", "YS"),
    "stormwater": ("PS", "YS"),
}
# sub-class code -> class code (sub-class codes are unique across classes).
_SUBCLASS_CLASS = {sub: cls for cls, subs in SUBCLASSES.items() for sub in subs}


def parse_class(text: str) -> tuple[str, str | None] | None:
    """A class or sub-class given as a code (JS, YS) or a name (给水, 雨水): (class, sub-class).

    A sub-class determines its class (YS -> PS/YS). None when the text is not recognised.
    """
    value = text.strip()
    code = value.upper()
    if code in UTILITIES:
        return code, None
    if code in _SUBCLASS_CLASS:
        return _SUBCLASS_CLASS[code], code
    for suffix in ("管线", "管道", "管"):
        if value.endswith(suffix) and len(value) > len(suffix):
            value = value[: -len(suffix)]
            break
    for cls, (_, name, english, _) in UTILITIES.items():
        if value == name or value.lower() == english:
            return cls, None
    alias = _CLASS_ALIASES.get(value) or _CLASS_ALIASES.get(value.lower())
    if alias is not None:
        return alias
    for cls, subs in SUBCLASSES.items():
        for sub, name in subs.items():
            if value == name:
                return cls, sub
    return None


def accepted_classes() -> str:
    return ", ".join(f"{c} {v[1]}" for c, v in UTILITIES.items())


# --- materials, laying methods, states, flow ------------------------------------------------
MATERIALS: dict[str, str] = {
    "ZT": "铸铁",
    "G": "钢",
    "T": "混凝土",
    "PE": "聚乙烯",
    "PVC": "聚氯乙烯",
    "BLG": "玻璃钢",
    "QM": "球墨铸铁",
    "ZS": "砖石",
    "TC": "陶瓷",
}
_MATERIAL_ALIASES = {
    "钢筋混凝土": "T",
    "砼": "T",
    "水泥": "T",
    "HDPE": "PE",
    "MPE": "PE",
    "UPVC": "PVC",
    "U-PVC": "PVC",
    "球墨": "QM",
    "砖": "ZS",
    "陶土": "TC",
    "STEEL": "G",
    "CAST IRON": "ZT",
    "DUCTILE IRON": "QM",
    "CONCRETE": "T",
}
LAYING: dict[str, str] = {
    "ZM": "直埋",
    "GK": "管块",
    "GG": "管沟",
    "JK": "架空",
    "ZH": "综合管廊",
    "DG": "顶管",
}
_STATE_ALIASES = {"in use": "在用", "abandoned": "废弃", "empty": "空管", "other": "其他"}
_FLOW_ALIASES = {
    "forward": "forward",
    "正向": "forward",
    "顺向": "forward",
    "reverse": "reverse",
    "反向": "reverse",
    "逆向": "reverse",
    "none": "none",
    "无": "none",
}
_VALVE_STATES = {
    "open": "open",
    "开": "open",
    "开启": "open",
    "常开": "open",
    "closed": "closed",
    "关": "closed",
    "关闭": "closed",
    "常闭": "closed",
    "闭": "closed",
    "inoperable": "inoperable",
    "失效": "inoperable",
    "损坏": "inoperable",
}


def _strip_pipe(value: str) -> str:
    for suffix in ("管材", "管"):
        if value.endswith(suffix) and len(value) > len(suffix):
            return value[: -len(suffix)]
    return value


def parse_material(text: str) -> str | None:
    value = _strip_pipe(text.strip())
    code = value.upper()
    if code in MATERIALS:
        return code
    for c, name in MATERIALS.items():
        if value == name:
            return c
    return _MATERIAL_ALIASES.get(code) or _MATERIAL_ALIASES.get(value)


def accepted_materials() -> str:
    return ", ".join(f"{c} {n}" for c, n in MATERIALS.items())


def parse_laying(text: str) -> str | None:
    value = text.strip()
    if value.upper() in LAYING:
        return value.upper()
    for code, name in LAYING.items():
        if value == name:
            return code
    return None


def parse_state(text: str) -> str | None:
    value = text.strip()
    if value in STATES:
        return value
    try:
        number = float(value)
    except ValueError:
        return _STATE_ALIASES.get(value.lower())
    if number.is_integer() and 0 <= number < len(STATES):
        return STATES[int(number)]
    return None


def accepted_states() -> str:
    return ", ".join(f"{i} {s}" for i, s in enumerate(STATES))


def parse_flow(text: str) -> str | None:
    return _FLOW_ALIASES.get(text.strip().lower())


def parse_valve_state(text: str) -> str | None:
    return _VALVE_STATES.get(text.strip().lower())


# --- node kinds -----------------------------------------------------------------------------
# Fitting (附属物) names -> node kind, searched in order as substrings: 阀门井 is a valve.
_FITTING_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("阀",), "valve"),
    (("消防栓", "消火栓"), "hydrant"),
    (("水表",), "meter"),
    (("雨水箅", "雨箅", "雨水篦", "雨篦", "雨水口", "进水口"), "inlet"),
    (("出水口", "排放口", "排水口"), "outfall"),
    (("水源", "水厂"), "plant"),
    (("调压站", "调压箱", "调压柜"), "regulator"),
    (("泵站",), "pump_station"),
    (("检修井", "窨井", "检查井", "人孔", "手孔", "井"), "manhole"),
)


def node_kind(fitting: str | None, feature: str | None) -> str:
    """The node kind of a survey point: from its fitting (附属物) first, then its feature.

    A fitting that is not recognised gives ``fitting``; a point with only a feature (三通,
    弯头, ...) or nothing is a ``junction``. English kind names are accepted as they are.
    """
    for text in (fitting, feature):
        if not text:
            continue
        value = text.strip()
        if value.lower() in NODE_KINDS:
            return value.lower()
        for names, kind in _FITTING_KINDS:
            if any(n in value for n in names):
                return kind
    return "fitting" if fitting and fitting.strip() else "junction"


# --- feature codes --------------------------------------------------------------------------
# Fitting (附属物) sequences by node kind. 04 雨水箅 and 02 消防栓 are the standard's examples;
# the rest is our convention.
FITTING_SEQUENCE = {
    "valve": "01",  # 阀门
    "hydrant": "02",  # 消防栓
    "manhole": "03",  # 检修井
    "inlet": "04",  # 雨水箅
    "meter": "05",  # 水表
    "outfall": "06",  # 出水口
    "plant": "07",  # 水源 / 水厂
    "regulator": "08",  # 调压站 / 调压箱
    "pump_station": "09",  # 泵站
    "source": "10",
    "reservoir": "11",
    "tank": "12",
    "treatment_plant": "13",
    "service": "14",
    "control_valve": "15",  # 调节阀 / 减压阀: EPANET's PRV, TCV, ...
    "fitting": "99",  # an appurtenance we do not name
}
# Feature (特征) sequences by the feature text (our convention); a junction without a
# recognised feature gets 00.
FEATURE_SEQUENCE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("三通",), "01"),
    (("四通",), "02"),
    (("弯头", "拐点", "转折"), "03"),
    (("变径",), "04"),
    (("直线点",), "05"),
    (("出地",), "06"),
    (("预留口", "预留"), "07"),
    (("五通", "多通"), "08"),
    (("变材",), "09"),
    (("盖堵", "堵头"), "10"),
    (("入户",), "11"),
)


def _prefix(utility: str, subclass: str | None) -> str | None:
    entry = UTILITIES.get(utility)
    if entry is None:
        return None
    subs = list(SUBCLASSES.get(utility, {}))
    index = subs.index(subclass) + 1 if subclass in subs else 0
    return f"5{entry[0]}{index:02d}"


def segment_code(utility: str, subclass: str | None) -> str | None:
    """The 8-digit code of a pipe segment, e.g. PS/YS -> 52011000; None for an unknown class."""
    prefix = _prefix(utility, subclass)
    return None if prefix is None else f"{prefix}1000"


def node_code(
    utility: str, subclass: str | None, kind: str, feature_text: str | None = None
) -> str | None:
    """The 8-digit code of a pipe point, e.g. PS/YS inlet -> 52012204, JS/SS hydrant -> 51022202.

    Junctions are feature points (kind digit 1), sequenced by their feature text; every other
    kind is a fitting (kind digit 2). None for an unknown class or kind.
    """
    prefix = _prefix(utility, subclass)
    if prefix is None:
        return None
    if kind == "junction":
        sequence = "00"
        for names, seq in FEATURE_SEQUENCE:
            if feature_text and any(n in feature_text for n in names):
                sequence = seq
                break
        return f"{prefix}21{sequence}"
    sequence_or_none = FITTING_SEQUENCE.get(kind)
    if sequence_or_none is None:
        return None
    return f"{prefix}22{sequence_or_none}"
