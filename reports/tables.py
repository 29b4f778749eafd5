"""The report's tables, one definition for every format (HTML, PDF, CSV, XLSX)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cases import STATES
from reports import LEVEL_NAMES_ZH
from reports.data import ReportData


@dataclass
class ReportTable:
    key: str  # stable id: CSV section, XLSX sheet name
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


def report_tables(data: ReportData) -> list[ReportTable]:
    s = data.summary
    return [
        area_table(data),
        *component_tables(s["components"]),
        *case_tables(data.cases),
        *pipe_tables(s["pipes"]),
        *imagery_tables(s["imagery"]),
        building_table(s["buildings"]),
        unit_grid_table(s["unit_grids"]),
    ]


def area_table(data: ReportData) -> ReportTable:
    cell, area = data.cell, data.summary["area"]
    chain = " › ".join(f"{c['name']} ({c['code']})" for c in data.chain) or "—"
    west, south, east, north = area["bbox"]
    rows = [
        ["名称 name", cell["name"]],
        ["代码 code", cell["code"]],
        ["层级 level", f"{LEVEL_NAMES_ZH[data.level]} ({data.level})"],
        ["上级 parents", chain],
        ["面积 area (m²)", area["area_m2"]],
        ["范围 bbox (lon/lat)", f"{west:.6f}, {south:.6f}, {east:.6f}, {north:.6f}"],
        ["单元网格 unit grids", data.summary["unit_grids"]["count"]],
        ["生成时间 generated (UTC)", data.generated.strftime("%Y-%m-%d %H:%M")],
    ]
    return ReportTable("area", "管理区域 Management area", ["item", "value"], rows)


def component_tables(c: dict[str, Any]) -> list[ReportTable]:
    statuses = c["statuses"]
    by_class = [
        [r["class_code"], r["class_name"], *(r[s] for s in statuses), r["count"]]
        for r in c["by_class_status"]
    ]
    by_class.append(["", "合计 total", *(x["count"] for x in c["by_status"]), c["total"]])
    return [
        ReportTable(
            "components_by_status",
            "部件状态 Components by status",
            ["status", "count"],
            [[r["status"], r["count"]] for r in c["by_status"]],
        ),
        ReportTable(
            "components_by_class",
            "部件分类 Components by class and status (GB/T 30428.2)",
            ["class_code", "class_name", *statuses, "total"],
            by_class,
        ),
    ]


def case_tables(c: dict[str, Any]) -> list[ReportTable]:
    """The area's cases (案件): a summary, counts by state, and per department."""
    titles = {
        "cases_summary": ("案件 Cases: overdue and on-time handling", ["item", "value"]),
        "cases_by_state": ("案件状态 Cases by state", ["state", "count"]),
        "cases_by_department": (
            "处置部门 Cases by department",
            [
                "department_code",
                "department_name",
                "total",
                *STATES,
                "overdue",
                "handled",
                "on_time",
                "on_time_rate",
            ],
        ),
    }
    if c.get("withheld"):
        return [ReportTable(k, t, cols, [], c["note"]) for k, (t, cols) in titles.items()]
    total = c["total"]
    summary = [
        ["案件 cases", total["total"]],
        ["未结 open", total["open"]],
        ["超期 overdue", total["overdue"]],
        ["已处置 handled", total["handled"]],
        ["按期处置 handled on time", total["on_time"]],
        ["按期处置率 on-time rate", total["on_time_rate"]],
    ]
    by_department = [
        [
            r["code"],
            r["name"],
            r["total"],
            *(r[s] for s in STATES),
            r["overdue"],
            r["handled"],
            r["on_time"],
            r["on_time_rate"],
        ]
        for r in c["by_department"]
    ]
    note = (
        "on-time rate: cases handled (处置) by their deadline / cases handled; overdue: past "
        "the deadline and not handled by it"
    )
    rows = {
        "cases_summary": summary,
        "cases_by_state": [[r["state"], r["count"]] for r in c["by_state"]],
        "cases_by_department": by_department,
    }
    return [
        ReportTable(k, t, cols, rows[k], note if k == "cases_summary" else "")
        for k, (t, cols) in titles.items()
    ]


def pipe_tables(p: dict[str, Any]) -> list[ReportTable]:
    return [
        ReportTable(
            "pipes_by_utility",
            "管线长度 Pipeline length by utility (CJJ 61)",
            ["utility", "name", "length_m", "segments"],
            [[r["utility"], r["name"], r["length_m"], r["segments"]] for r in p["by_utility"]],
            p["method"],
        ),
        ReportTable(
            "pipes_by_subclass",
            "管线子类 Pipeline length by sub-class",
            ["utility", "subclass", "name", "length_m", "segments"],
            [
                [r["utility"], r["subclass"], r["name"], r["length_m"], r["segments"]]
                for r in p["by_subclass"]
            ],
        ),
        ReportTable(
            "pipes_by_material",
            "管材 Pipeline length by material",
            ["material", "length_m", "segments"],
            [[r["material"], r["length_m"], r["segments"]] for r in p["by_material"]],
        ),
        ReportTable(
            "pipes_by_decade",
            "管龄 Pipeline age profile (length by decade laid)",
            ["decade", "length_m", "segments"],
            [[r["decade"], r["length_m"], r["segments"]] for r in p["by_decade"]],
        ),
    ]


def imagery_tables(im: dict[str, Any]) -> list[ReportTable]:
    scenes = [
        [
            s["id"],
            s["datetime"][:10],
            (s.get("ndvi") or {}).get("mean"),
            (s.get("ndwi") or {}).get("mean"),
            (s.get("ndvi") or {}).get("coverage"),
        ]
        for s in im["scenes"]
    ]
    changes = [
        [c["change_set"], c["date_before"], c["date_after"], c["kind"], c["count"], c["area_m2"]]
        for c in im["changes"]
    ]
    return [
        ReportTable(
            "imagery_scenes",
            "遥感影像 Imagery: newest scenes over the area",
            ["scene", "date", "ndvi_mean", "ndwi_mean", "coverage"],
            scenes,
            im.get("note", ""),
        ),
        ReportTable(
            "imagery_changes",
            "影像变化 Imagery changes inside the area",
            ["change_set", "date_before", "date_after", "kind", "count", "area_m2"],
            changes,
            "" if changes else "no detected change inside the area",
        ),
    ]


def building_table(b: dict[str, Any]) -> ReportTable:
    title = "建筑 Building stock"
    if not b["available"]:
        return ReportTable("buildings", title, ["use", "count", "floor_area_m2"], [], b["reason"])
    rows = [
        [r["use"], r["count"], r["footprint_inside_m2"], r["floor_area_m2"]] for r in b["by_use"]
    ]
    rows.append(["合计 total", b["count"], b["footprint_inside_m2"], b["floor_area_m2"]])
    return ReportTable(
        "buildings",
        title,
        ["use", "count", "footprint_m2", "floor_area_m2"],
        rows,
        b["method"],
    )


def unit_grid_table(u: dict[str, Any]) -> ReportTable:
    return ReportTable(
        "unit_grids",
        "单元网格 Unit grids in the area",
        ["code", "name", "area_inside_m2", "share_inside"],
        [[c["code"], c["name"], c["area_inside_m2"], c["share_inside"]] for c in u["cells"]],
    )
