"""The cluster's secret: made once per state directory, readable by its owner only, never printed.

Every node signs what it publishes with it (`node/signing.py`), so that whoever
else reaches the cluster's Redis cannot speak for the cluster. Nodes of one host
share it through the state directory; nodes on several hosts are given the same
one through ``SIOPLAY_CLUSTER_SECRET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sioplay.common.secret_file import SECRET_BYTES, read_or_create_secret
from sioplay.errors import ConfigError

if TYPE_CHECKING:
    from sioplay.settings import Settings

__all__ = ["SECRET_FILE", "existing_secret", "load_or_create_secret", "parse_secret", "settings_secret"]

SECRET_FILE = "cluster-secret"


def parse_secret(text: str, where: str) -> bytes:
    """The key in `text` (hex, at least 32 bytes); ConfigError naming `where`, never the value."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"the cluster secret in {where} is not hexadecimal") from None
    if len(key) < SECRET_BYTES:
        raise ConfigError(f"the cluster secret in {where} is shorter than {SECRET_BYTES} bytes")
    return key


def load_or_create_secret(home: Path) -> bytes:
    """The secret of the state directory `home`, made (0600) if it has none yet."""
    path = home / SECRET_FILE
    return parse_secret(read_or_create_secret(path), str(path))


def settings_secret(settings: Settings) -> bytes:
    """The secret a node of `settings` signs with: ``SIOPLAY_CLUSTER_SECRET`` if given, else its state directory's."""
    if settings.cluster_secret:
        return parse_secret(settings.cluster_secret, "SIOPLAY_CLUSTER_SECRET")
    return load_or_create_secret(settings.home)


def existing_secret(home: Path) -> tuple[bytes | None, Path]:
    """The secret of a cluster started from `home` and where it was looked for; None if it is not readable there.

    Clients never make one: a secret they made would sign tokens no node accepts.
    """
    path = home / SECRET_FILE
    try:
        text = path.read_text()
    except OSError:
        return None, path
    return parse_secret(text, str(path)), path
