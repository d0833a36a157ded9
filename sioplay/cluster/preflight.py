"""What must hold before a cluster starts: no cluster running from this home, the ports free."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from sioplay.cluster.recovery import lock_path, record_lock_holder
from sioplay.common.pids import ProcessRef, terminate
from sioplay.common.ports import port_is_free, port_owner
from sioplay.common.state import LIVE_PHASES, ClusterState, is_running, read_state, write_state
from sioplay.errors import ClusterError, PortInUseError
from sioplay.settings import Settings

__all__ = ["check_can_start", "clean_up_after", "supervisor_lock"]

log = logging.getLogger(__name__)


def check_can_start(settings: Settings, nodes: int) -> None:
    """Refuse if a cluster runs from `settings.home` or a port is taken; clean up after a dead supervisor."""
    state = read_state(settings.home)
    if state is not None:
        if is_running(state):
            raise ClusterError(
                f"a cluster is already running from {settings.home} (supervisor pid {state.supervisor.pid}); "
                "'sioplay cluster stop' stops it"
            )
        clean_up_after(settings.home, state, settings.stop_timeout_s)
    _check_port(settings.public_port, settings.host, "public port", "choose another with --port")
    if settings.node_port_base is not None:
        for port in range(settings.node_port_base, settings.node_port_base + nodes):
            _check_port(port, settings.host, "node port", "choose other node ports with --node-port-base")


def _check_port(port: int, host: str, what: str, hint: str) -> None:
    if not port_is_free(port, host):
        owner = port_owner(port) or "a process this user cannot see"
        raise PortInUseError(f"{what} {port} is already in use by {owner}; {hint}")


def clean_up_after(home: Path, state: ClusterState, timeout: float) -> list[ProcessRef]:
    """Stop what a dead supervisor left running (by pid and create time), Redis last; record that nothing runs."""
    left = terminate(state.node_processes(), timeout)
    if state.redis is not None:
        # Only once the nodes are gone: they say goodbye on the bus as they drain.
        left += terminate([state.redis], timeout)
    if left:
        log.warning(
            "stopped %d process(es) left by supervisor pid %d: %s",
            len(left),
            state.supervisor.pid,
            ", ".join(str(ref.pid) for ref in left),
        )
    if state.phase in LIVE_PHASES:
        state.phase = "failed"
        state.error = state.error or f"the supervisor (pid {state.supervisor.pid}) died"
    for node in state.nodes:
        node.pid = node.create_time = None
        if node.status != "errored":
            node.status = "stopped"
    state.transient = []
    state.redis = None
    write_state(home, state)
    return left


@contextlib.contextmanager
def supervisor_lock(home: Path) -> Iterator[None]:
    """Held for a supervisor's whole life, so that two can never run from one home; the kernel drops it on death."""
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(f"another supervisor is running from {home}") from None
        record_lock_holder(file.fileno())
        yield
