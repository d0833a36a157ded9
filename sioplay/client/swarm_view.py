"""What `sioplay swarm` shows: a progress bar while connecting, a live summary, a final table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from sioplay.client.swarm import SwarmPhase, SwarmStats

__all__ = ["SwarmDisplay", "summary_table"]


def summary_table(summary: dict[str, Any], title: str, url: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("url", Text(url))
    clients, connected = summary["clients"], summary["connected"]
    table.add_row("connected", Text(f"{connected}/{clients}", style="green" if connected == clients else "bold red"))
    for node, count in summary["per_node"].items():
        table.add_row(Text(f"  on {node}"), str(count))
    seconds = summary["connect_seconds"]
    table.add_row("all connected in", f"{seconds:.2f} s" if seconds is not None else Text("not yet", style="yellow"))
    table.add_row("reconnects", str(summary["reconnects"]))
    table.add_row("errors", Text(str(summary["errors"]), style="red" if summary["errors"] else ""))
    if summary["last_error"]:
        table.add_row("last error", Text(summary["last_error"], style="red"))
    for reason, count in summary["drops"].items():
        table.add_row(Text(f"dropped: {reason}", style="yellow"), str(count))
    table.add_row("room events heard", str(summary["events"]))
    return table


class SwarmDisplay:
    """Called on every tick with the phase and the stats.

    Transient, so only the final table stays on screen; silent when the console is not a terminal.
    """

    def __init__(self, console: Console, title: str, url: str) -> None:
        self.console = console
        self.title = title
        self.url = url
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._live: Live | None = None

    def __enter__(self) -> SwarmDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_progress()
        if self._live is not None:
            self._live.stop()

    def __call__(self, phase: SwarmPhase, stats: SwarmStats) -> None:
        if not self.console.is_terminal:
            return
        if phase == "connecting":
            self._connecting(stats)
            return
        self._close_progress()
        if self._live is None:
            self._live = Live(console=self.console, transient=True, auto_refresh=False)
            self._live.start()
        table = summary_table(stats.summary(), f"{self.title} · {stats.elapsed:.0f} s", self.url)
        self._live.update(table, refresh=True)

    def _connecting(self, stats: SwarmStats) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("connecting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", markup=False),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("connecting", total=stats.clients, detail="")
        assert self._task is not None
        nodes = ", ".join(f"{node} {count}" for node, count in sorted(stats.per_node.items()) if count)
        detail = f"{nodes} · errors {stats.errors}" if stats.errors else nodes
        self._progress.update(self._task, completed=stats.connected, detail=detail)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
