"""The supervisor: Redis first, then N nodes on one public port, kept running until told to stop.

Signal handlers only record the signal. The main loop ticks: it handles the
recorded signals by name, reaps nodes that exited and restarts them with the
restart policy, checks health and memory, runs requests from the CLI one at a
time (rolling restart, scale), and writes the state file when it changed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from sioplay.cluster import control
from sioplay.cluster.control import Request
from sioplay.cluster.logs import append_line, node_log_path
from sioplay.cluster.node_count import MAX_NODES
from sioplay.cluster.policy import Crash, RestartPolicy
from sioplay.cluster.preflight import supervisor_lock
from sioplay.cluster.process import LineSink, NodeProcess, describe_exit
from sioplay.cluster.progress import ProgressLog
from sioplay.cluster.recovery import Orphan, StateFileStamp, orphaned_state, record_lock_holder, recorded_processes
from sioplay.cluster.redis_server import NODE_USER, EmbeddedRedis, RedisBinary
from sioplay.cluster.redis_supervision import RedisWatch
from sioplay.common.hints import command_hint
from sioplay.common.node_names import full_node_id, matches_node, short_node_id
from sioplay.common.pids import ProcessRef, alive, terminate
from sioplay.common.ports import free_port, port_is_free
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import (
    ClusterState,
    NodeRecord,
    NodeStatus,
    Phase,
    TransientProcess,
    TransientRole,
    write_state,
)
from sioplay.common.tls import health_check_ssl, served_files
from sioplay.common.units import count_of, format_bytes
from sioplay.db import schema
from sioplay.db.url import hide_password
from sioplay.errors import ClusterError, SioplayError
from sioplay.settings import Settings

__all__ = ["MAX_NODES", "Supervisor"]

log = logging.getLogger(__name__)

TICK_S = 0.1
# state.json is rewritten at least this often, even when nothing changed.
STATE_REWRITE_S = 5.0
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclasses.dataclass(slots=True)
class Slot:
    """One node id and the process that currently serves it."""

    node_id: str
    index: int  # 0-based, for node_port_base
    status: NodeStatus = "launching"
    process: NodeProcess | None = None
    successor: NodeProcess | None = None  # during a rolling restart, until it is healthy
    port: int | None = None  # the own port this node id was last served on
    restarts: int = 0
    crashes: list[Crash] = dataclasses.field(default_factory=list)
    restart_at: float | None = None
    last_exit: str | None = None
    reason: str | None = None
    log_tail: list[str] = dataclasses.field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        nodes: int,
        on_line: LineSink | None = None,
        on_running: Callable[[ClusterState], None] | None = None,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ClusterError(f"the number of nodes must be between 1 and {MAX_NODES}, not {nodes}")
        self.settings = settings.replace(db_url=settings.effective_db_url)
        self.home = settings.home
        self.policy = RestartPolicy.from_settings(settings)
        self.slots = [Slot(full_node_id(settings.name, index + 1), index) for index in range(nodes)]
        self.phase: Phase = "starting"
        self.error: str | None = None
        self.redis: EmbeddedRedis | None = None
        self.redis_watch: RedisWatch | None = None
        self.on_line = on_line
        self.on_running = on_running
        self._redis_ref: ProcessRef | None = None
        self._ref = ProcessRef.of(os.getpid())
        self._started_wall = time.time()
        self._signals: list[signal.Signals] = []
        self._stopping = False
        self._force = False
        self._queue: collections.deque[Request] = collections.deque()
        self._operation: asyncio.Task[None] | None = None
        self._draining: list[NodeProcess] = []
        self.progress = ProgressLog(self.home)
        self._session: aiohttp.ClientSession | None = None
        self._next_health_check = 0.0
        # Notified after every tick, for operations that wait on what the tick changes (slot statuses).
        self._ticked = asyncio.Condition()
        self._written: dict[str, object] | None = None
        self._written_at = 0.0
        self._written_stamp: StateFileStamp | None = None
        self._lock_fd: int | None = None
        self._in_lock_file: list[Orphan] = []

    # Lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until INT or TERM, stop; 0 after a clean stop, 1 if the cluster failed.

        `preflight.check_can_start` has passed before this runs (see `launcher`); the lock
        still refuses a second supervisor that raced past it.
        """
        with supervisor_lock(self.home) as self._lock_fd:
            # Read before this supervisor's first save replaces it: what a dead supervisor left running is adopted.
            previous = orphaned_state(self.home)
            control.clear_requests(self.home)
            self.progress.clear()
            self._install_signal_handlers()
            self._save()
            try:
                if await self._boot(previous):
                    await self._serve()
            except SioplayError as exc:
                self.error = str(exc)
                log.error("%s", exc)
            except Exception as exc:
                # A bug: still stop every process below, and leave the traceback in supervisor.log.
                self.error = f"the supervisor failed: {exc!r}"
                log.exception("the supervisor failed")
            finally:
                await self._shutdown()
        return 1 if self.error else 0

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in _HANDLED_SIGNALS:
            loop.add_signal_handler(signum, self._signals.append, signum)

    async def _boot(self, previous: ClusterState | None) -> bool:
        """Redis, database, nodes; True once every node is online, False if told to stop first.

        `previous` is the state of a dead supervisor whose processes still run: they are adopted, not
        replaced, so that no client of theirs is dropped and the public port is served throughout.
        """
        if self.settings.redis_url is None:
            await self._embedded_redis(previous)
        else:
            # A wrong password or certificate is one clear error here, not N nodes failing their health checks.
            await asyncio.to_thread(RedisEndpoint.from_url(self.settings.redis_url).command, "PING")
        if await schema.ensure(self.settings.effective_db_url):
            log.info("created and seeded %s", hide_password(self.settings.effective_db_url))
        self._handle_signals()
        if self._stopping:
            return False
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=1.0),
            connector=aiohttp.TCPConnector(ssl=health_check_ssl(self.settings)),
        )
        if previous is not None:
            await self._adopt(previous)
        for slot in self.slots:
            if slot.process is None:
                await self._launch(slot)
        deadline = time.monotonic() + self.settings.start_timeout_s
        while not self._settled(self.slots, deadline):
            await self._tick()
            if self._stopping:
                return False
        self.phase = "running"
        state = self._save()
        log.info(
            "cluster %r running: %d nodes on public port %d",
            self.settings.cluster,
            len(self.slots),
            self.settings.public_port,
        )
        if self.on_running is not None:
            self.on_running(state)
        return True

    async def _embedded_redis(self, previous: ClusterState | None) -> None:
        """Start the embedded Redis, or adopt the one a dead supervisor left; either way on its port and users."""
        port = RedisEndpoint.from_url(previous.redis_url).port if previous and previous.redis_url else None
        binary = RedisBinary.of(previous.redis_binary) if previous and previous.redis_binary else None
        self.redis = EmbeddedRedis(self.home / "redis", port=port, channels=f"{self.settings.cluster}:*", binary=binary)
        if previous is not None and previous.redis is not None and alive(previous.redis):
            self.redis.adopt(previous.redis)
            log.info("adopted the embedded redis-server pid %d on %s", self.redis.pid, self.redis.public_url)
        else:
            await asyncio.to_thread(self.redis.start)
            log.info("embedded redis-server pid %d on %s", self.redis.pid, self.redis.public_url)
        self.redis_watch = RedisWatch(self.redis, self.policy)
        if previous is not None and previous.redis_process is not None:
            self.redis_watch.restarts = int(previous.redis_process.get("restarts", 0))
        self._redis_ref = self.redis_watch.ref
        # The nodes' credential, which reaches them through their environment only.
        self.settings = self.settings.replace(redis_url=self.redis.url)

    async def _adopt(self, previous: ClusterState) -> None:
        """Supervise the nodes of `previous` still running; stop those this start has no slot for, and the
        replacements and draining processes of an operation the dead supervisor left unfinished."""
        assert self._session is not None
        unwanted = [process.process for process in previous.transient]
        for record in previous.nodes:
            ref = record.process
            if ref is None or not alive(ref):
                continue
            slot = next((slot for slot in self.slots if slot.node_id == record.id), None)
            if slot is None or record.port is None:
                unwanted.append(ref)
                continue
            process = self._node_process(slot, record.port)
            try:
                process.adopt(ref, record.started_at, self._session)
            except ProcessLookupError:
                continue  # it died just now: launched as any node without a process
            slot.process, slot.port, slot.status, slot.restarts = process, record.port, "launching", record.restarts
            self.progress.note(slot.node_id, "adopted", ref.pid, f"port {record.port}")
            log.info(
                "%s adopted: pid %d, port %d (left by supervisor pid %d)",
                slot.node_id,
                ref.pid,
                record.port,
                previous.supervisor.pid,
            )
            self._note(process, f"adopted by supervisor pid {self._ref.pid}")
        stopped = await asyncio.to_thread(terminate, unwanted, self.settings.stop_timeout_s)
        if stopped:
            pids = ", ".join(str(ref.pid) for ref in stopped)
            log.info("stopped %s left by the dead supervisor: pid %s", count_of(len(stopped), "process"), pids)

    def _settled(self, slots: list[Slot], deadline: float) -> bool:
        """True when every slot is online and ready (start and scale return a usable cluster); raises if one is
        errored or time is up."""
        for slot in slots:
            if slot.status == "errored":
                raise ClusterError(f"{slot.node_id} errored: {slot.reason}")
        late = [slot.node_id for slot in slots if not (slot.status == "online" and slot.process and slot.process.ready)]
        if not late:
            return True
        if time.monotonic() > deadline:
            logs = command_hint(self.home, "sioplay cluster logs")
            within = f"{self.settings.start_timeout_s:g} s"
            raise ClusterError(f"{', '.join(late)} not healthy within {within}; see '{logs}'")
        return False

    async def _serve(self) -> None:
        while not self._stopping:
            await self._tick()

    async def _shutdown(self) -> None:
        """SIGTERM to every node (they drain), SIGKILL at the deadline, reap; Redis last."""
        self._stopping = True
        self.phase = "stopping"
        if self._operation is not None:
            self._operation.cancel()
            await asyncio.gather(self._operation, return_exceptions=True)
        processes = self._all_processes()
        for slot in self.slots:
            if slot.status != "errored":
                slot.status = "stopping"
        for process in processes:
            process.expected = True
            self.progress.note(process.node_id, "draining", process.pid)
            if self._force:
                process.kill()
            else:
                process.terminate()
        self._save()
        deadline = time.monotonic() + self.settings.stop_timeout_s
        while any(process.running for process in processes) and not self._force and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            self._handle_signals()
        for process in processes:
            if process.running:
                log.warning("%s (pid %s) did not stop in time: killing it", process.node_id, process.pid)
                process.kill()
        codes = await asyncio.gather(*(process.wait(5.0) for process in processes))
        for process, code in zip(processes, codes, strict=True):
            self._note(process, f"stopped ({describe_exit(code)})")
            self.progress.note(process.node_id, "stopped", process.pid, describe_exit(code))
        await asyncio.gather(*(process.close() for process in processes))
        for slot in self.slots:
            slot.process = slot.successor = None
            if slot.status != "errored":
                slot.status = "stopped"
        self._draining.clear()
        if self.redis_watch is not None:
            await self.redis_watch.close()
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop, self.settings.stop_timeout_s)
            self._redis_ref = None
        if self._session is not None:
            await self._session.close()
        self.phase = "failed" if self.error else "stopped"
        self._save()
        log.info("cluster %r %s", self.settings.cluster, self.phase)

    def _all_processes(self) -> list[NodeProcess]:
        processes = [process for slot in self.slots for process in (slot.process, slot.successor) if process]
        return processes + self._draining

    # The tick ----------------------------------------------------------------------------

    async def _tick(self) -> None:
        await asyncio.sleep(TICK_S)
        self._handle_signals()
        await self._reap()
        if self.redis_watch is not None and not self._stopping:
            await self.redis_watch.tick()
            self._redis_ref = self.redis_watch.ref
        await self._restart_due()
        self._check_launching()
        self._check_health()
        self._take_requests()
        self._save()
        async with self._ticked:
            self._ticked.notify_all()

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            getattr(self, f"handle_{signum.name.removeprefix('SIG').lower()}")()

    def handle_int(self) -> None:
        if self._stopping:
            log.warning("second SIGINT: killing the nodes now")
            self._force = True
        else:
            log.info("SIGINT: stopping")
            self._stopping = True

    def handle_term(self) -> None:
        if not self._stopping:
            log.info("SIGTERM: stopping")
        self._stopping = True

    def handle_hup(self) -> None:
        log.info("SIGHUP: rolling restart of every node")
        self._queue.append(Request("restart"))

    async def _reap(self) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None or process.running or process.expected:
                continue
            slot.process = None
            await process.close()
            self._crashed(slot, process)

    def _crashed(self, slot: Slot, process: NodeProcess) -> None:
        now = time.monotonic()
        slot.crashes.append(Crash(at=now, uptime_s=now - process.started_at))
        slot.last_exit = describe_exit(process.returncode)
        slot.log_tail = process.tail()
        why = f"exited with {slot.last_exit}" + (f" ({process.kill_reason})" if process.kill_reason else "")
        verdict = self.policy.decide(slot.crashes, now)
        self.progress.note(slot.node_id, "failed", process.pid, why)
        if verdict.restart:
            slot.status = "waiting-restart"
            slot.restart_at = now + verdict.delay_s
            # Status shows this while the node is down, so it says when it comes back.
            slot.reason = f"{why}; {verdict.reason}"
            log.warning("%s (pid %s) %s: %s", slot.node_id, process.pid, why, verdict.reason)
            self._note(process, f"{why}: {verdict.reason}")
            return
        slot.status = "errored"
        slot.restart_at = None
        last = slot.log_tail[-1] if slot.log_tail else "no output"
        slot.reason = f"{why}, {verdict.reason}; left down. Last output: {last}"
        log.error("%s (pid %s) %s", slot.node_id, process.pid, slot.reason)
        self._note(process, f"{why}: {verdict.reason}; errored, left down")

    async def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.status == "waiting-restart" and slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                await self._launch(slot)

    def _check_launching(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if slot.status != "launching" or process is None or not process.running:
                continue
            # Answering is enough: a node restarted while Redis is down waits for it, alive, instead of crash-looping.
            if process.answered:
                slot.status = "online"
                log.info("%s online: pid %s, port %d", slot.node_id, process.pid, process.port)
            elif now - process.watched_at > self.settings.start_timeout_s:
                process.kill(f"no /healthz answer within {self.settings.start_timeout_s:g} s")

    def _check_health(self) -> None:
        now = time.monotonic()
        if now < self._next_health_check:
            return
        self._next_health_check = now + self.settings.health_interval_s
        ceiling = self.settings.max_memory_bytes
        for slot in self.slots:
            process = slot.process
            if slot.status != "online" or process is None or not process.running:
                continue
            # Only a node that does not answer, or says a task of its own died, is replaced; not one whose
            # Redis or database is down (it is alive, not ready, and recovers by itself).
            silent = now - process.last_ok
            if process.failing:
                process.kill(f"failing: {'; '.join(process.failing)}")
                continue
            if silent > self.settings.health_timeout_s:
                process.kill(f"no /healthz answer for {silent:.0f} s")
                continue
            rss = process.rss_bytes()
            if ceiling is not None and rss is not None and rss > ceiling and not self._restart_pending(slot):
                log.warning(
                    "%s uses %s, above %s: restarting it", slot.node_id, format_bytes(rss), format_bytes(ceiling)
                )
                self._queue.append(Request("restart", node=slot.node_id))

    def _restart_pending(self, slot: Slot) -> bool:
        return slot.successor is not None or any(
            request.action == "restart" and request.node in (None, slot.node_id) for request in self._queue
        )

    # Requests ----------------------------------------------------------------------------

    def _take_requests(self) -> None:
        if self.phase != "running":
            return
        for taken in control.take_requests(self.home):
            if isinstance(taken, str):
                log.warning("%s", taken)
            else:
                self._queue.append(taken)
        if self._queue and (self._operation is None or self._operation.done()):
            self._operation = asyncio.create_task(self._perform(self._queue.popleft()), name="operation")

    async def _perform(self, request: Request) -> None:
        try:
            if request.action == "restart":
                message = await self.restart(request.node)
            elif request.action == "stop":
                message = await self.stop_node(request.node)
            elif request.action == "start":
                message = await self.start_node(request.node)
            else:
                message = await self.scale(request.nodes)
            ok = True
        except ClusterError as exc:
            ok, message = False, str(exc)
            log.error("%s", message)
        except Exception as exc:
            # A bug: the CLI still gets an answer, and supervisor.log the traceback.
            ok, message = False, f"the supervisor failed to {request.action}: {exc!r}"
            log.exception("%s", message)
        if request.id is not None:
            self._save()  # the CLI prints the state as soon as it has the reply
            control.reply(self.home, request.id, ok, message)

    async def restart(self, node_id: str | None) -> str:
        """Rolling restart: each node's replacement is healthy before the old process is stopped."""
        if node_id is None:
            # A node stopped on purpose stays stopped: `cluster start --node` brings it back.
            slots = [slot for slot in self.slots if slot.status != "stopped"]
        else:
            slots = [self._slot(node_id)]
            if slots[0].status == "stopped":
                raise ClusterError(f"{node_id} is stopped; start it with 'sioplay cluster start --node {node_id}'")
        for slot in slots:
            await self._replace(slot)
        return f"restarted {', '.join(slot.node_id for slot in slots)}"

    async def stop_node(self, node_id: str | None) -> str:
        """Stop one node and keep it down: no restart until `start_node`."""
        slot = self._slot(node_id or "")
        if slot.status == "stopped":
            return f"{slot.node_id} is already stopped"
        process, slot.process = slot.process, None
        slot.status, slot.restart_at = "stopping", None
        if process is not None:
            await self._retire(process)
        slot.status, slot.reason = "stopped", "stopped with 'cluster stop --node'"
        log.info("%s stopped on request", slot.node_id)
        return f"stopped {slot.node_id}"

    async def start_node(self, node_id: str | None) -> str:
        """Start a node that `stop_node` stopped; return once it is healthy."""
        slot = self._slot(node_id or "")
        if slot.status != "stopped":
            return f"{slot.node_id} is already {slot.status}"
        slot.crashes.clear()
        slot.reason = None
        await self._launch(slot)
        deadline = time.monotonic() + self.settings.start_timeout_s
        async with self._ticked:
            await self._ticked.wait_for(lambda: self._settled([slot], deadline))
        log.info("%s started on request", slot.node_id)
        return f"started {slot.node_id}"

    async def scale(self, nodes: int | None) -> str:
        if nodes is None or not 1 <= nodes <= MAX_NODES:
            raise ClusterError(f"the number of nodes must be between 1 and {MAX_NODES}, not {nodes}")
        before = len(self.slots)
        if nodes == before:
            return f"already {count_of(before, 'node')}"
        if nodes > before:
            added = [Slot(full_node_id(self.settings.name, index + 1), index) for index in range(before, nodes)]
            self.slots.extend(added)
            for slot in added:
                await self._launch(slot)
            deadline = time.monotonic() + self.settings.start_timeout_s
            async with self._ticked:
                await self._ticked.wait_for(lambda: self._settled(added, deadline))
        elif nodes < before:
            removed = self.slots[nodes:]
            leaving = [slot.process for slot in removed if slot.process is not None]
            for slot in removed:
                slot.status, slot.process = "stopping", None
            await asyncio.gather(*(self._retire(process) for process in leaving))
            del self.slots[nodes:]
        log.info("scaled from %d to %d nodes", before, nodes)
        return f"scaled from {before} to {count_of(nodes, 'node')}"

    def _slot(self, node_id: str) -> Slot:
        for slot in self.slots:
            if matches_node(slot.node_id, node_id):
                return slot
        raise ClusterError(f"no node {node_id!r}; the nodes are {', '.join(slot.node_id for slot in self.slots)}")

    async def _replace(self, slot: Slot) -> None:
        new = await self._spawn(slot, fresh_port=True)
        slot.successor = new
        # Cancelled here (stop), the replacement stays recorded as successor and the shutdown stops it.
        healthy = await new.wait_online(self.settings.start_timeout_s)
        slot.successor = None
        if not healthy:
            await self._retire(new)
            detail = describe_exit(new.returncode) if new.returncode is not None else "no healthy /healthz"
            raise ClusterError(
                f"{slot.node_id}: the replacement did not become healthy ({detail}); the old process keeps serving"
            )
        old, slot.process, slot.port = slot.process, new, new.port
        slot.status = "online"
        slot.restarts += 1
        slot.crashes.clear()
        slot.restart_at = slot.reason = None
        log.info("%s replaced: pid %s on port %d is online", slot.node_id, new.pid, new.port)
        if old is not None:
            await self._retire(old)

    async def _retire(self, process: NodeProcess) -> None:
        """Stop `process` on purpose and wait for it; it stays visible as draining meanwhile."""
        process.expected = True
        self._draining.append(process)
        self.progress.note(process.node_id, "draining", process.pid)
        # Cancelled here (stop), it stays in _draining and the shutdown stops it.
        code = await process.stop(self.settings.stop_timeout_s)
        self._note(process, f"stopped ({describe_exit(code)})")
        self.progress.note(process.node_id, "stopped", process.pid, describe_exit(code))
        self._draining.remove(process)
        await process.close()

    # Starting nodes ----------------------------------------------------------------------

    async def _launch(self, slot: Slot) -> None:
        slot.process = await self._spawn(slot, fresh_port=False)
        slot.port = slot.process.port
        slot.status = "launching"
        slot.restart_at = None

    async def _spawn(self, slot: Slot, fresh_port: bool) -> NodeProcess:
        base, host = self.settings.node_port_base, self.settings.host
        if fresh_port:
            port = free_port(host)
        elif slot.port is not None and port_is_free(slot.port, host):
            # A crashed node comes back where people, pages and scripts were reaching it.
            port = slot.port
        else:
            port = base + slot.index if base is not None else free_port(host)
        process = self._node_process(slot, port)
        assert self._session is not None
        await process.start(self._session)
        self.progress.note(slot.node_id, "spawned", process.pid, f"port {port}")
        log.info("%s starting: pid %s, port %d", slot.node_id, process.pid, port)
        self._note(process, f"started on port {port} and public port {self.settings.public_port}")
        return process

    def _node_process(self, slot: Slot, port: int) -> NodeProcess:
        process = NodeProcess(
            self.settings, slot.node_id, port, node_log_path(self.home, short_node_id(slot.node_id)), self.on_line
        )
        process.on_step = lambda process, step: self.progress.note(process.node_id, step, process.pid)
        return process

    def _note(self, process: NodeProcess, event: str) -> None:
        """A lifecycle line in the node's own log, as pm2 writes 'App [x] exited with code 1'."""
        append_line(process.log_path, f"[supervisor] pid {process.pid} {event}")

    # State -------------------------------------------------------------------------------

    def state(self) -> ClusterState:
        return ClusterState(
            cluster=self.settings.cluster,
            phase=self.phase,
            home=str(Path(self.home).resolve()),
            host=self.settings.host,
            public_port=self.settings.public_port,
            redis_url=self._redis_url(),
            db_url=hide_password(self.settings.effective_db_url),
            supervisor=self._ref,
            started_at=self._started_wall,
            redis=self._redis_ref,
            nodes=[self._record(slot) for slot in self.slots],
            transient=self._transient(),
            max_memory_bytes=self.settings.max_memory_bytes,
            error=self.error,
            redis_binary=self.redis.binary.path if self.redis and self.redis.binary else None,
            redis_version=self.redis.binary.version_text if self.redis and self.redis.binary else None,
            redis_user=self._redis_user(),
            redis_process=self.redis_watch.as_json() if self.redis_watch is not None else None,
            tls_cert=str(served[0].resolve()) if (served := served_files(self.settings)) else None,
        )

    def _redis_url(self) -> str | None:
        """Where Redis is, for the state file and status: never with a password."""
        if self.redis is not None:
            return self.redis.public_url
        return RedisEndpoint.from_url(self.settings.redis_url).url() if self.settings.redis_url else None

    def _redis_user(self) -> str | None:
        """The ACL user the nodes authenticate as; None when their URL has no password."""
        if self.redis is not None:
            return NODE_USER
        endpoint = RedisEndpoint.from_url(self.settings.redis_url) if self.settings.redis_url else None
        if endpoint is None or endpoint.password is None:
            return None
        return endpoint.username or "default"

    def _record(self, slot: Slot) -> NodeRecord:
        process = slot.process
        ref = process.ref if process is not None else None
        return NodeRecord(
            id=slot.node_id,
            status=slot.status,
            pid=ref.pid if ref else None,
            create_time=ref.create_time if ref else None,
            port=process.port if process else None,
            restarts=slot.restarts,
            started_at=process.started_wall if process else None,
            last_exit=slot.last_exit,
            reason=slot.reason,
            log_tail=slot.log_tail,
        )

    def _transient(self) -> list[TransientProcess]:
        found: list[tuple[NodeProcess, TransientRole]] = [
            (slot.successor, "replacement") for slot in self.slots if slot.successor is not None
        ]
        found += [(process, "draining") for process in self._draining]
        return [
            TransientProcess(process.node_id, process.ref.pid, process.ref.create_time, process.port, role)
            for process, role in found
            if process.ref is not None
        ]

    def _save(self) -> ClusterState:
        state = self.state()
        value = state.as_json()
        # Also when someone else changed or removed the file, and on a timer: the state on disk heals by itself.
        stale = time.monotonic() - self._written_at > STATE_REWRITE_S
        if value != self._written or stale or StateFileStamp.of(self.home) != self._written_stamp:
            write_state(self.home, state)
            self._written, self._written_at = value, time.monotonic()
            self._written_stamp = StateFileStamp.of(self.home)
        processes = recorded_processes(state)
        if self._lock_fd is not None and processes != self._in_lock_file:
            record_lock_holder(self._lock_fd, processes)
            self._in_lock_file = processes
        return state
