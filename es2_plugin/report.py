"""Console output shared by every command: one rich console on stderr-safe stdout, progress bars, tables.

Plots live with the numbers they draw (``plots.py``); this module is only the console side.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

_console: Console | None = None


def console() -> Console:
    """The shared console (``NO_COLOR`` and non-terminals are handled by rich)."""
    global _console
    if _console is None:
        _console = Console(stderr=False, highlight=False)
    return _console


def quiet() -> bool:
    return os.environ.get("ES2_QUIET", "") not in ("", "0")


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar; yields ``advance(n=1)`` / ``update(completed)`` through a small handle."""
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    disable = quiet()
    with Progress(*columns, console=console(), transient=False, disable=disable) as bar:
        task = bar.add_task(description, total=total)

        class Handle:
            def advance(self, n: int = 1) -> None:
                bar.advance(task, n)

            def update(self, completed: int, description: str | None = None) -> None:
                bar.update(task, completed=completed, **({"description": description} if description else {}))

            def __call__(self, completed: int) -> None:
                self.update(completed)

        yield Handle()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; floats are shown with 3 significant decimals."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
