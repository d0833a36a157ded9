"""Acting on a cluster whose state file or supervisor is gone.

`state.json` is a copy of the supervisor's memory; the lock file is the truth about
whether a supervisor lives: the kernel holds its flock for exactly the supervisor's
life, and the supervisor writes its own pid and create time into it. So `stop` and
`status` can always find a live supervisor, even with `state.json` corrupt or deleted,
and a dead supervisor's processes are found from the last state it wrote (the orphans).
The next `cluster start` adopts them when it would run them as they run (`adoption_conflicts`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from pathlib import Path

import orjson

from sioplay.common.node_names import full_node_id
from sioplay.common.pids import ProcessRef, alive
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import LIVE_PHASES, ClusterState, cluster_dir, read_state, state_path
from sioplay.common.tls import served_files
from sioplay.errors import ClusterError
from sioplay.settings import Settings

_POLL_S = 0.05
# `cluster status` exits with this when the supervisor is dead but processes it started still run.
ORPHANS_EXIT_CODE = 3

__all__ = [
    "ORPHANS_EXIT_CODE",
    "Orphan",
    "adoption_conflicts",
    "adoption_refused",
    "current_state",
    "StateFileStamp",
    "lock_holder",
    "lock_path",
    "orphaned_state",
    "orphans",
    "orphans_message",
    "read_state_or_none",
    "record_lock_holder",
]


def lock_path(home: Path) -> Path:
    return cluster_dir(home) / "supervisor.lock"


def record_lock_holder(file_descriptor: int) -> None:
    """Write this process's reference into the lock file it holds, for `lock_holder` to read."""
    os.ftruncate(file_descriptor, 0)
    os.pwrite(file_descriptor, orjson.dumps(ProcessRef.of(os.getpid()).as_json()), 0)


def lock_holder(home: Path) -> ProcessRef | None:
    """The live supervisor holding the lock of `home`, or None when nobody holds it."""
    try:
        file = lock_path(home).open("rb")
    except FileNotFoundError:
        return None
    with file:
        try:
            # A shared lock is refused exactly while a supervisor holds its exclusive one.
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(file, fcntl.LOCK_UN)
            return None
        try:
            ref = ProcessRef(**orjson.loads(file.read()))
        except (orjson.JSONDecodeError, TypeError):
            return None
    return ref if alive(ref) else None


def read_state_or_none(home: Path) -> tuple[ClusterState | None, str | None]:
    """The state of `home` and None, or None and why it cannot be read (None, None: there is none)."""
    try:
        return read_state(home), None
    except ClusterError as exc:
        return None, str(exc)


@dataclasses.dataclass(frozen=True, slots=True)
class Orphan:
    """A process a dead supervisor started, still running."""

    role: str  # a node id, "redis", or "<node id> (replacement|draining)"
    ref: ProcessRef


def orphans(state: ClusterState) -> list[Orphan]:
    """The processes of `state` still alive after its supervisor died (empty while it lives)."""
    if state.phase not in LIVE_PHASES or alive(state.supervisor):
        return []
    found = [Orphan(node.id, ref) for node in state.nodes if (ref := node.process) is not None]
    found += [Orphan(f"{process.id} ({process.role})", process.process) for process in state.transient]
    if state.redis is not None:
        found.append(Orphan("redis", state.redis))
    return [orphan for orphan in found if alive(orphan.ref)]


def adoption_conflicts(state: ClusterState, settings: Settings) -> list[str]:
    """How running `settings` would differ from what the orphans of `state` run with; empty: they can be adopted.

    A node is adopted as it runs (its environment is its own), so a start that asks for another port, cluster,
    Redis, database, name or certificate must not pretend to have applied it.
    """
    # Here, not at the top: sioplay.db imports SQLAlchemy, which every CLI command would pay for.
    from sioplay.db.url import hide_password

    asked_redis = RedisEndpoint.from_url(settings.redis_url).url() if settings.redis_url else None
    differences: list[tuple[str, object, object]] = [
        ("cluster", state.cluster, settings.cluster),
        ("public port", state.public_port, settings.public_port),
        ("host", state.host, settings.host),
        ("database", state.db_url, hide_password(settings.effective_db_url)),
        ("Redis", _recorded_redis(state), asked_redis),
        ("certificate", state.tls_cert, str(served[0].resolve()) if (served := served_files(settings)) else None),
    ]
    conflicts = [f"{what} {ran} (this start: {asked})" for what, ran, asked in differences if ran != asked]
    named = {full_node_id(settings.name, index + 1) for index in range(len(state.nodes))}
    if {node.id for node in state.nodes} != named:
        ids = ", ".join(node.id for node in state.nodes)
        conflicts.append(f"nodes {ids} (this start names them {', '.join(sorted(named))})")
    return conflicts


def _recorded_redis(state: ClusterState) -> str | None:
    """The external Redis URL the orphans use, None for the embedded one (adopted or started again on its port)."""
    return None if state.redis_binary is not None else state.redis_url


def adoption_refused(home: Path, state: ClusterState, left: list[Orphan], conflicts: list[str]) -> str:
    listed = ", ".join(f"{orphan.role} (pid {orphan.ref.pid})" for orphan in left)
    return (
        f"the supervisor of {home} (pid {state.supervisor.pid}) is dead and {listed} still run, with "
        f"{'; '.join(conflicts)}. Start with the settings they run with to adopt them, "
        "or stop them first with 'sioplay cluster stop'"
    )


def orphaned_state(home: Path) -> ClusterState | None:
    """The last state of the dead supervisor of `home` while processes of it still run; None if none do."""
    state, _ = read_state_or_none(home)
    return state if state is not None and orphans(state) else None


@dataclasses.dataclass(frozen=True, slots=True)
class StateFileStamp:
    """What the supervisor last wrote to `state.json`: any other stamp means someone else changed or removed it."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, home: Path) -> StateFileStamp | None:
        try:
            stat = state_path(home).stat()
        except OSError:
            return None
        return cls(stat.st_ino, stat.st_size, stat.st_mtime_ns)


def current_state(home: Path, wait_s: float) -> ClusterState | None:
    """The state of `home`; while a live supervisor holds the lock but state.json is unreadable or missing, wait
    up to `wait_s` for it to write it again (it does on its next tick)."""
    deadline = time.monotonic() + wait_s
    while True:
        state, unreadable = read_state_or_none(home)
        holder = lock_holder(home)
        if holder is None or (state is not None and state.supervisor.pid == holder.pid) or time.monotonic() > deadline:
            if state is None and unreadable:
                raise ClusterError(unreadable)
            return state
        time.sleep(_POLL_S)


def orphans_message(home: Path, state: ClusterState, left: list[Orphan]) -> str:
    listed = ", ".join(f"{orphan.role} (pid {orphan.ref.pid})" for orphan in left)
    return (
        f"the supervisor of {home} (pid {state.supervisor.pid}) is dead; still running unsupervised: {listed}. "
        "'sioplay cluster start' with the settings they run with adopts them; 'sioplay cluster stop' stops them"
    )
