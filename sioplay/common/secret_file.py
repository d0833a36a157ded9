"""Secrets kept in files of the state directory: made once, readable by their owner only, never printed.

The cluster's signing key (`cluster_secret.py`) and the embedded Redis's
passwords (`cluster/redis_server.py`) are each one such file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from sioplay.errors import ConfigError

__all__ = ["read_or_create_secret"]

SECRET_BYTES = 32
_WAIT_FOR_WRITER_S = 2.0


def read_or_create_secret(path: Path) -> str:
    """The secret in `path` (stripped), made first (0600, 32 random bytes as hex) if the file does not exist.

    Processes started together race to make it: each writes a private temporary
    file and links it into place, so exactly one wins and the others read it.
    A file others can read is refused: its secret may have leaked.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(SECRET_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    deadline = time.monotonic() + _WAIT_FOR_WRITER_S
    while True:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} can be read by others: 'chmod 600 {path}' or delete it to make a new one")
        text = path.read_text().strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.01)
