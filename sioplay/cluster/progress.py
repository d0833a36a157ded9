"""Each node's steps (spawned, subscribed, healthy; draining, stopped), from the detached supervisor to the CLI.

The supervisor appends one JSON line per step to ``<home>/cluster/progress.jsonl``;
the CLI reads the file from where it stood when the command began while it waits
for the supervisor (the launcher's wait, a control reply, the stop), and draws
the steps: a live Rich table on a terminal, one plain line per step otherwise.
A file, like the control requests, because the supervisor is detached: it needs
no socket, and a CLI that starts reading late still sees every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sioplay.common.state import cluster_dir

__all__ = ["LAUNCH_STEPS", "ProgressLog", "Step", "StepEvent", "progress_path", "read_steps", "shown"]

# "adopted": a node a dead supervisor left running, supervised again instead of spawned.
Step = Literal["spawned", "adopted", "subscribed", "healthy", "draining", "stopped", "failed"]
# A node process on its way up, in order; on its way down it is draining, then stopped.
LAUNCH_STEPS: tuple[Step, ...] = ("spawned", "subscribed", "healthy")
_STYLES: dict[str, str] = {
    "spawned": "yellow",
    "adopted": "yellow",
    "subscribed": "cyan",
    "healthy": "green",
    "draining": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}
# Progress is for the command that is waiting now; past this the supervisor starts the file again.
_MAX_BYTES = 256 * 1024
_POLL_S = 0.1


def progress_path(home: Path) -> Path:
    return cluster_dir(home) / "progress.jsonl"


@dataclasses.dataclass(frozen=True, slots=True)
class StepEvent:
    at: float
    node: str
    step: Step
    pid: int | None
    detail: str = ""

    @classmethod
    def from_json(cls, value: Any) -> StepEvent:
        if (
            not isinstance(value, dict)
            or value.get("step") not in get_args(Step)
            or not isinstance(value.get("node"), str)
        ):
            raise ValueError("not a step")
        pid = value.get("pid")
        return cls(
            float(value["at"]),
            value["node"],
            value["step"],
            pid if isinstance(pid, int) else None,
            str(value.get("detail", "")),
        )


class ProgressLog:
    """The supervisor's side: append a step, flushed at once so that a waiting CLI sees it."""

    def __init__(self, home: Path) -> None:
        self.path = progress_path(home)

    def clear(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")

    def note(self, node: str, step: Step, pid: int | None, detail: str = "") -> None:
        line = orjson.dumps({"at": time.time(), "node": node, "step": step, "pid": pid, "detail": detail}) + b"\n"
        try:
            if self.path.exists() and self.path.stat().st_size > _MAX_BYTES:
                self.path.write_bytes(line)
                return
            with self.path.open("ab") as file:
                file.write(line)
        except OSError:
            # Progress is a view for the CLI: losing a step never stops the supervisor.
            return


def read_steps(path: Path, offset: int, since: float) -> tuple[list[StepEvent], int]:
    """The complete lines after `offset` stamped at or after `since`, and the offset to read from next.

    A file shorter than `offset` was started again by a new supervisor: it is read from its beginning.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    if len(raw) < offset:
        offset = 0
    end = raw.rfind(b"\n") + 1
    if end <= offset:
        return [], offset
    events = []
    for line in raw[offset:end].splitlines():
        try:
            event = StepEvent.from_json(orjson.loads(line))
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
            continue
        if event.at >= since:
            events.append(event)
    return events, end


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S")


class _Board:
    """Each node process's steps so far, in the order the processes first appeared."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.monotonic()
        self.rows: dict[tuple[str, int | None], list[StepEvent]] = {}

    def add(self, event: StepEvent) -> None:
        self.rows.setdefault((event.node, event.pid), []).append(event)

    def render(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=Text(f"{self.title} · {elapsed:.1f} s"), title_justify="left")
        for column in ("node", "pid", "steps", "at"):
            table.add_column(column, justify="right" if column == "pid" else "left")
        for (node, pid), events in self.rows.items():
            trail = Text()
            for index, event in enumerate(events):
                if index:
                    trail.append(" › ", style="dim")
                last = index == len(events) - 1
                style = _STYLES.get(event.step, "") + (" bold" if last else " dim")
                trail.append(event.step + (f" ({event.detail})" if event.detail else ""), style=style)
            table.add_row(node, "-" if pid is None else str(pid), trail, _clock(events[-1].at))
        if not self.rows:
            table.add_row("…", "", Text("waiting for the supervisor", style="dim"), "")
        return table


def _plain(event: StepEvent) -> Text:
    pid = "" if event.pid is None else f"pid {event.pid}"
    text = f"{_clock(event.at)}  {event.node:<10} {event.step:<11} {pid:<10} {event.detail}".rstrip()
    return Text(text)


@contextlib.contextmanager
def shown(home: Path, console: Console, title: str) -> Iterator[None]:
    """Show the steps the supervisor reports while the body waits for it; the last ones too, after it returns."""
    path = progress_path(home)
    try:
        offset = path.stat().st_size
    except FileNotFoundError:
        offset = 0
    since = time.time()
    board = _Board(title)
    live = Live(board.render(), console=console, auto_refresh=False) if console.is_terminal else None
    done = threading.Event()

    def drain() -> None:
        nonlocal offset
        events, offset = read_steps(path, offset, since)
        for event in events:
            if live is None:
                console.print(_plain(event), highlight=False, soft_wrap=True)
            else:
                board.add(event)
        if live is not None:
            live.update(board.render(), refresh=True)

    def pump() -> None:
        while not done.wait(_POLL_S):
            drain()

    if live is not None:
        live.start()
    reader = threading.Thread(target=pump, name="progress", daemon=True)
    reader.start()
    try:
        yield
    finally:
        done.set()
        reader.join()
        drain()
        if live is not None:
            # A command that failed before any node moved (a refused start) leaves no empty table behind.
            live.transient = not board.rows
            live.stop()
