"""`sioplay cluster logs`: which logs, which lines, and how they are printed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

from sioplay.cluster.logs import LEVELS, LogLine, at_least, flush, follow, format_line, log_sources, merged_tail
from sioplay.cluster.recovery import read_state_or_none
from sioplay.commands._common import console
from sioplay.errors import ClusterError

__all__ = ["LogsRequest", "show_logs"]


@dataclasses.dataclass(frozen=True, slots=True)
class LogsRequest:
    home: Path
    action: str | None
    node: str | None
    lines: int
    follow: bool
    level: str | None
    as_json: bool
    all_nodes: bool


def show_logs(request: LogsRequest) -> None:
    """Bad options are refused before anything is read or changed."""
    if request.action not in (None, "flush"):
        raise ClusterError(f"unknown logs action {request.action!r}; the only one is 'flush'")
    if request.lines < 0:
        raise ClusterError(f"--lines must be 0 or more, not {request.lines}")
    level = request.level.upper() if request.level else None
    if level is not None and level not in LEVELS:
        raise ClusterError(f"unknown --level {request.level!r}; one of {', '.join(LEVELS)}")
    home = request.home
    if request.action == "flush":
        emptied = flush(home)
        console.print(f"emptied {len(emptied)} log file(s) in {home}", highlight=False)
        return
    nodes = None if request.all_nodes or request.node else _current_nodes(home)

    def sources() -> list[tuple[str, Path]]:
        return log_sources(home, request.node, nodes)

    if not any(path.exists() for _, path in sources()):
        folder = home / "logs"
        raise ClusterError(f"no log of {request.node} in {folder}" if request.node else f"no logs in {folder}")
    _print(merged_tail(sources(), request.lines), level, request.as_json)
    if request.follow:
        try:
            _print(follow(sources, should_stop=lambda: False), level, request.as_json)
        except KeyboardInterrupt:
            return


def _current_nodes(home: Path) -> set[str] | None:
    """The nodes of the last cluster run from `home` (None: unknown, show every log)."""
    state, _ = read_state_or_none(home)
    return {node.id for node in state.nodes} if state is not None else None


def _print(lines: Iterable[LogLine], level: str | None, as_json: bool) -> None:
    for line in lines:
        if level is not None and not at_least(line, level):
            continue
        if as_json:
            print(json.dumps({"source": line.source, "at": line.at or None, "text": line.text}), flush=True)
        else:
            console.print(format_line(line), soft_wrap=True, highlight=False)
