"""``twin pipelines``: underground pipe networks (CJJ 61)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from layers.pipelines.model import Finding, NetworkData
from twin import db
from twin.errors import TwinError
from twin.settings import Settings

pipelines_app = typer.Typer(
    help="Pipe networks: import (survey tables, GIS lines, EPANET), check, list, drop"
)
console = Console(stderr=True)

Name = Annotated[str, typer.Argument(help="Network name, e.g. water, sewer, gas")]
SkipInvalid = Annotated[bool, typer.Option(help="Load what is usable, report the rest")]
Title = Annotated[str | None, typer.Option(help="A title for the network")]
Utility = Annotated[str | None, typer.Option(help="CJJ 61 class where the data has none: JS...")]
Subclass = Annotated[str | None, typer.Option(help="CJJ 61 sub-class, e.g. JP, YS, WS, TR")]


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


def _findings(title: str, findings: list[Finding], limit: int = 30) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("severity", "where", "ref", "what"):
        table.add_column(col)
    for f in findings[:limit]:
        where = f"{f.table or ''} row {f.row}" if f.row else (f.table or "")
        colour = "red" if f.severity == "error" else "yellow"
        table.add_row(f"[{colour}]{f.severity}[/]", where, f.ref or "", f.message)
    console.print(table)
    if len(findings) > limit:
        console.print(f"... and {len(findings) - limit:,} more (all in the report CSV)")


def _save(
    name: str, read: Callable[[], NetworkData], skip_invalid: bool, title: str | None
) -> None:
    from layers.pipelines.store import NetworkRejected, save_network
    from layers.pipelines.topology import summary

    settings = Settings()
    try:
        with console.status("reading..."):
            data = read()
        with db.connect(db.database_url(settings.db)) as conn:
            with console.status(f"writing network {name}..."):
                result = save_network(
                    conn,
                    name,
                    data,
                    title=title,
                    skip_invalid=skip_invalid,
                    report_dir=Path.cwd(),
                )
            conn.commit()
    except NetworkRejected as exc:
        _findings(f"problems in {exc.result.source}", exc.result.findings)
        if exc.result.report_path:
            console.print(f"report: {exc.result.report_path}")
        _fail(exc)
        return
    except TwinError as exc:
        _fail(exc)
        return
    if result.findings:
        _findings(f"notes on {result.source}", result.findings)
    if result.report_path:
        console.print(f"report: {result.report_path}")
    counts = summary(result.topology)
    console.print(
        f"[green]loaded[/] network {name}: {result.segments:,} pipes, {result.nodes:,} nodes "
        f"from {result.source} in {result.seconds:.1f} s"
        + (f" ({result.skipped:,} unusable rows skipped)" if result.skipped else "")
    )
    console.print(
        "topology: "
        + (", ".join(f"{k} {v}" for k, v in counts.items()) or "no findings")
        + f" (collections {name}_pipes, {name}_nodes, pipe_findings)"
    )


@pipelines_app.command("import")
def import_native(
    name: Name,
    pipes: Annotated[Path, typer.Argument(help="Lines with pipe_id, from_node, to_node")],
    nodes: Annotated[Path, typer.Argument(help="Points with node_id, kind")],
    utility: Utility = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load a network whose pipes name their end nodes (our export, most utility GIS)."""
    from layers.pipelines.native import read_native

    _save(name, lambda: read_native(pipes, nodes, utility=utility), skip_invalid, title)


@pipelines_app.command("import-survey")
def import_survey(
    name: Name,
    points: Annotated[Path, typer.Argument(help="Survey points: 物探点号, X, Y, 特征/附属物...")],
    lines: Annotated[Path, typer.Argument(help="Survey lines: 起点点号, 终点点号, 管径...")],
    crs: Annotated[str, typer.Option(help="CRS of X/Y, e.g. EPSG:4548 (X = northing)")],
    utility: Utility = None,
    subclass: Subclass = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load survey tables (points and lines joined by point numbers), with the survey checks."""
    from layers.pipelines.survey import read_survey

    _save(
        name,
        lambda: read_survey(points, lines, crs=crs, utility=utility, subclass=subclass),
        skip_invalid,
        title,
    )


@pipelines_app.command("import-lines")
def import_lines(
    name: Name,
    file: Annotated[Path, typer.Argument(help="A line file (GeoPackage, Shapefile, ...)")],
    tolerance: Annotated[float, typer.Option(help="Snap end points within this many m")] = 0.5,
    nodes: Annotated[Path | None, typer.Option(help="Points: valves, hydrants, sources")] = None,
    crs: Annotated[str | None, typer.Option(help="CRS when the file does not say")] = None,
    utility: Utility = None,
    subclass: Subclass = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load plain GIS lines; the topology is built by snapping end points."""
    from layers.pipelines.lines import read_lines

    _save(
        name,
        lambda: read_lines(
            file, tolerance_m=tolerance, utility=utility, subclass=subclass, crs=crs, nodes=nodes
        ),
        skip_invalid,
        title,
    )


@pipelines_app.command("import-inp")
def import_inp(
    name: Name,
    file: Annotated[Path, typer.Argument(help="An EPANET .inp file")],
    crs: Annotated[str, typer.Option(help="CRS the (transformed) coordinates are in")] = (
        "EPSG:4326"
    ),
    affine: Annotated[
        str | None, typer.Option(help="a,b,c,d,e,f: x' = a x + b y + c, y' = d x + e y + f")
    ] = None,
    valves: Annotated[
        Path | None, typer.Option(help="CSV of isolation valves: link,node (WNTR's valve layer)")
    ] = None,
    utility: Annotated[str, typer.Option(help="CJJ 61 class")] = "JS",
    subclass: Subclass = "JP",
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load an EPANET model, placed on the map with a CRS or an affine transform."""
    from layers.pipelines.epanet import parse_affine, read_inp, read_valve_layer

    def read() -> NetworkData:
        return read_inp(
            file,
            crs=crs,
            affine=parse_affine(affine) if affine else None,
            utility=utility,
            subclass=subclass,
            isolation_valves=read_valve_layer(valves) if valves else None,
        )

    _save(name, read, skip_invalid, title)


@pipelines_app.command("list")
def list_networks() -> None:
    """The networks, with their sizes."""
    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            rows = conn.execute(
                """
                SELECT n.name, n.title, n.utility, n.gravity,
                  (SELECT count(*) FROM twin.pipe_segments s
                   WHERE s.network = n.name AND s.deleted_at IS NULL),
                  (SELECT count(*) FROM twin.pipe_nodes d
                   WHERE d.network = n.name AND d.deleted_at IS NULL),
                  (SELECT count(*) FROM twin.pipe_findings f WHERE f.network = n.name)
                FROM twin.pipe_networks n ORDER BY n.name
                """
            ).fetchall()
    except TwinError as exc:
        _fail(exc)
        return
    table = Table(title="pipe networks", title_justify="left")
    for col in ("name", "title", "class", "kind", "pipes", "nodes", "findings"):
        table.add_column(col)
    for name, title, util, gravity, segs, nodes, found in rows:
        kind = "gravity" if gravity else "pressure"
        table.add_row(name, title, util, kind, f"{segs:,}", f"{nodes:,}", f"{found:,}")
    Console().print(table)


@pipelines_app.command("check")
def check(name: Name) -> None:
    """Run the topology check and refresh the pipe_findings layer."""
    from layers.pipelines.store import publish
    from layers.pipelines.topology import store_findings, summary

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            found = store_findings(conn, name)
            publish(conn, name)
            conn.commit()
    except TwinError as exc:
        _fail(exc)
        return
    findings = [Finding(f["kind"], f["message"], f["severity"], ref=f["ref"]) for f in found]
    if findings:
        _findings(f"topology of {name}", findings)
    counts = summary(found)
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()) or "no findings")


@pipelines_app.command("drop")
def drop(name: Name) -> None:
    """Remove a network, its collections and its findings."""
    from layers.pipelines.store import drop_network

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            drop_network(conn, name)
            conn.commit()
    except TwinError as exc:
        _fail(exc)
        return
    console.print(f"dropped network {name}")
