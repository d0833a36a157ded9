"""The CLI's side of the supervisor: start it (detached, or attached to the terminal), stop it, find it.

Both starts run `preflight.check_can_start` here, once, before anything is spawned: its
refusal is the CLI's one-line error, not a supervisor's exit reported second-hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from sioplay.cluster.preflight import check_can_start, clean_up_after
from sioplay.cluster.recovery import (
    Orphan,
    lock_holder,
    lock_orphans,
    lock_path,
    orphaned_state,
    read_state_or_none,
    stop_orphans,
)
from sioplay.common.hints import command_hint
from sioplay.common.pids import ProcessRef, find
from sioplay.common.state import LIVE_PHASES, ClusterState, cluster_dir, is_running, private_home, read_state
from sioplay.errors import ClusterError
from sioplay.settings import Settings

if TYPE_CHECKING:
    # Only its type: the CLI starts a supervisor detached without importing it (aiohttp, SQLAlchemy).
    from sioplay.cluster.supervisor import Supervisor

__all__ = [
    "Started",
    "Stopped",
    "adoptable_nodes",
    "run_attached",
    "running_state",
    "start_detached",
    "stop_cluster",
    "supervisor_output",
]

log = logging.getLogger(__name__)

_POLL_S = 0.05
# Beyond the nodes' own start timeout: starting Redis, migrating the database, the supervisor's own start.
_START_MARGIN_S = 30.0
# Beyond the nodes' stop timeout: stopping Redis and writing the last state.
_STOP_MARGIN_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    state: ClusterState
    supervisor: subprocess.Popen[bytes]
    adopted: list[Orphan]  # what a dead supervisor had left running, supervised again by this one


def supervisor_output(home: Path) -> Path:
    return cluster_dir(home) / "supervisor.out"


def start_detached(settings: Settings, nodes: int) -> Started:
    """Spawn `sioplay cluster supervise` in its own session; return once every node is online."""
    adopted = check_can_start(settings, nodes)
    private_home(settings.home)
    output = supervisor_output(settings.home)
    output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The supervisor sets its own umask; this file is opened before it runs.
    with os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        supervisor = subprocess.Popen(
            # Every setting is in the environment: an empty config, not a sioplay.toml of the working directory.
            [sys.executable, "-m", "sioplay", "--config", os.devnull, "cluster", "supervise", "--nodes", str(nodes)],
            env=settings.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return Started(_wait_running(settings, supervisor), supervisor, adopted)
    except KeyboardInterrupt:
        supervisor.send_signal(signal.SIGTERM)
        raise


def adoptable_nodes(home: Path) -> int | None:
    """How many nodes the dead supervisor of `home` ran, while processes of it still run: a start without
    `--nodes` adopts that many; None when there is nothing to adopt."""
    state = orphaned_state(home)
    return len(state.nodes) if state is not None else None


def run_attached(supervisor: Supervisor) -> int:
    """Run `supervisor` in this process until it stops; its exit code."""
    check_can_start(supervisor.settings, len(supervisor.slots))
    return asyncio.run(supervisor.run())


def _wait_running(settings: Settings, supervisor: subprocess.Popen[bytes]) -> ClusterState:
    patience = settings.start_timeout_s + _START_MARGIN_S
    deadline = time.monotonic() + patience
    while True:
        state = read_state(settings.home)
        if state is not None and state.supervisor.pid == supervisor.pid:
            if state.phase == "running":
                return state
            if state.phase not in LIVE_PHASES:
                supervisor.wait(settings.stop_timeout_s + _STOP_MARGIN_S)
                raise ClusterError(state.error or "the supervisor stopped before the cluster was running")
        code = supervisor.poll()
        if code is not None:
            raise ClusterError(f"the supervisor exited with code {code}: {_last_words(settings.home)}")
        if time.monotonic() > deadline:
            supervisor.send_signal(signal.SIGTERM)
            logs = command_hint(settings.home, "sioplay cluster logs")
            raise ClusterError(f"the cluster was not running after {patience:g} s; stopping it (see '{logs}')")
        time.sleep(_POLL_S)


def _last_words(home: Path) -> str:
    try:
        lines = supervisor_output(home).read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "no output"
    return lines[-1].removeprefix("error: ") if lines else "no output"


def running_state(home: Path) -> ClusterState:
    """The state of the running cluster of `home`; ClusterError if none runs."""
    state = read_state(home)
    if state is None or not is_running(state):
        start = command_hint(home, "sioplay cluster start")
        raise ClusterError(f"no cluster is running from {home}; start one with '{start}'")
    return state


@dataclasses.dataclass(frozen=True, slots=True)
class Stopped:
    state: ClusterState | None  # the final state; None if no cluster ever ran from this home
    was_running: bool
    cleaned_up: list[ProcessRef]  # processes left by a supervisor that had died, or was stuck


def stop_cluster(settings: Settings) -> Stopped:
    """Ask the supervisor to stop (SIGTERM) and wait; if it is dead or stuck, stop what it recorded here."""
    home = settings.home
    state, unreadable = read_state_or_none(home)
    holder = lock_holder(home)
    if state is None and holder is None:
        if (recorded := lock_orphans(home)) is not None:
            return Stopped(None, False, stop_orphans(recorded[1], settings.stop_timeout_s))
        # The lock file of a supervisor that ran here names nothing alive: nothing runs, whatever state.json says.
        if unreadable and not lock_path(home).exists():
            raise ClusterError(unreadable)
        return Stopped(None, False, [])
    # With state.json corrupt or removed, the lock still names the supervisor; it stops what it holds in memory.
    supervisor = find(holder) if holder is not None else find(state.supervisor) if state and is_running(state) else None
    if supervisor is not None:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(settings.stop_timeout_s + _STOP_MARGIN_S)
        except psutil.TimeoutExpired:
            log.warning("supervisor pid %d did not stop in time: killing it", supervisor.pid)
            supervisor.kill()
            supervisor.wait(5.0)
    final, _ = read_state_or_none(home)
    if final is None:
        return Stopped(None, supervisor is not None, [])
    cleaned: list[ProcessRef] = []
    if final.phase in LIVE_PHASES or any(find(ref) for ref in final.processes()):
        cleaned = clean_up_after(home, final, settings.stop_timeout_s)
        final = read_state(home)
    return Stopped(final, supervisor is not None, cleaned)
