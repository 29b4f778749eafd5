"""``twin pipelines``: underground pipe networks (CJJ 61)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.models import ArgumentInfo

from cli.common import connection, console, fetch_rows, rows_table
from pipelines.importers.epanet import parse_affine, read_inp, read_valve_layer
from pipelines.importers.lines import read_lines
from pipelines.importers.native import read_native
from pipelines.importers.survey import read_survey
from pipelines.model import Finding, NetworkData
from pipelines.store import (
    NetworkRejected,
    check_network_name,
    drop_network,
    network_name_from,
    publish,
    save_network,
)
from pipelines.topology import store_findings, summary
from twin.errors import InvalidParameter, TwinError

pipelines_app = typer.Typer(
    help="Pipe networks: import (survey tables, GIS lines, EPANET), check, list, drop"
)
Name = Annotated[str, typer.Argument(help="Network name, e.g. water, sewer, gas")]
NameOption = Annotated[
    str | None,
    typer.Option("--name", help="Network name; the default is made from the file name"),
]
SkipInvalid = Annotated[bool, typer.Option(help="Load what is usable, report the rest")]
Title = Annotated[str | None, typer.Option(help="A title for the network")]
Utility = Annotated[str | None, typer.Option(help="CJJ 61 class where the data has none: JS...")]
Subclass = Annotated[str | None, typer.Option(help="CJJ 61 sub-class, e.g. JP, YS, WS, TR")]


def _files(metavar: str, help: str) -> ArgumentInfo:
    """The `[NAME] FILE...` arguments of an import command, shown as ``metavar``."""
    return typer.Argument(metavar=metavar, help=help, show_default=False)


def _given_name(name: str) -> str:
    """A name that is valid but for its capitals is lowercased, and the user told so; any other
    invalid name is refused with the valid one proposed."""
    lower = name.lower()
    if lower != name:
        try:
            check_network_name(lower)
        except TwinError:
            pass
        else:
            console.print(
                escape(f"network name {lower!r} used for {name!r}: network names are lowercase")
            )
            return lower
    return check_network_name(name)


def _name_from_files(paths: list[Path]) -> str | None:
    """The words the file names start with in common (water_pipes.gpkg and water_nodes.gpkg
    give water), else the first file's name, made valid."""
    words = [re.split(r"[\s_.\-]+", p.stem.lower()) for p in paths]
    common = []
    for group in zip(*words, strict=False):
        if len(set(group)) > 1:
            break
        common.append(group[0])
    return network_name_from("_".join(common)) or network_name_from(paths[0].stem)


def _name_and_files(
    command: str, given: list[str], roles: tuple[str, ...], name: str | None
) -> tuple[str, list[Path]]:
    """`[NAME] FILE...` as typed: the network name first when there is one argument more than
    files, else from --name or from the file names."""
    usage = f"twin pipelines {command} [NAME] {' '.join(roles)}"
    if len(given) == len(roles) + 1:
        if name is not None:
            raise InvalidParameter(
                f"the network name is given twice ({given[0]!r} and --name {name!r}): "
                f"keep one ({usage})"
            )
        name, given = given[0], given[1:]
    elif len(given) != len(roles):
        raise InvalidParameter(
            f"{command} takes {len(roles)} file(s) ({', '.join(roles)}) after an optional "
            f"network name, not {len(given)} argument(s): {usage}"
        )
    paths = [Path(g) for g in given]
    if name is not None:
        return _given_name(name), paths
    derived = _name_from_files(paths)
    s = "s" if len(paths) > 1 else ""
    files = ", ".join(p.name for p in paths)
    if derived is None:
        raise InvalidParameter(
            f"no network name can be made from the file name{s} {files} (no letters a-z "
            f"or digits in it): give one, e.g. twin pipelines {command} water "
            f"{' '.join(given)}, or --name water"
        )
    console.print(
        escape(
            f"network name {derived!r} taken from the file name{s} {files} (give another "
            f"before the file{s} or with --name)"
        )
    )
    return derived, paths


def _findings(title: str, findings: list[Finding], limit: int = 30) -> None:
    rows = []
    for f in findings:
        where = f"{f.table or ''} row {f.row}" if f.row else (f.table or "")
        colour = "red" if f.severity == "error" else "yellow"
        rows.append((f"[{colour}]{f.severity}[/]", where, f.ref, f.message))
    columns = ("severity", "where", "ref", "what")
    more = " (all in the report CSV)"
    rows_table(title, columns, rows, limit=limit, more=more, to=console)


def _save(
    ctx: typer.Context,
    name: str,
    read: Callable[[], NetworkData],
    skip_invalid: bool,
    title: str | None,
) -> None:
    try:
        with console.status("reading..."):
            data = read()
        with connection(ctx) as conn, console.status(f"writing network {name}..."):
            result = save_network(
                conn, name, data, title=title, skip_invalid=skip_invalid, report_dir=Path.cwd()
            )
            conn.commit()
    except NetworkRejected as exc:
        _findings(f"problems in {exc.result.source}", exc.result.findings)
        if exc.result.report_path:
            console.print(f"report: {exc.result.report_path}")
        raise
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
    ctx: typer.Context,
    args: Annotated[
        list[str],
        _files(
            "[NAME] PIPES NODES",
            "Network name (default: from the file names), lines with pipe_id, from_node, "
            "to_node, and points with node_id, kind",
        ),
    ],
    name: NameOption = None,
    utility: Utility = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load a network whose pipes name their end nodes (our export, most utility GIS)."""
    network, (pipes, nodes) = _name_and_files("import", args, ("PIPES", "NODES"), name)
    _save(ctx, network, lambda: read_native(pipes, nodes, utility=utility), skip_invalid, title)


@pipelines_app.command("import-survey")
def import_survey(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        _files(
            "[NAME] POINTS LINES",
            "Network name (default: from the file names), survey points (物探点号, X, Y, "
            "特征/附属物...) and survey lines (起点点号, 终点点号, 管径...)",
        ),
    ],
    crs: Annotated[str, typer.Option(help="CRS of X/Y, e.g. EPSG:4548 (X = northing)")],
    name: NameOption = None,
    utility: Utility = None,
    subclass: Subclass = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load survey tables (points and lines joined by point numbers), with the survey checks."""
    network, (points, lines) = _name_and_files("import-survey", args, ("POINTS", "LINES"), name)
    _save(
        ctx,
        network,
        lambda: read_survey(points, lines, crs=crs, utility=utility, subclass=subclass),
        skip_invalid,
        title,
    )


@pipelines_app.command("import-lines")
def import_lines(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        _files(
            "[NAME] FILE",
            "Network name (default: from the file name) and a line file (GeoPackage, "
            "Shapefile, ...)",
        ),
    ],
    name: NameOption = None,
    tolerance: Annotated[float, typer.Option(help="Snap end points within this many m")] = 0.5,
    nodes: Annotated[Path | None, typer.Option(help="Points: valves, hydrants, sources")] = None,
    crs: Annotated[str | None, typer.Option(help="CRS when the file does not say")] = None,
    utility: Utility = None,
    subclass: Subclass = None,
    skip_invalid: SkipInvalid = False,
    title: Title = None,
) -> None:
    """Load plain GIS lines; the topology is built by snapping end points."""
    network, (file,) = _name_and_files("import-lines", args, ("FILE",), name)
    _save(
        ctx,
        network,
        lambda: read_lines(
            file, tolerance_m=tolerance, utility=utility, subclass=subclass, crs=crs, nodes=nodes
        ),
        skip_invalid,
        title,
    )


@pipelines_app.command("import-inp")
def import_inp(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        _files(
            "[NAME] FILE",
            "Network name (default: from the file name, Net6.inp gives net6) and an "
            "EPANET .inp file",
        ),
    ],
    name: NameOption = None,
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
    network, (file,) = _name_and_files("import-inp", args, ("FILE",), name)

    def read() -> NetworkData:
        return read_inp(
            file,
            crs=crs,
            affine=parse_affine(affine) if affine else None,
            utility=utility,
            subclass=subclass,
            isolation_valves=read_valve_layer(valves) if valves else None,
        )

    _save(ctx, network, read, skip_invalid, title)


@pipelines_app.command("list")
def list_networks(ctx: typer.Context) -> None:
    """The networks, with their sizes."""
    rows = fetch_rows(
        ctx,
        """
        SELECT n.name, n.title, n.utility, n.gravity,
          (SELECT count(*) FROM twin.pipe_segments s
           WHERE s.network = n.name AND s.deleted_at IS NULL),
          (SELECT count(*) FROM twin.pipe_nodes d
           WHERE d.network = n.name AND d.deleted_at IS NULL),
          (SELECT count(*) FROM twin.pipe_findings f WHERE f.network = n.name)
        FROM twin.pipe_networks n ORDER BY n.name
        """,
    )
    rows = [
        (
            name,
            title,
            util,
            "gravity" if gravity else "pressure",
            f"{segs:,}",
            f"{nodes:,}",
            f"{found:,}",
        )
        for name, title, util, gravity, segs, nodes, found in rows
    ]
    columns = ("name", "title", "class", "kind", "pipes", "nodes", "findings")
    rows_table("pipe networks", columns, rows)


@pipelines_app.command("check")
def check(ctx: typer.Context, name: Name) -> None:
    """Run the topology check and refresh the pipe_findings layer."""
    name = _given_name(name)
    with connection(ctx) as conn:
        found = store_findings(conn, name)
        publish(conn, name)
        conn.commit()
    findings = [Finding(f["kind"], f["message"], f["severity"], ref=f["ref"]) for f in found]
    if findings:
        _findings(f"topology of {name}", findings)
    counts = summary(found)
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()) or "no findings")


@pipelines_app.command("drop")
def drop(ctx: typer.Context, name: Name) -> None:
    """Remove a network, its collections and its findings."""
    name = _given_name(name)
    with connection(ctx) as conn:
        drop_network(conn, name)
        conn.commit()
    console.print(f"dropped network {name}")
