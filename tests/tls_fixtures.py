"""A `--tls dev` cluster started by its CLI in a home of its own, for the TLS tests."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

from sioplay.common.pids import ProcessRef, find
from sioplay.common.ports import free_port
from sioplay.common.state import ClusterState, read_state

CLUSTER_ENV = {"SIOPLAY_HEARTBEAT_INTERVAL_S": "0.2", "SIOPLAY_ROSTER_TIMEOUT_S": "1", "SIOPLAY_SHUTDOWN_GRACE_S": "1"}


def sioplay_command() -> list[str]:
    script = Path(sys.executable).with_name("sioplay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sioplay"]


class TlsCluster:
    """`sioplay cluster start --tls dev` in a home of its own; every process it was seen to have is stopped."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("SIOPLAY_")}
        self.env |= CLUSTER_ENV | {"SIOPLAY_CLUSTER": f"s{uuid.uuid4().hex[:10]}"}
        self.seen: set[ProcessRef] = set()
        self.started: subprocess.CompletedProcess[str] | None = None

    def sioplay(self, *args: str, home: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*sioplay_command(), "--home", str(home or self.home), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def ca(self) -> Path:
        return self.home / "tls" / "dev-ca.pem"

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def state(self) -> ClusterState:
        state = read_state(self.home)
        assert state is not None
        self.seen.update(state.processes())
        self.seen.add(state.supervisor)
        return state

    def get(self, url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes, Any]:
        context = context or ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def stop(self) -> list[str]:
        if read_state(self.home) is not None:
            supervisor = find(self.state().supervisor)
            if supervisor is not None:
                self.seen.update(ProcessRef(child.pid, child.create_time()) for child in supervisor.children(True))
        run = self.sioplay("cluster", "stop")
        left = [process for ref in self.seen if (process := find(ref)) is not None]
        for process in left:
            process.kill()
        psutil.wait_procs(left, timeout=5)
        return [f"pid {process.pid}" for process in left] + ([run.stderr] if run.returncode else [])


def spki_sha256(cert: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
