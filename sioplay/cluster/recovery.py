"""Acting on a cluster whose state file or supervisor is gone.

`state.json` is a copy of the supervisor's memory; the lock file is the truth about
whether a supervisor lives: the kernel holds its flock for exactly the supervisor's
life, and the supervisor writes its own pid and create time into it, with those of
every process it runs (a second copy of the pids, in a file nobody else writes). So
`stop` and `status` can always find a live supervisor, even with `state.json` corrupt
or deleted, and a dead supervisor's processes are found from the last state it wrote,
or from the lock file when that state is gone too (the orphans).
The next `cluster start` adopts them when it would run them as they run (`adoption_conflicts`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from pathlib import Path
from typing import IO

import orjson

from sioplay.common.node_names import full_node_id
from sioplay.common.pids import ProcessRef, alive, terminate
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import LIVE_PHASES, ClusterState, cluster_dir, read_state, state_path
from sioplay.common.tls import served_files
from sioplay.errors import ClusterError
from sioplay.settings import Settings

_POLL_S = 0.05
_LOCK_BLOCK = 4096
# The role of the embedded Redis among a supervisor's processes; every other role names a node.
REDIS_ROLE = "redis"
# `cluster status` exits with this when the supervisor is dead but processes it started still run.
ORPHANS_EXIT_CODE = 3

__all__ = [
    "ORPHANS_EXIT_CODE",
    "REDIS_ROLE",
    "Orphan",
    "adoption_conflicts",
    "adoption_refused",
    "current_state",
    "StateFileStamp",
    "left_running",
    "lock_holder",
    "lock_orphans",
    "lock_path",
    "orphaned_state",
    "orphans",
    "orphans_message",
    "read_state_or_none",
    "recorded_processes",
    "record_lock_holder",
    "stop_orphans",
]


def lock_path(home: Path) -> Path:
    return cluster_dir(home) / "supervisor.lock"


def record_lock_holder(file_descriptor: int, processes: list[Orphan] | None = None) -> None:
    """Write this process's reference and those of `processes` it runs into the lock file it holds.

    One write at offset 0 of whole 4 KiB blocks, padded with spaces (JSON allows them) and never
    shorter than the last: a reader sees the old record or the new one, not an empty or cut one.
    """
    record = orjson.dumps(
        {
            **ProcessRef.of(os.getpid()).as_json(),
            "processes": [{"role": orphan.role, **orphan.ref.as_json()} for orphan in processes or []],
        }
    )
    size = max(os.fstat(file_descriptor).st_size, -(-len(record) // _LOCK_BLOCK) * _LOCK_BLOCK)
    os.pwrite(file_descriptor, record.ljust(size), 0)


def _read_lock_record(file: IO[bytes]) -> tuple[ProcessRef, list[Orphan]] | None:
    try:
        value = orjson.loads(file.read())
        processes = [
            Orphan(item["role"], ProcessRef(item["pid"], item["create_time"])) for item in value.get("processes", [])
        ]
        return ProcessRef(value["pid"], value["create_time"]), processes
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None


def _lock_record(home: Path) -> tuple[bool, tuple[ProcessRef, list[Orphan]] | None]:
    """Whether a supervisor holds the lock of `home`, and what the lock file records (None: nothing readable)."""
    try:
        file = lock_path(home).open("rb")
    except FileNotFoundError:
        return False, None
    with file:
        try:
            # A shared lock is refused exactly while a supervisor holds its exclusive one.
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            fcntl.flock(file, fcntl.LOCK_UN)
            held = False
        return held, _read_lock_record(file)


def lock_holder(home: Path) -> ProcessRef | None:
    """The live supervisor holding the lock of `home`, or None when nobody holds it."""
    held, record = _lock_record(home)
    if not held or record is None:
        return None
    return record[0] if alive(record[0]) else None


def lock_orphans(home: Path) -> tuple[ProcessRef, list[Orphan]] | None:
    """The dead supervisor of `home` and what it ran that still lives, as its lock file records them: what `stop`
    and `status` act on when `state.json` is gone or unreadable too. None while a supervisor holds the lock, or
    when nothing it recorded lives."""
    held, record = _lock_record(home)
    if held or record is None:
        return None
    supervisor, processes = record
    left = [orphan for orphan in processes if alive(orphan.ref)]
    return (supervisor, left) if left else None


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


def recorded_processes(state: ClusterState) -> list[Orphan]:
    """Every process `state` names, with its role: the nodes, the transient ones, Redis last."""
    found = [Orphan(node.id, ref) for node in state.nodes if (ref := node.process) is not None]
    found += [Orphan(f"{process.id} ({process.role})", process.process) for process in state.transient]
    if state.redis is not None:
        found.append(Orphan(REDIS_ROLE, state.redis))
    return found


def orphans(state: ClusterState) -> list[Orphan]:
    """The processes of `state` still alive after its supervisor died (empty while it lives)."""
    if state.phase not in LIVE_PHASES or alive(state.supervisor):
        return []
    return [orphan for orphan in recorded_processes(state) if alive(orphan.ref)]


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


def left_running(home: Path, state: ClusterState | None) -> tuple[ProcessRef, list[Orphan]] | None:
    """The dead supervisor of `home` and what it left running, from `state`, or from the lock file without one."""
    if state is None:
        return lock_orphans(home)
    left = orphans(state)
    return (state.supervisor, left) if left else None


def stop_orphans(left: list[Orphan], timeout: float) -> list[ProcessRef]:
    """Stop `left` by pid and create time, Redis last (the nodes say goodbye on the bus as they drain)."""
    nodes = [orphan.ref for orphan in left if orphan.role != REDIS_ROLE]
    redis = [orphan.ref for orphan in left if orphan.role == REDIS_ROLE]
    return terminate(nodes, timeout) + terminate(redis, timeout)


def orphans_message(home: Path, supervisor: ProcessRef, left: list[Orphan]) -> str:
    listed = ", ".join(f"{orphan.role} (pid {orphan.ref.pid})" for orphan in left)
    return (
        f"the supervisor of {home} (pid {supervisor.pid}) is dead; still running unsupervised: {listed}. "
        "'sioplay cluster start' with the settings they run with adopts them; 'sioplay cluster stop' stops them"
    )
