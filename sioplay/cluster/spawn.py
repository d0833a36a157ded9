"""How every `sioplay node run` child starts, whether the supervisor, a bench or a test starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from sioplay.settings import Settings

__all__ = ["spawn_node"]


def spawn_node(
    settings: Settings,
    node_id: str,
    port: int,
    output: int | IO[bytes],
    *,
    public_port: int | None = None,
    own_session: bool = False,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`sioplay node run` for `node_id` on `port`, with the environment of `settings`, stdout and stderr to `output`.

    `output` is an open file or `subprocess.PIPE`; the node's output is unbuffered, so
    that a reader sees each line as it is written. `own_session` keeps a terminal's
    Ctrl-C from reaching the node: the supervisor stops its nodes itself. The
    Redis URL, which holds the nodes' password, is in the environment, never in
    the arguments: those are in every user's process list. With `log_file`, the node
    logs there itself, rotating it, and `output` should be that file opened to append.
    """
    # Every setting is in the environment: an empty config, not a sioplay.toml that the working directory may hold.
    args = [sys.executable, "-m", "sioplay", "--config", os.devnull]
    args += ["node", "run", "--node-id", node_id, "--port", str(port)]
    if public_port is not None:
        args += ["--public-port", str(public_port)]
    if log_file is not None:
        args += ["--log-file", str(log_file)]
    env = {**settings.child_env(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=own_session,
    )
