"""A collected report as HTML, PDF, CSV or XLSX bytes (no database access here)."""

from __future__ import annotations

import base64
import csv
import io
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape

from reports import LEVEL_NAMES_ZH, check_format
from reports.data import ReportData
from reports.maps import age_chart_png, area_map_png
from reports.tables import ReportTable, report_tables

PDF_FONT = "STSong-Light"  # reportlab's built-in Adobe CID font for simplified Chinese


def render(data: ReportData, fmt: str) -> bytes:
    """The report in one of html, pdf, csv, xlsx."""
    fmt = check_format(fmt)
    tables = report_tables(data)
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "xlsx":
        return to_xlsx(tables)
    map_png = area_map_png(data)
    age_png = age_chart_png(data.summary["pipes"]["by_decade"])
    if fmt == "html":
        return to_html(data, tables, map_png, age_png)
    return to_pdf(data, tables, map_png, age_png)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else str(value)


# --- HTML ----------------------------------------------------------------------------------
def _cell(value: Any) -> Markup:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    css = ' class="num"' if numeric else ""
    return Markup(f"<td{css}>{escape(_number(value))}</td>")  # noqa: S704 - escaped above


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    text = resources.files("reports").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    return env.from_string(text)


def to_html(data: ReportData, tables: list[ReportTable], map_png: bytes, age_png: bytes) -> bytes:
    """One self-contained page: the pictures are data: URIs."""
    html = _template().render(
        cell=data.cell,
        level=data.level,
        level_zh=LEVEL_NAMES_ZH[data.level],
        chain=data.chain,
        area_m2=data.area.area_m2,
        tables=tables,
        map_png=base64.b64encode(map_png).decode("ascii"),
        age_png=base64.b64encode(age_png).decode("ascii"),
        generated=data.generated.strftime("%Y-%m-%d %H:%M UTC"),
    )
    return html.encode("utf-8")


# --- CSV and XLSX --------------------------------------------------------------------------
def to_csv(tables: list[ReportTable]) -> bytes:
    """Long format: one line per value (section, row, column, value); UTF-8 with a BOM so that
    spreadsheet programs read the Chinese names right."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["section", "row", "column", "value"])
    for table in tables:
        for i, row in enumerate(table.rows, start=1):
            for column, value in zip(table.columns, row, strict=True):
                out.writerow([table.key, i, column, "" if value is None else value])
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(tables: list[ReportTable]) -> bytes:
    """One sheet per table, named by its key, the header in the first row."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for table in tables:
        sheet = book.create_sheet(table.key[:31])
        sheet.append(table.columns)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append(row)
        if table.note:
            sheet.append([])
            sheet.append([table.note])
        for i, column in enumerate(table.columns, start=1):
            sheet.column_dimensions[sheet.cell(1, i).column_letter].width = max(12, len(column) + 2)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


# --- PDF -----------------------------------------------------------------------------------
def _pdf_styles() -> dict[str, Any]:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    return {
        "title": ParagraphStyle("title", fontName=PDF_FONT, fontSize=16, leading=22),
        "h2": ParagraphStyle("h2", fontName=PDF_FONT, fontSize=12, leading=18, spaceBefore=10),
        "body": ParagraphStyle("body", fontName=PDF_FONT, fontSize=9, leading=13),
        "note": ParagraphStyle("note", fontName=PDF_FONT, fontSize=7.5, leading=10),
    }


def _pdf_table(table: ReportTable, styles: dict[str, Any]) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    def para(value: Any) -> Any:
        return Paragraph(str(escape(_number(value))), styles["body"])

    body = [[para(c) for c in table.columns]] + [[para(v) for v in row] for row in table.rows]
    out = Table(body, repeatRows=1, hAlign="LEFT")
    out.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return out


def to_pdf(data: ReportData, tables: list[ReportTable], map_png: bytes, age_png: bytes) -> bytes:
    """A4 pages: title, the map, the tables (Chinese in the STSong-Light CID font)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import cm
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer

    styles = _pdf_styles()
    width = A4[0] - 3 * cm

    def image(png: bytes, max_height: float) -> Image:
        w, h = ImageReader(io.BytesIO(png)).getSize()
        scale = min(width / w, max_height / h)
        return Image(io.BytesIO(png), width=w * scale, height=h * scale)

    cell = data.cell
    chain = " › ".join(f"{c['name']} ({c['code']})" for c in data.chain)
    story: list[Any] = [
        Paragraph(escape(f"{cell['name']} {cell['code']}"), styles["title"]),
        Paragraph(
            escape(f"{LEVEL_NAMES_ZH[data.level]} ({data.level}) {chain} · ")
            + f"{data.area.area_m2:,.0f} m²",
            styles["body"],
        ),
        Spacer(1, 0.3 * cm),
        image(map_png, 16 * cm),
    ]
    for table in tables:
        story.append(Paragraph(escape(table.title), styles["h2"]))
        if table.key == "pipes_by_decade":
            story.append(image(age_png, 6 * cm))
        if table.rows:
            story.append(_pdf_table(table, styles))
        if table.note:
            story.append(Paragraph(escape(table.note), styles["note"]))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
        title=f"{cell['name']} {cell['code']}",
        author="citytwin",
    )
    doc.build(story)
    return buf.getvalue()
