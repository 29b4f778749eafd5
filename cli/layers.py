"""``twin import`` and ``twin layers``: publish vector files as layers, list, drop, share them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import connection, console, progress_bar, rows_table
from cli.components import components_import
from layers.importer import ImportRejected, ImportReport, import_file
from layers.registry import drop_layer, list_layers, set_access
from twin import audit
from twin.errors import InvalidParameter

layers_app = typer.Typer(help="Published layers")


def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Any OGR-readable vector file, or CSV with lon/lat")],
    layer: Annotated[str | None, typer.Option(help="Layer name (default: the file name)")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of the coordinates: EPSG code or gcj02")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Load the good rows, report the bad")] = False,
    replace: Annotated[bool, typer.Option(help="Replace an existing layer")] = False,
    append: Annotated[bool, typer.Option(help="Append to an existing layer")] = False,
    source_layer: Annotated[
        str | None, typer.Option(help="Layer inside a multi-layer file")
    ] = None,
    require: Annotated[list[str] | None, typer.Option(help="A field every row must have")] = None,
    title: Annotated[str | None, typer.Option(help="Human title of the layer")] = None,
    report: Annotated[Path | None, typer.Option(help="Where to write the bad-row report")] = None,
) -> None:
    """Publish a vector file as a layer (served as an OGC collection and vector tiles)."""
    if replace and append:
        raise InvalidParameter("choose --replace or --append, not both")
    mode = "replace" if replace else "append" if append else "create"
    if layer == "components":
        # The components layer is the GB/T 30428.2 table: same checks as `twin components
        # import`, with the standard field names (ObjID, ObjName, DeptCode1...) recognised.
        components_import(ctx, file, crs=crs, skip_invalid=skip_invalid, replace=replace)
        return
    try:
        with connection(ctx) as conn, progress_bar() as bar:
            task = bar.add_task(f"{file.name}: reading", total=None)

            def progress(stage: str, done: int, total: int) -> None:
                bar.update(
                    task, description=f"{file.name}: {stage}", completed=done, total=total or None
                )

            result = import_file(
                conn,
                file,
                layer_name=layer,
                crs=crs,
                skip_invalid=skip_invalid,
                mode=mode,
                source_layer=source_layer,
                require=require or (),
                title=title,
                report_path=report,
                progress=progress,
            )
    except ImportRejected as exc:
        print_bad_rows(exc.report)
        raise
    if result.bad_rows:
        print_bad_rows(result)
    rate = result.loaded / result.seconds if result.seconds else 0
    console.print(
        f"[green]loaded[/] {result.loaded:,} of {result.total:,} features into layer "
        f"[bold]{result.layer}[/] ({result.geometry_type}, from {result.source_crs}) in "
        f"{result.seconds:.1f} s ({rate:,.0f} features/s)"
        + (f"; skipped {len(result.bad_rows):,} bad rows" if result.bad_rows else "")
    )


def print_bad_rows(report: ImportReport, limit: int = 30) -> None:
    """The first bad rows of an import, and where the full report is."""
    rows = [(b.row, b.fid, b.reason) for b in report.bad_rows]
    columns = (report.row_label, "fid", "reason")
    title = f"bad rows in {report.file}"
    rows_table(title, columns, rows, right={report.row_label}, limit=limit, to=console)
    if report.report_path:
        console.print(f"full report: {report.report_path}")


@layers_app.command("list")
def layers_list(ctx: typer.Context) -> None:
    """List the published layers."""
    with connection(ctx) as conn:
        found = list_layers(conn)
    rows = [
        (x.name, x.geometry_type, f"{x.feature_count:,}", ", ".join(x.field_names)) for x in found
    ]
    rows_table(
        "published layers", ("name", "geometry", "features", "fields"), rows, right={"features"}
    )


@layers_app.command("drop")
def layers_drop(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Layer to remove")]
) -> None:
    """Remove a published layer and its data."""
    with connection(ctx) as conn:
        drop_layer(conn, name)
    console.print(f"dropped layer {name}")


@layers_app.command("access")
def layers_access(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The layer")],
    read: Annotated[str | None, typer.Option(help="public, viewer, editor or admin")] = None,
    edit: Annotated[str | None, typer.Option(help="editor or admin")] = None,
    department: Annotated[
        str | None, typer.Option(help="Only this department's editors edit it")
    ] = None,
    no_department: Annotated[bool, typer.Option(help="Any editor may edit it again")] = False,
) -> None:
    """Who may read and edit a layer (shown when no option is given)."""
    with connection(ctx, migrated=True) as conn:
        layer = set_access(
            conn,
            name,
            read_role=read,
            edit_role=edit,
            department=department,
            clear_department=no_department,
        )
        if read or edit or department or no_department:
            detail = {
                "read_role": layer.read_role,
                "edit_role": layer.edit_role,
                "department": layer.department,
            }
            audit.record_sync(conn, audit.cli_principal(), "layer.access", name, detail=detail)
        conn.commit()
    owner = f", edited by department {layer.department} only" if layer.department else ""
    console.print(
        f"{name}: read by {layer.read_role} and above, edited by {layer.edit_role}{owner}"
    )
