"""How many nodes a cluster may have, and what `cluster scale +N` / `-N` / `N` asks for (PM2's `pm2 scale`)."""

from __future__ import annotations

import re

from sioplay.errors import ConfigError

__all__ = ["MAX_NODES", "scale_target"]

MAX_NODES = 64

_SCALE = re.compile(r"^\s*([+-]?)(\d+)\s*$")


def scale_target(text: str, current: int) -> int:
    """The number of nodes `text` asks for: '+2' adds two, '-1' removes one, '6' is six; ConfigError if out of range."""
    match = _SCALE.match(text)
    if match is None:
        raise ConfigError(f"scale takes N, +N or -N (e.g. 6, +2, -1), not {text!r}")
    sign, amount = match.group(1), int(match.group(2))
    target = current + amount if sign == "+" else current - amount if sign == "-" else amount
    if target < 1:
        raise ConfigError(f"cannot scale {text.strip()} from {current}: a cluster keeps at least 1 node")
    if target > MAX_NODES:
        raise ConfigError(f"cannot scale {text.strip()} from {current}: at most {MAX_NODES} nodes")
    return target
