"""Logging, configured once per process."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Throttle", "configure_cli_logging", "configure_node_logging"]


class Throttle:
    """At most one report per key every `every_s` seconds, so that a flood leaves a line, not a log full of it."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> str | None:
        """None while `key` was reported recently (counted); else a suffix for the line saying how many were held."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._suppressed.pop(key, 0)
        return f" ({held} more since the last report)" if held else ""


class _NodeIdFilter(logging.Filter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = self.node_id
        return True


class _NodeLogFile(logging.handlers.RotatingFileHandler):
    """The node's own rotated log; its stdout and stderr follow the current file, so that what is printed rather
    than logged (a traceback Python writes itself) lands there too, and no write of the node waits for a reader."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, maxBytes=max_bytes, backupCount=backups)
        self._redirect_output()

    def doRollover(self) -> None:  # noqa: N802 - the name logging gives it
        super().doRollover()
        self._redirect_output()

    def _redirect_output(self) -> None:
        if self.stream is None:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd in (1, 2):
            os.dup2(self.stream.fileno(), fd)


def configure_node_logging(
    node_id: str, level: str = "INFO", log_file: Path | None = None, max_bytes: int = 0, backups: int = 0
) -> None:
    """One line per record: ISO time, level, node id and pid, logger, message; in `log_file` (rotated past
    `max_bytes`) when given, else on stderr. The time leads, so that `cluster logs` merges files in time order."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if log_file is None else _NodeLogFile(log_file, max_bytes, backups)
    )
    handler.addFilter(_NodeIdFilter(node_id))
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(node_id)s pid=%(process)d %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Undo the CLI's Rich console logging: a node's lines go to its log file as plain text.
    package = logging.getLogger("sioplay")
    package.handlers.clear()
    package.setLevel(logging.NOTSET)
    package.propagate = True
    # engine.io/socket.io log every packet at INFO; keep them for --log-level DEBUG.
    for noisy in ("engineio.server", "socketio.server", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_cli_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, console=None, rich_tracebacks=verbose)
    logger = logging.getLogger("sioplay")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False
