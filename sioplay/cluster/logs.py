"""Log files of a cluster: one per node plus the supervisor's, size-rotated, and their merged view.

Every line is written as ``<ISO local time with ms> <text>``, so that lines of
different files merge in time order.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import logging.handlers
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rich.text import Text

from sioplay.common.node_names import short_node_id

__all__ = [
    "LEVELS",
    "REDIS",
    "SUPERVISOR",
    "FileTail",
    "LogLine",
    "append_line",
    "configure_supervisor_logging",
    "flush",
    "follow",
    "format_line",
    "log_dir",
    "at_least",
    "level_of",
    "log_sources",
    "merged_tail",
    "node_log_path",
    "redis_log_path",
    "stamp",
    "tail_lines",
]

SUPERVISOR = "supervisor"
REDIS = "redis"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_NODE_FILE = re.compile(r"^node-(\d+)\.log$")
_COLOURS = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")
_READ_BACK = 64 * 1024


def log_dir(home: Path) -> Path:
    return home / "logs"


def node_log_path(home: Path, node_id: str) -> Path:
    # By the local short name: `web1/node-2` logs to node-2.log.
    return log_dir(home) / f"{short_node_id(node_id)}.log"


def stamp(at: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(time.time() if at is None else at)
    return moment.isoformat(timespec="milliseconds")


def append_line(path: Path, text: str) -> None:
    """One stamped line at the end of a file another process writes and rotates (a node's own log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(f"{stamp()} {text}\n".encode(errors="replace"))


def configure_supervisor_logging(
    home: Path, max_bytes: int, backups: int, extra: logging.Handler | None = None
) -> None:
    """The supervisor's own records go to <home>/logs/supervisor.log, stamped like the node lines."""
    path = log_dir(home) / f"{SUPERVISOR}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    )
    logger = logging.getLogger("sioplay")
    logger.handlers[:] = [handler] if extra is None else [handler, extra]
    logger.setLevel(logging.INFO)
    logger.propagate = False


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    source: str  # node id, or "supervisor"
    at: str  # ISO local time, as written
    text: str

    @classmethod
    def parse(cls, source: str, raw: str) -> LogLine:
        at, _, text = raw.partition(" ")
        if len(at) < 19 or at[10] != "T":
            return cls(source, "", raw)
        return cls(source, at, text)


def redis_log_path(home: Path) -> Path:
    return home / "redis" / "redis.log"


def log_sources(home: Path, node: str | None = None, nodes: set[str] | None = None) -> list[tuple[str, Path]]:
    """(source, path) of the node logs in node order, then the supervisor's; or only `node`'s (`redis`: the
    embedded Redis's). `nodes`, when given, leaves out the logs of other nodes (removed by a scale)."""
    folder = log_dir(home)
    if node == REDIS:
        return [(REDIS, redis_log_path(home))]
    if node is not None:
        return [(node, folder / f"{node}.log")]
    numbered = sorted(
        (int(match.group(1)), path)
        for path in folder.glob("node-*.log")
        if (match := _NODE_FILE.match(path.name)) and (nodes is None or path.stem in nodes)
    )
    sources = [(path.stem, path) for _, path in numbered]
    supervisor = folder / f"{SUPERVISOR}.log"
    if supervisor.exists():
        sources.append((SUPERVISOR, supervisor))
    return sources


def flush(home: Path) -> list[Path]:
    """Empty every log file in place (writers keep appending to them) and remove the rotated ones, like `pm2 flush`."""
    emptied = []
    for path in [*log_dir(home).glob("*.log"), redis_log_path(home)]:
        if path.exists():
            os.truncate(path, 0)
            emptied.append(path)
    for path in log_dir(home).glob("*.log.*"):
        path.unlink(missing_ok=True)
    return emptied


def level_of(line: LogLine) -> str | None:
    """The level a line was logged at, when it says (lines a node printed itself do not)."""
    match = _LEVEL.search(line.text[:80])
    return match.group(1) if match else None


def at_least(line: LogLine, level: str) -> bool:
    found = level_of(line)
    return found is not None and LEVELS.index(found) >= LEVELS.index(level)


def _tail(path: Path, lines: int) -> list[str]:
    if lines <= 0:
        return []
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            chunk = min(size, _READ_BACK)
            while True:
                file.seek(size - chunk)
                data = file.read(chunk)
                if data.count(b"\n") > lines or chunk == size:
                    break
                chunk = min(size, chunk * 4)
    except FileNotFoundError:
        return []
    text = data.decode(errors="replace").splitlines()
    if chunk < size:
        text = text[1:]  # the first line was cut by the seek
    return text[-lines:]


def tail_lines(path: Path, lines: int) -> list[str]:
    return _tail(path, lines)


def _stamped(source: str, raws: list[str], at: str = "") -> list[LogLine]:
    """Lines of one file; an unstamped one (a traceback's) takes the time of the line before, to merge with it."""
    parsed = []
    for raw in raws:
        line = LogLine.parse(source, raw)
        if line.at:
            at = line.at
        else:
            line = dataclasses.replace(line, at=at)
        parsed.append(line)
    return parsed


def merged_tail(sources: list[tuple[str, Path]], lines: int) -> list[LogLine]:
    """The last `lines` lines of every source, merged in time order (pm2 logs --merge-logs)."""
    merged = [line for source, path in sources for line in _stamped(source, _tail(path, lines))]
    merged.sort(key=lambda line: line.at)
    return merged


def follow(
    sources: Callable[[], list[tuple[str, Path]]],
    should_stop: Callable[[], bool],
    poll_s: float = 0.2,
) -> Iterator[LogLine]:
    """Lines appended to the sources from now on, like ``tail -F``: through rotation, and files that appear later."""
    tails = {path: FileTail(source, path, from_end=True) for source, path in sources()}
    try:
        while not should_stop():
            for source, path in sources():
                tail = tails.get(path)
                if tail is None:
                    tail = tails[path] = FileTail(source, path, from_end=False)
                yield from tail.read()
            time.sleep(poll_s)
    finally:
        for tail in tails.values():
            tail.close()


class FileTail:
    """One followed file; it keeps the old file open across a rotation until it has read it to the end."""

    def __init__(self, source: str, path: Path, from_end: bool) -> None:
        self.source = source
        self.path = path
        self._pending = b""
        self._at = ""
        self._file = self._open(from_end)

    def _open(self, from_end: bool) -> IO[bytes] | None:
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return None
        if from_end:
            file.seek(0, os.SEEK_END)
        return file

    def read(self) -> Iterator[LogLine]:
        if self._file is None:
            self._file = self._open(from_end=False)
            if self._file is None:
                return
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)  # truncated in place
        data = self._file.read()
        if self._rotated():
            self._file.close()
            self._file = self._open(from_end=False)
            data += self._file.read() if self._file is not None else b""
        *lines, self._pending = (self._pending + data).split(b"\n")
        parsed = _stamped(self.source, [raw.decode(errors="replace") for raw in lines], self._at)
        if parsed:
            self._at = parsed[-1].at
        yield from parsed

    def _rotated(self) -> bool:
        assert self._file is not None
        try:
            return self.path.stat().st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def format_line(line: LogLine, width: int = 10) -> Text:
    """``HH:MM:SS node-2     | text`` with a colour per source."""
    colour = "dim" if line.source == SUPERVISOR else _colour(line.source)
    text = Text()
    text.append(f"{line.at[11:19] or '--:--:--'} ", style="dim")
    text.append(f"{line.source:<{width}} |", style=colour)
    text.append(f" {_without_source(line)}")
    return text


def _without_source(line: LogLine) -> str:
    """A node's line without its node id: the file keeps it (each line says whose it is), the column shows it."""
    level, _, rest = line.text.partition(" ")
    node_id, _, after = rest.partition(" ")
    if node_id == line.source or node_id.endswith(f"/{line.source}"):
        return f"{level} {after}"
    return line.text


def _colour(source: str) -> str:
    match = re.search(r"(\d+)$", source)
    return _COLOURS[(int(match.group(1)) - 1) % len(_COLOURS)] if match else "white"
