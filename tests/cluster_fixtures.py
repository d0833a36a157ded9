"""Fixtures for supervised clusters: short timers, and every process stopped by pid at teardown."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sioplay.client.sim import SimClient
from sioplay.cluster.launcher import start_detached, stop_cluster
from sioplay.cluster.recovery import read_state_or_none
from sioplay.common.pids import ProcessRef, find
from sioplay.common.ports import free_port, port_is_free
from sioplay.common.state import ClusterState, NodeRecord, read_state
from sioplay.settings import Settings
from tests.helpers import async_http_json


def short_timer_settings(home: Path) -> Settings:
    return Settings(
        home=home,
        cluster=f"t{uuid.uuid4().hex[:10]}",
        host="127.0.0.1",
        public_port=free_port(),
        heartbeat_interval_s=0.2,
        heartbeat_misses=3,
        roster_timeout_s=1.0,
        redis_retry_max_s=0.5,
        shutdown_grace_s=1.0,
        stop_timeout_s=3.0,
        start_timeout_s=20.0,
        restart_backoff_initial_s=0.05,
        restart_backoff_max_s=0.4,
        restart_reset_after_s=5.0,
        restart_max_crashes=3,
        restart_crash_window_s=10.0,
        health_interval_s=0.3,
        health_timeout_s=5.0,
    )


class RunningCluster:
    """A cluster started for a test, and every process of it the test has seen."""

    def __init__(self, settings: Settings, seen: set[ProcessRef]) -> None:
        self.settings = settings
        self.seen = seen

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.public_port}"

    def state(self) -> ClusterState:
        state = read_state(self.home)
        assert state is not None, f"no state in {self.home}"
        self.seen.update(state.processes())
        self.seen.add(state.supervisor)
        return state

    def node(self, node_id: str) -> NodeRecord:
        node = self.state().node(node_id)
        assert node is not None, f"no {node_id} in the state"
        return node

    def node_url(self, node: NodeRecord) -> str:
        return f"http://127.0.0.1:{node.port}"

    def stop(self) -> ClusterState:
        stopped = stop_cluster(self.settings)
        assert stopped.was_running and stopped.state is not None
        return stopped.state


class Clusters:
    """Starts clusters in temporary homes; `track` adopts one a test started another way (the CLI)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clusters: list[RunningCluster] = []

    def settings(self, **changes: Any) -> Settings:
        home = self.tmp_path / f"home{len(self.clusters) + 1}"
        return short_timer_settings(home).replace(**changes)

    def track(self, settings: Settings) -> RunningCluster:
        cluster = RunningCluster(settings, set())
        self.clusters.append(cluster)
        return cluster

    def start(self, nodes: int = 3, **changes: Any) -> RunningCluster:
        cluster = self.track(self.settings(**changes))
        started = start_detached(cluster.settings, nodes)
        cluster.seen.add(ProcessRef.of(started.supervisor.pid))
        cluster.state()
        return cluster

    def stop_all(self) -> None:
        for cluster in self.clusters:
            # A test may have left state.json corrupt: what the cluster ran is then in `seen` and the lock file.
            state, _ = read_state_or_none(cluster.home)
            if state is not None:
                cluster.seen.update(state.processes())
                cluster.seen.add(state.supervisor)
                cluster.seen.update(_descendants(state.supervisor))
            stop_cluster(cluster.settings)
            leftovers = [process for ref in cluster.seen if (process := find(ref)) is not None]
            for process in leftovers:
                process.kill()
            psutil.wait_procs(leftovers, timeout=5)


def _descendants(ref: ProcessRef) -> set[ProcessRef]:
    process = find(ref)
    if process is None:
        return set()
    found = set()
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            found.add(ProcessRef(child.pid, child.create_time()))
    return found


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Clusters]:
    made = Clusters(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()


def alive_refs(refs: set[ProcessRef]) -> list[ProcessRef]:
    return [ref for ref in refs if find(ref) is not None]


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free now, for `node_port_base`."""
    for _ in range(100):
        base = free_port()
        if base + count < 65536 and all(port_is_free(port, "127.0.0.1") for port in range(base, base + count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


@contextlib.asynccontextmanager
async def john_and_mary(cluster: RunningCluster) -> AsyncIterator[list[NodeRecord]]:
    """John (user 1) on the first node and Mary (user 2) on the second, in room Maths, John told of Mary.

    Yields the nodes; both clients are disconnected after.
    """
    nodes = (await asyncio.to_thread(cluster.state)).nodes
    john = SimClient(cluster.node_url(nodes[0]), "1", "Maths")
    mary = SimClient(cluster.node_url(nodes[1]), "2", "Maths")
    try:
        await john.connect()
        await mary.connect()
        await john.wait_event("socket-connected", id_socket=mary.sid)
        yield nodes
    finally:
        await asyncio.gather(john.disconnect(), mary.disconnect())


async def complete_maths_users(cluster: RunningCluster, node: NodeRecord) -> set[str]:
    """The id_users in room Maths as `node` answers, which must be a complete answer."""
    _, body, _ = await async_http_json(cluster.node_url(node) + "/rooms/Maths")
    assert body["complete"], body
    return {user["id_user"] for user in body["users"]}
