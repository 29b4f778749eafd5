"""``twin sensors``: register sensors, load readings from files, keep the reading partitions."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from cli.common import console, database_url, settings
from sensors import ingest, registry
from sensors.mqtt import MqttConsumer, broker
from sensors.partitions import Partitions, maintain
from twin import db

sensors_app = typer.Typer(help="Sensors and readings of the live twin")


@asynccontextmanager
async def _connection(url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """In autocommit, as the server's pool: ingest and registration run their own transactions,
    and a burst proposal reads the network in a snapshot transaction of its own."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        yield conn


def _media(path: Path) -> str:
    return "text/csv" if path.suffix.lower() == ".csv" else "application/json"


@sensors_app.command("import")
def sensors_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="GeoJSON points, a JSON list or CSV (lon, lat)")],
) -> None:
    """Register sensors, or update those already registered under the same sensor_id."""
    url = database_url(ctx)

    async def run() -> dict[str, int]:
        async with _connection(url) as conn:
            sensors = registry.parse_sensors(file.read_bytes(), _media(file))
            counts = await registry.register(conn, sensors)
            await conn.commit()
            return counts

    counts = asyncio.run(run())
    console.print(f"sensors: {counts['created']} registered, {counts['updated']} updated")


@sensors_app.command("ingest")
def sensors_ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Readings: CSV sensor,time,value or JSON lines")],
    skip_invalid: Annotated[bool, typer.Option(help="Store the good rows, list the bad")] = False,
) -> None:
    """Load readings from a file, with the same checks and alarm rules as the API."""
    url, config = database_url(ctx), settings(ctx).sensors

    async def run() -> ingest.IngestReport:
        async with _connection(url) as conn:
            fmt: ingest.Format = "csv" if file.suffix.lower() == ".csv" else "jsonl"
            batch = ingest.parse(file.read_bytes(), fmt)
            return await ingest.ingest(conn, batch, config, Partitions(), skip_invalid=skip_invalid)

    with console.status(f"ingesting {file.name}..."):
        report = asyncio.run(run())
    for p in report.problems[:20]:
        console.print(f"  row {p.row}" + (f" ({p.sensor})" if p.sensor else "") + f": {p.reason}")
    if len(report.problems) > 20:
        console.print(f"  ... and {len(report.problems) - 20:,} more")
    console.print(
        f"readings: {report.received:,} received, {report.stored:,} stored, "
        f"{report.duplicates:,} already there, {report.rejected:,} rejected; "
        f"{report.state_changes:,} sensors changed state; alarms {report.alarms_opened} opened, "
        f"{report.alarms_updated} updated, {report.alarms_cleared} cleared "
        f"({report.seconds:.2f} s)"
    )


@sensors_app.command("maintain")
def sensors_maintain(ctx: typer.Context) -> None:
    """Make the coming days' reading partitions and drop those past the retention."""
    url, cfg = database_url(ctx), settings(ctx).sensors

    async def run() -> dict[str, int]:
        async with _connection(url) as conn:
            out = await maintain(
                conn,
                Partitions(),
                cfg.readings_retention_days,
                cfg.readings_partitions_ahead_days,
            )
            await conn.commit()
            return out

    out = asyncio.run(run())
    console.print(
        f"reading partitions: {out['made']} made, {out['dropped']} dropped "
        f"(retention {cfg.readings_retention_days} days)"
    )


@sensors_app.command("mqtt")
def sensors_mqtt(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Broker: mqtt://host:1883 or mqtts://user:pass@host:8883")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Topic filter of readings")] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Client id of the persistent session (TWIN_MQTT_CLIENT_ID)")
    ] = None,
    every: Annotated[float, typer.Option(help="Seconds between two counter lines")] = 5.0,
) -> None:
    """Take readings from an MQTT broker until Ctrl-C, with the API's checks and alarm rules."""
    config = settings(ctx)
    cfg = config.sensors
    url = url or cfg.mqtt_url or "mqtt://127.0.0.1:1883"
    broker(url)  # a wrong URL is said before the database is started
    consumer: MqttConsumer | None = None

    async def run() -> None:
        nonlocal consumer
        pool = db.make_pool(database_url(ctx), config.db, config.limits)
        consumer = MqttConsumer(cfg, pool, Partitions(), url=url, topic=topic, client_id=client_id)
        main = asyncio.current_task()
        assert main is not None
        # systemd stops a service with SIGTERM: stop as cleanly as on Ctrl-C
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await pool.open(wait=False)
        consumer.start()
        console.print(
            f"reading {consumer.broker} topic {consumer.topic} as client {consumer.client_id} "
            "(Ctrl-C stops)"
        )
        shown: dict = {}
        try:
            while True:
                await asyncio.sleep(every)
                status = consumer.status()
                if status != shown:
                    console.print(_mqtt_line(status))
                    shown = status
        except asyncio.CancelledError:
            pass
        finally:
            await consumer.stop()
            await pool.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    if consumer is not None:
        status = consumer.status()
        console.print("stopped: " + _mqtt_line(status))
        if status["last_error"]:
            console.print(f"last error ({status['last_error_at']}): {status['last_error']}")


def _mqtt_line(s: dict) -> str:
    broker = "[green]connected[/]" if s["connected"] else "[red]not connected[/]"
    return (
        f"{s['received']:,} messages ({s['malformed']:,} malformed), {s['readings']:,} readings: "
        f"{s['stored']:,} stored, {s['duplicates']:,} already there, {s['rejected']:,} rejected, "
        f"{s['pending']:,} pending, {s['dropped']:,} dropped; {s['batches']:,} batches, "
        f"alarms {s['alarms_opened']} opened, {s['alarms_cleared']} cleared; broker {broker}"
    )
