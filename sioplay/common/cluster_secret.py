"""The cluster's secret: made once per state directory, readable by its owner only, never printed.

Every node signs what it publishes with it (`node/signing.py`), so that whoever
else reaches the cluster's Redis cannot speak for the cluster. Nodes of one host
share it through the state directory; nodes on several hosts are given the same
one through ``SIOPLAY_CLUSTER_SECRET``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from sioplay.errors import ConfigError

__all__ = ["SECRET_FILE", "load_or_create_secret", "parse_secret"]

SECRET_FILE = "cluster-secret"
_SECRET_BYTES = 32
_WAIT_FOR_WRITER_S = 2.0


def parse_secret(text: str, where: str) -> bytes:
    """The key in `text` (hex, at least 32 bytes); ConfigError naming `where`, never the value."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"the cluster secret in {where} is not hexadecimal") from None
    if len(key) < _SECRET_BYTES:
        raise ConfigError(f"the cluster secret in {where} is shorter than {_SECRET_BYTES} bytes")
    return key


def load_or_create_secret(home: Path) -> bytes:
    """The secret of the state directory `home`, made (0600) if it has none yet.

    Nodes started together race to make it: each writes a private temporary
    file and links it into place, so exactly one wins and the others read it.
    """
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        draft = home / f".{SECRET_FILE}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(_SECRET_BYTES) + "\n")
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
        text = path.read_text()
        if text.strip() or time.monotonic() > deadline:
            return parse_secret(text, str(path))
        time.sleep(0.01)
