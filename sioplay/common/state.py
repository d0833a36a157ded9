"""The state directory: what a supervisor runs, as one JSON file written atomically.

The supervisor writes it; the cluster commands and the client commands read it
with the one `read_state` to find the cluster, and `is_running` tells whether its
supervisor still lives (same pid and create time).

``<home>/cluster/state.json``::

    {"cluster", "phase", "public_port", "host", "redis_url" (never with its password), "db_url", "started_at",
     "redis_binary", "redis_version", "redis_user",
     "redis_process" (the embedded Redis's status and restarts), "tls_cert",
     "supervisor": {"pid", "create_time"}, "redis": {"pid", "create_time"} | null,
     "nodes": [{"id", "pid", "create_time", "port", "status", "restarts", "started_at",
                "last_exit", "reason", "log_tail"}],
     "transient": [{"id", "pid", "create_time", "port", "role"}], "error", ...}
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from sioplay.common.node_names import matches_node
from sioplay.common.pids import ProcessRef, alive
from sioplay.errors import ClusterError

__all__ = [
    "LIVE_PHASES",
    "ClusterState",
    "NodeRecord",
    "NodeStatus",
    "Phase",
    "TransientProcess",
    "TransientRole",
    "cluster_dir",
    "is_running",
    "private_home",
    "read_state",
    "state_path",
    "write_json_atomic",
    "write_state",
]

NodeStatus = Literal["launching", "online", "stopping", "stopped", "waiting-restart", "errored"]
Phase = Literal["starting", "running", "stopping", "stopped", "failed"]
# A replacement being started during a rolling restart, or an old process being drained.
TransientRole = Literal["replacement", "draining"]

# While the supervisor is in one of these, it may have processes running; after them, it has none.
LIVE_PHASES: frozenset[Phase] = frozenset({"starting", "running", "stopping"})
_VERSION = 1


def cluster_dir(home: Path) -> Path:
    return home / "cluster"


def state_path(home: Path) -> Path:
    return cluster_dir(home) / "state.json"


@dataclasses.dataclass(slots=True)
class NodeRecord:
    id: str
    status: NodeStatus
    pid: int | None = None
    create_time: float | None = None
    port: int | None = None
    restarts: int = 0
    started_at: float | None = None  # wall clock, of the current process
    last_exit: str | None = None  # "code 1", "signal SIGKILL"
    reason: str | None = None  # why it is errored or waiting
    log_tail: list[str] = dataclasses.field(default_factory=list)

    @property
    def process(self) -> ProcessRef | None:
        if self.pid is None or self.create_time is None:
            return None
        return ProcessRef(self.pid, self.create_time)


@dataclasses.dataclass(frozen=True, slots=True)
class TransientProcess:
    id: str
    pid: int
    create_time: float
    port: int
    role: TransientRole

    @property
    def process(self) -> ProcessRef:
        return ProcessRef(self.pid, self.create_time)


@dataclasses.dataclass(slots=True)
class ClusterState:
    cluster: str
    phase: Phase
    home: str
    host: str
    public_port: int
    redis_url: str | None
    db_url: str
    supervisor: ProcessRef
    started_at: float
    redis: ProcessRef | None = None  # the embedded redis-server, when sioplay runs it
    nodes: list[NodeRecord] = dataclasses.field(default_factory=list)
    transient: list[TransientProcess] = dataclasses.field(default_factory=list)
    max_memory_bytes: int | None = None
    error: str | None = None
    # Which redis-server runs (embedded only), and the user the nodes authenticate as (None: no password).
    redis_binary: str | None = None
    redis_version: str | None = None
    redis_user: str | None = None
    # The embedded Redis under supervision: {"status", "restarts", "last_exit", "reason", "started_at"}.
    redis_process: dict[str, Any] | None = None
    # The certificate the nodes serve (HTTPS and WSS); None: plain HTTP.
    tls_cert: str | None = None

    def node(self, node_id: str) -> NodeRecord | None:
        return next((node for node in self.nodes if matches_node(node.id, node_id)), None)

    def node_processes(self) -> list[ProcessRef]:
        """The node processes this supervisor started and recorded, the transient ones included."""
        refs = [ref for node in self.nodes if (ref := node.process) is not None]
        return refs + [process.process for process in self.transient]

    def processes(self) -> list[ProcessRef]:
        """Every process this supervisor started and recorded, Redis last."""
        return self.node_processes() + ([self.redis] if self.redis is not None else [])

    def as_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["version"] = _VERSION
        return value

    @classmethod
    def from_json(cls, value: Any) -> ClusterState:
        if not isinstance(value, dict):
            raise TypeError("not a JSON object")
        value = {key: item for key, item in value.items() if key != "version"}
        value["supervisor"] = ProcessRef(**value["supervisor"])
        value["redis"] = ProcessRef(**value["redis"]) if value.get("redis") else None
        value["nodes"] = [NodeRecord(**node) for node in value.get("nodes", [])]
        value["transient"] = [TransientProcess(**process) for process in value.get("transient", [])]
        state = cls(**value)
        if state.phase not in get_args(Phase):
            raise ValueError(f"unknown phase {state.phase!r}")
        return state


def private_home(home: Path) -> Path:
    """`home`, made if needed and 0700 even if it existed: it holds the logs, the database and the secrets."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        home.chmod(0o700)
    except OSError as exc:
        raise ClusterError(f"cannot make the state directory {home} private: {exc.strerror}") from exc
    return home


def read_state(home: Path) -> ClusterState | None:
    """The state of the cluster last run from `home`, or None if none ever ran there."""
    path = state_path(home)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClusterError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return ClusterState.from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ClusterError(f"{path} is not a sioplay state file ({exc}); remove it if no cluster runs") from exc


def write_state(home: Path, state: ClusterState) -> None:
    write_json_atomic(state_path(home), state.as_json())


def write_json_atomic(path: Path, value: Any) -> None:
    """Readers see the old file or the new one, never half of one; only the owner may read it (URLs hold passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))
        # On disk before the rename: after a power cut the state is the old one or the new one, never empty.
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def is_running(state: ClusterState) -> bool:
    """True while the supervisor that wrote `state` is alive and has not finished."""
    return state.phase in LIVE_PHASES and alive(state.supervisor)
