"""The ``twin`` command line: the composition root.

It imports every package (nothing imports it), builds the settings once per invocation into the
context, and turns a domain error into ``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import logging
from typing import Any

import typer
from rich.logging import RichHandler
from rich.markup import escape
from typer.core import TyperGroup

from cli.cases import cases_app
from cli.common import console
from cli.components import components_app
from cli.db import db_app
from cli.demo import demo, sample_app, serve
from cli.grid import grid_app
from cli.keys import keys_app
from cli.layers import import_, layers_app
from cli.pipelines import pipelines_app
from cli.raster import raster_app
from cli.report import report
from cli.sensors import sensors_app
from twin.errors import TwinError
from twin.settings import Settings

__all__ = ["app", "main"]


class TwinGroup(TyperGroup):
    """The root group: a domain error of any command is said once, here, and exits 2."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer's vendored click, lately)
        try:
            return super().invoke(ctx)
        except TwinError as exc:
            console.print(f"[bold red]error:[/] {escape(exc.message)}")
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=TwinGroup,
    help="citytwin: a GIS digital-twin server for city governance",
    no_args_is_help=True,
)


@app.callback()
def settings_of_this_run(ctx: typer.Context) -> None:
    # The environment (TWIN_*) is read when a command runs, never at import.
    ctx.obj = Settings()


app.command("report")(report)
app.command("import")(import_)
app.command("serve")(serve)
app.command("demo")(demo)
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")
app.add_typer(layers_app, name="layers")
app.add_typer(grid_app, name="grid")
app.add_typer(components_app, name="components")
app.add_typer(cases_app, name="cases")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(raster_app, name="raster")
app.add_typer(keys_app, name="keys")
app.add_typer(sensors_app, name="sensors")


def main() -> None:  # pragma: no cover - the console script
    """``twin``: warnings of every package on stderr, through the same console as the rest
    (RichHandler prints the time, level and logger's place itself, hence the bare format)."""
    handler = RichHandler(console=console)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    app()
