"""Writes log files as a node does (stamped lines, rotated past a size), for the tests of reading them."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from sioplay.cluster.logs import stamp

__all__ = ["LogFile"]


class LogFile:
    """Appends stamped lines to `path`; past `max_bytes` it becomes path.1, path.1 becomes path.2, ..."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")
        self._size = self._file.tell()

    def write(self, text: str, at: float | None = None) -> None:
        data = f"{stamp(at)} {text}\n".encode(errors="replace")
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("wb")
        self._size = 0

    def close(self) -> None:
        self._file.close()
