"""What `cluster status` shows: the state file, plus live CPU, memory (psutil) and sockets (/healthz)."""

from __future__ import annotations

import concurrent.futures
import json
import ssl
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sioplay.cluster.bus_view import collect_bus_view, render_bus_view
from sioplay.cluster.health_view import node_condition, redis_condition
from sioplay.common.health import answered_by
from sioplay.common.pids import ProcessRef, find
from sioplay.common.state import ClusterState
from sioplay.common.tls import pinned_context
from sioplay.common.units import format_bytes, format_duration
from sioplay.common.urls import local_url, ui_url

__all__ = ["StatusCollector", "not_running", "render_status"]

_STATUS_STYLES = {
    "online": "green",
    "launching": "yellow",
    "waiting-restart": "yellow",
    "stopping": "dim",
    "stopped": "dim",
    "errored": "bold red",
}


class StatusCollector:
    """Keeps psutil handles between calls, so that a watched table shows CPU without sampling each time."""

    def __init__(self, health_timeout_s: float = 1.0) -> None:
        self.health_timeout_s = health_timeout_s
        self._processes: dict[ProcessRef, psutil.Process] = {}

    def collect(self, state: ClusterState, cpu_sample_s: float = 0.0) -> dict[str, Any]:
        """The JSON of `cluster status --json` for a running cluster (`not_running` has the same keys)."""
        refs = [node.process for node in state.nodes] + [process.process for process in state.transient]
        cpu = self._cpu_percent([ref for ref in refs if ref is not None], cpu_sample_s)
        ports = {ref.pid: port for ref, port in self._ports(state) if ref is not None}
        health = self._healthz(state, ports)
        now = time.time()
        nodes = [
            {
                "id": node.id,
                "pid": node.pid,
                "port": node.port,
                "status": node.status,
                "restarts": node.restarts,
                "uptime_s": round(now - node.started_at, 1) if node.started_at and node.pid else None,
                "cpu_percent": cpu.get(node.pid) if node.pid else None,
                "rss_bytes": self._rss(node.process),
                "sockets": _sockets(health.get(node.pid)),
                "condition": node_condition(node.status, health.get(node.pid)),
                "dependencies": (health.get(node.pid) or {}).get("dependencies"),
                "last_exit": node.last_exit,
                "reason": node.reason,
                "log_tail": node.log_tail,
            }
            for node in state.nodes
        ]
        transient = [
            {
                "id": process.id,
                "pid": process.pid,
                "port": process.port,
                "role": process.role,
                "cpu_percent": cpu.get(process.pid),
                "rss_bytes": self._rss(process.process),
                "sockets": _sockets(health.get(process.pid)),
            }
            for process in state.transient
        ]
        return {
            "running": True,
            "cluster": state.cluster,
            "phase": state.phase,
            "home": state.home,
            "public_port": state.public_port,
            "ui_url": ui_url(state.public_port, tls=state.tls_cert is not None),
            "tls": state.tls_cert is not None,
            "redis_url": state.redis_url,
            "redis": {
                "embedded": state.redis is not None or state.redis_process is not None,
                "pid": state.redis.pid if state.redis else None,
                "binary": state.redis_binary,
                "version": state.redis_version,
                "authenticated": state.redis_user is not None,
                "user": state.redis_user,
                # The embedded Redis's supervision ({"status", "restarts", "last_exit", "reason", "started_at"}).
                "supervision": state.redis_process,
            },
            # Written without its password by the supervisor (sqlalchemy is not imported for a status).
            "db_url": state.db_url,
            "supervisor": state.supervisor.as_json(),
            "uptime_s": round(now - state.started_at, 1),
            "max_memory_bytes": state.max_memory_bytes,
            "nodes": nodes,
            "transient": transient,
            "error": state.error,
            "message": None,
            "bus": collect_bus_view(state, self.health_timeout_s),
        }

    @staticmethod
    def _ports(state: ClusterState) -> list[tuple[ProcessRef | None, int | None]]:
        found = [(node.process, node.port) for node in state.nodes]
        return found + [(process.process, process.port) for process in state.transient]

    def _process(self, ref: ProcessRef) -> psutil.Process | None:
        process = self._processes.get(ref)
        if process is None or not process.is_running():
            process = find(ref)
            if process is None:
                self._processes.pop(ref, None)
                return None
            self._processes[ref] = process
            try:
                process.cpu_percent(None)  # the first call only starts the measurement
            except psutil.Error:
                return None
        return process

    def _cpu_percent(self, refs: list[ProcessRef], sample_s: float) -> dict[int, float | None]:
        primed = {ref for ref in refs if ref not in self._processes}
        processes = {ref: self._process(ref) for ref in refs}
        if primed and sample_s > 0:
            time.sleep(sample_s)
        measured: dict[int, float | None] = {}
        for ref, process in processes.items():
            if process is None or (ref in primed and sample_s <= 0):
                measured[ref.pid] = None
                continue
            try:
                measured[ref.pid] = round(process.cpu_percent(None), 1)
            except psutil.Error:
                measured[ref.pid] = None
        return measured

    def _rss(self, ref: ProcessRef | None) -> int | None:
        process = self._process(ref) if ref is not None else None
        try:
            return int(process.memory_info().rss) if process is not None else None
        except psutil.Error:
            return None

    def _healthz(self, state: ClusterState, ports: dict[int, int | None]) -> dict[int, dict[str, Any]]:
        """Each process's own /healthz answer, by pid; absent when it gave none."""
        targets = {pid: port for pid, port in ports.items() if port is not None}
        if not targets:
            return {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(targets), 16)) as pool:
            tls = pinned_context(Path(state.tls_cert)) if state.tls_cert and Path(state.tls_cert).is_file() else None
            futures = {
                pid: pool.submit(self._health, local_url(state.host, port, tls=state.tls_cert is not None), tls)
                for pid, port in targets.items()
            }
        return {pid: body for pid, future in futures.items() if answered_by(body := future.result(), pid)}

    def _health(self, base_url: str, tls: ssl.SSLContext | None) -> Any:
        # Here, not at the top: `sioplay --help` imports this module and needs no HTTP client.
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=self.health_timeout_s, context=tls) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # 503: a node that is failing still says why.
            try:
                return json.loads(exc.read()) if exc.code == 503 else None
            except ValueError:
                return None
        except (OSError, ValueError):
            return None


def _sockets(body: dict[str, Any] | None) -> int | None:
    return body.get("sockets") if body is not None else None


def not_running(home: Path, state: ClusterState | None) -> dict[str, Any]:
    """The JSON of `cluster status --json` when no cluster runs from `home`: the keys of a running one's.

    What the last run left in the state file fills them; what only a live process could say is None.
    """
    nodes = [
        {
            "id": node.id,
            "pid": None,
            "port": node.port,
            "status": node.status,
            "restarts": node.restarts,
            "uptime_s": None,
            "cpu_percent": None,
            "rss_bytes": None,
            "sockets": None,
            "condition": node.status,
            "dependencies": None,
            "last_exit": node.last_exit,
            "reason": node.reason,
            "log_tail": node.log_tail,
        }
        for node in (state.nodes if state else [])
    ]
    redis = {
        "embedded": state.redis_binary is not None if state else None,
        "pid": None,
        "binary": state.redis_binary if state else None,
        "version": state.redis_version if state else None,
        "authenticated": state.redis_user is not None if state else None,
        "user": state.redis_user if state else None,
        "supervision": state.redis_process if state else None,
    }
    return {
        "running": False,
        "cluster": state.cluster if state else None,
        "phase": state.phase if state else None,
        "home": str(home),
        "public_port": state.public_port if state else None,
        "ui_url": None,
        "tls": state.tls_cert is not None if state else None,
        "redis_url": state.redis_url if state else None,
        "redis": redis,
        "db_url": state.db_url if state else None,
        "supervisor": None,
        "uptime_s": None,
        "max_memory_bytes": state.max_memory_bytes if state else None,
        "nodes": nodes,
        "transient": [],
        "error": state.error if state else None,
        "message": f"no cluster is running from {home}",
    }


def render_status(status: dict[str, Any]) -> RenderableType:
    """A `pm2 list`-like table, the Redis and database in use, the UI address, and why nodes are down."""
    table = Table(
        title=Text(f"cluster {status['cluster']} · {status['phase']} · public port {status['public_port']}"),
        title_justify="left",
    )
    for column in ("node", "pid", "port", "status", "↺", "uptime", "cpu", "mem", "sockets"):
        table.add_column(column, justify="left" if column in ("node", "status") else "right")
    for node in status["nodes"]:
        table.add_row(
            Text(node["id"]),
            _cell(node["pid"]),
            _cell(node["port"]),
            Text(node["condition"], style=_condition_style(node["condition"])),
            str(node["restarts"]),
            format_duration(node["uptime_s"]),
            _percent(node["cpu_percent"]),
            format_bytes(node["rss_bytes"]),
            _cell(node["sockets"]),
        )
    for process in status["transient"]:
        table.add_row(
            Text(f"{process['id']} ({process['role']})", style="dim"),
            _cell(process["pid"]),
            _cell(process["port"]),
            Text("launching" if process["role"] == "replacement" else "stopping", style="yellow"),
            "",
            "",
            _percent(process["cpu_percent"]),
            format_bytes(process["rss_bytes"]),
            _cell(process["sockets"]),
        )
    details = [
        Text(f"redis    {status['redis_url']} · {_redis_detail(status['redis'])}"),
        Text(f"database {status['db_url']}"),
        Text(f"UI       {status['ui_url']}"),
    ]
    for node in status["nodes"]:
        if node["status"] in ("errored", "waiting-restart") and node["reason"]:
            details.append(Text(f"{node['id']}: {node['reason']}", style="red"))
            details.extend(Text(f"    {line}", style="dim") for line in node["log_tail"][-5:])
    return Group(table, *render_bus_view(status.get("bus")), *details)


def _condition_style(condition: str) -> str:
    if condition.startswith(("degraded", "failing")):
        return "bold yellow"
    return _STATUS_STYLES.get(condition, "")


def _redis_detail(redis: dict[str, Any]) -> str:
    """``embedded 7.0.15 (/usr/bin/redis-server), pid 42 · authenticated (ACL user sioplay-node)``; no secret."""
    if redis["embedded"]:
        where = f"embedded {redis['version'] or '?'} ({redis['binary'] or '?'}), pid {_cell(redis['pid'])}"
        condition = redis_condition(redis.get("supervision"))
        if condition:
            where += f", {condition}"
    else:
        where = "external"
    trust = f"authenticated (ACL user {redis['user']})" if redis["authenticated"] else "not authenticated"
    return f"{where} · {trust}"


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"
