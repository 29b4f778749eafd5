"""Work written once, run on a sync or an async connection.

A query is a generator ("plan") that yields `Query` steps (SQL and parameters; it receives the
rows) and `Compute` steps (blocking work such as raster reads; it receives the result). The
command line drives it with `run_sync` on a psycopg connection; the API with `run_async` on a
pooled async connection, the blocking steps in a worker thread. The SQL is the same text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    """One statement; the plan receives all its rows as tuples."""

    statement: str | sql.SQL | sql.Composed
    params: dict[str, Any] | list[Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class Compute:
    """Blocking work (file or CPU); the plan receives what ``fn`` returns."""

    fn: Callable[[], Any]
    label: str = ""


Step = Query | Compute
Plan = Generator[Step, Any, T]
OnStep = Callable[[str], None]


def run_sync(conn: psycopg.Connection, plan: Plan[T], on_step: OnStep | None = None) -> T:
    """Drive a plan on a synchronous connection; ``on_step`` hears each step's label."""
    try:
        step = next(plan)
        while True:
            if on_step and step.label:
                on_step(step.label)
            if isinstance(step, Query):
                value: Any = conn.execute(step.statement, step.params).fetchall()
            else:
                value = step.fn()
            step = plan.send(value)
    except StopIteration as done:
        return done.value


async def run_async(conn: psycopg.AsyncConnection, plan: Plan[T]) -> T:
    """Drive a plan on an async connection; blocking steps run in a worker thread."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, Query):
                cur = await conn.execute(step.statement, step.params)
                value: Any = await cur.fetchall()
            else:
                value = await asyncio.to_thread(step.fn)
            step = plan.send(value)
    except StopIteration as done:
        return done.value
