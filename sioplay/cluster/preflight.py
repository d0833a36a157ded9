"""What must hold before a cluster starts: no cluster running from this home, the ports free, a Redis that answers,
and on a shared Redis no live nodes under this supervisor's name.

A dead supervisor's processes still running from this home are adopted by the start (see `cluster/adopted.py`)
when they run with the settings it asks for; otherwise the start is refused and they keep serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from sioplay.cluster.bus_view import hear_nodes
from sioplay.cluster.recovery import (
    Orphan,
    adoption_conflicts,
    adoption_refused,
    lock_holder,
    lock_orphans,
    lock_path,
    orphans,
    read_state_or_none,
    record_lock_holder,
)
from sioplay.common.hints import command_hint
from sioplay.common.pids import ProcessRef, terminate
from sioplay.common.ports import port_is_free, port_owner
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import LIVE_PHASES, ClusterState, is_running, state_path, write_state
from sioplay.errors import ClusterError, PortInUseError, RedisError
from sioplay.settings import Settings

__all__ = [
    "MIN_REDIS_VERSION",
    "check_can_start",
    "check_name_is_free",
    "check_redis",
    "clean_up_after",
    "supervisor_lock",
]

log = logging.getLogger(__name__)

# Redis 5 is the oldest sioplay is known to run on; the embedded one is 6.2 or newer.
MIN_REDIS_VERSION = (5, 0)
# Per command: a Redis that accepts the connection and never answers is an error within seconds, not a hang.
_REDIS_CHECK_TIMEOUT_S = 3.0
# How long the name check listens to the bus, in heartbeat intervals: one, and room for a late beat.
_HEARD_WITHIN_INTERVALS = 1.5


def check_can_start(settings: Settings, nodes: int) -> list[Orphan]:
    """Refuse if a cluster runs from `settings.home` or a port is taken; return the processes of a dead supervisor
    that the start will adopt (the ports they hold are theirs), or none."""
    state = _readable_state(settings.home)
    adopted: list[Orphan] = []
    if state is not None:
        if is_running(state):
            raise ClusterError(
                f"a cluster is already running from {settings.home} (supervisor pid {state.supervisor.pid}); "
                f"'{command_hint(settings.home, 'sioplay cluster stop')}' stops it"
            )
        adopted = orphans(state)
        if adopted and (conflicts := adoption_conflicts(state, settings)):
            raise ClusterError(adoption_refused(settings.home, state, adopted, conflicts))
        if not adopted:
            clean_up_after(settings.home, state, settings.stop_timeout_s)
    if settings.redis_url is not None:
        check_redis(settings.redis_url)
    if adopted:
        return adopted
    if settings.redis_url is not None:
        # This home's own nodes were adopted (above) or stopped: the nodes heard now are another supervisor's.
        check_name_is_free(settings)
    _check_port(settings.public_port, settings.host, "public port", "choose another with --port")
    if settings.node_port_base is not None:
        for port in range(settings.node_port_base, settings.node_port_base + nodes):
            _check_port(port, settings.host, "node port", "choose other node ports with --node-port-base")
    return []


def _readable_state(home: Path) -> ClusterState | None:
    """The state of `home`. Without one (unreadable or removed), the lock file says whether anything of the last
    supervisor runs: then the start is refused; else an unreadable state.json is set aside."""
    state, unreadable = read_state_or_none(home)
    if state is not None:
        return state
    if (holder := lock_holder(home)) is not None:
        raise ClusterError(
            f"a cluster is already running from {home} (supervisor pid {holder.pid}); "
            f"'{command_hint(home, 'sioplay cluster stop')}' stops it"
        )
    if (recorded := lock_orphans(home)) is not None:
        listed = ", ".join(f"{orphan.role} (pid {orphan.ref.pid})" for orphan in recorded[1])
        raise ClusterError(
            f"the state file of {home} is {'unreadable' if unreadable else 'gone'} and its dead supervisor's "
            f"{listed} still run: without their state they cannot be adopted; "
            f"'{command_hint(home, 'sioplay cluster stop')}' stops them"
        )
    if unreadable is None:
        return None
    if not lock_path(home).exists():
        raise ClusterError(unreadable)
    aside = state_path(home).with_name("state.json.unreadable")
    state_path(home).replace(aside)
    log.warning("%s; nothing of it runs (the lock file says so): moved it to %s", unreadable, aside)
    return None


def check_redis(url: str, timeout_s: float = _REDIS_CHECK_TIMEOUT_S) -> str | None:
    """Redis at `url` answers PING with these credentials, and is new enough; its version if it may say.

    One RedisError line names what failed: unreachable, silent, refused credentials, too old. A user
    limited as the nodes' should be (PUBLISH, SUBSCRIBE, PING) may not run INFO: its version is then unknown.
    """
    endpoint = RedisEndpoint.from_url(url)
    try:
        endpoint.command("PING", timeout_s=timeout_s)
    except RedisError as exc:
        if isinstance(exc.__cause__, TimeoutError):
            raise RedisError(f"Redis at {endpoint.where} did not answer within {timeout_s:g} s") from exc
        raise
    try:
        info = endpoint.command("INFO", "server", timeout_s=timeout_s)
    except RedisError as exc:
        if "NOPERM" in str(exc):
            return None
        raise
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    match = re.search(r"^redis_version:(\d+)\.(\d+)", text, re.MULTILINE)
    if match is None:
        return None
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_REDIS_VERSION:
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        raise RedisError(f"Redis at {endpoint.where} is {version[0]}.{version[1]}; sioplay needs {wanted} or newer")
    return f"{version[0]}.{version[1]}"


def check_name_is_free(settings: Settings) -> None:
    """Refuse if nodes under this supervisor's name (`NAME/...`, or plain `node-N`) are live on the shared bus.

    Their heartbeats say so: every node beats once a heartbeat interval, so listening a little longer hears
    each. The ids would be refused on the bus anyway; this says it before anything is spawned.
    """
    # Within the silence, after which the nodes forget an observer and would wait for it again.
    listen_s = settings.heartbeat_interval_s * min(_HEARD_WITHIN_INTERVALS, settings.heartbeat_misses)
    mine = [node for node in hear_nodes(settings, listen_s) if _is_ours(node.node, settings.name)]
    if not mine:
        return
    where = ", ".join(f"{node.node} (pid {node.pid or '?'} on host {node.host or 'unknown'})" for node in mine)
    who = f"{settings.name} is" if settings.name is not None else "node ids without a --name are"
    raise ClusterError(
        f"{who} already in cluster {settings.cluster} on this Redis: nodes {where}; give this supervisor its own --name"
    )


def _is_ours(node_id: str, name: str | None) -> bool:
    """Whether `node_id` is one this supervisor's nodes could take: NAME/anything, or a plain id without a name."""
    return node_id.startswith(f"{name}/") if name is not None else "/" not in node_id


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
def supervisor_lock(home: Path) -> Iterator[int]:
    """Held for a supervisor's whole life, so that two can never run from one home; the kernel drops it on death.

    Yields the lock file's descriptor, for the supervisor to record its processes in (`record_lock_holder`).
    """
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not O_APPEND: Linux appends every pwrite on such a descriptor, whatever its offset.
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(f"another supervisor is running from {home}") from None
        record_lock_holder(file.fileno())
        yield file.fileno()
