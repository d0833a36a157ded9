"""Commands printed as hints, written so that they work as printed: with `--home` unless it is the default."""

from __future__ import annotations

import shlex
from pathlib import Path

from sioplay.settings import default_home

__all__ = ["command_hint"]


def command_hint(home: Path, command: str) -> str:
    """'sioplay cluster stop' as `--home X` needs it: 'sioplay --home X cluster stop' for any home but the default."""
    if Path(home).resolve() == default_home().resolve():
        return command
    return command.replace("sioplay", f"sioplay --home {shlex.quote(str(home))}", 1)
