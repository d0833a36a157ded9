"""The one settings object of sioplay.

The CLI builds a frozen :class:`Settings` from its options and ``SIOPLAY_*``
variables and passes it explicitly to everything it starts; child processes
get it back through :meth:`Settings.to_env`. This is the only module that reads
the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "default_home"]

ENV_PREFIX = "SIOPLAY_"


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The state directory of this user: ``$XDG_STATE_HOME/sioplay``, else ``~/.local/state/sioplay``."""
    environ = os.environ if environ is None else environ
    state_home = environ.get("XDG_STATE_HOME", "")
    # The XDG rule: a relative value is invalid and ignored.
    base = Path(state_home) if state_home and Path(state_home).is_absolute() else Path.home() / ".local" / "state"
    return base / "sioplay"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    # Where sioplay keeps its runtime files: database, pids, logs. One per user by default (as ~/.pm2),
    # so that every command finds the cluster from any directory; --home / SIOPLAY_HOME for several clusters.
    home: Path = dataclasses.field(default_factory=default_home)
    # SQLAlchemy URL; None means the SQLite file in `home`.
    db_url: str | None = None
    # Redis URL; None means the embedded redis-server the supervisor starts.
    redis_url: str | None = None
    # Namespaces the Redis channels, so that clusters can share one Redis.
    cluster: str = "sioplay"
    # This supervisor's part of the cluster: its nodes are NAME/node-N on the bus, unique across hosts. None keeps
    # the plain node-N of a cluster that lives on one supervisor; every host of a shared Redis must set its own.
    name: str | None = None
    # Hex key that signs the cluster's messages; None means the one made in `home` (see common/cluster_secret.py).
    cluster_secret: str | None = dataclasses.field(default=None, repr=False)
    # Where the nodes listen: loopback unless told otherwise (uvicorn's default), since nothing authenticates
    # a client yet; `--host` opens it up, with a warning (common/exposure.py).
    host: str = "127.0.0.1"
    public_port: int = 5009
    log_level: str = "INFO"

    # Node runtime.
    ws_compression: bool = False
    redis_retry_max_s: float = 2.0
    heartbeat_interval_s: float = 1.0
    heartbeat_misses: int = 3
    roster_timeout_s: float = 2.0
    # How a node answers "who is in room X": "ask" asks every other node per query; "replica" keeps the other
    # nodes' parts from their join/leave deltas and answers from memory while every part is known current
    # (node/roster_replicas.py). Every node of a cluster should run the same mode.
    roster_mode: str = "ask"
    # Tests only: a replica-mode node that skips publishing its part deltas (its heartbeats still tell its
    # part's version), to prove that the other nodes notice within a heartbeat and fetch its part.
    test_skip_part_deltas: bool = False
    bus_max_message_bytes: int = 4 * 1024 * 1024
    max_http_body_bytes: int = 64 * 1024
    # Packets queued for one socket that is not reading; past this it is disconnected.
    max_socket_backlog: int = 1000
    # Kernel send buffer of each websocket (SO_SNDBUF); None leaves it to the kernel's autotuning.
    ws_send_buffer_bytes: int | None = None
    shutdown_grace_s: float = 5.0
    # What one client may take of a node: its CONNECT within this, its request headers within this, at most
    # this many connections from one address, and identity-change events at this rate (a token bucket).
    connect_timeout_s: float = 45.0
    # Engine.IO's heartbeat, which the server sends to every client (socket.io's pingInterval and pingTimeout):
    # a client whose node went silent (a host cut off, no RST) knows after the sum, and can go elsewhere.
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    header_timeout_s: float = 20.0
    max_connections_per_address: int = 4096
    identity_change_rate_per_s: float = 2.0
    identity_change_burst: int = 10
    # HTTP: names a request's Host may carry besides the loopback names and the bound address (DNS rebinding);
    # "*.example.com" matches its subdomains, "*" any name. A comma-separated list in SIOPLAY_ALLOWED_HOSTS.
    allowed_hosts: tuple[str, ...] = ()
    # Who a client is: "none" trusts the id_user it sends (the original's model), "token" wants a JWT whose `sub`
    # is it (node/auth.py). HS256 with the cluster's secret, or RS256/ES256 with `auth_public_key`; the algorithm
    # comes from here, never from the token. A token may live at most `auth_max_ttl_s`; `auth_leeway_s` absorbs
    # clock skew, and a live socket is dropped that long after its `exp`.
    auth: str = "none"
    auth_public_key: Path | None = None
    auth_max_ttl_s: float = 24 * 3600.0
    auth_leeway_s: float = 0.5
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # HTTPS and WSS on every port of the nodes (common/tls.py): "dev" serves the development certificate made once
    # in `home`; a certificate and key file of one's own serve those; "off" with no files is plain HTTP.
    tls: str = "off"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The CA the CLI's clients trust for HTTPS; None: the system's, the state directory's dev CA, and the running
    # cluster's own certificate when the address came from its state.
    tls_ca: Path | None = None

    # Supervisor.
    stop_timeout_s: float = 10.0
    start_timeout_s: float = 30.0
    restart_backoff_initial_s: float = 0.1
    restart_backoff_max_s: float = 15.0
    restart_reset_after_s: float = 30.0
    restart_max_crashes: int = 5
    restart_crash_window_s: float = 60.0
    max_memory_bytes: int | None = None
    log_max_bytes: int = 5 * 1024 * 1024
    log_backups: int = 3
    # How often the supervisor polls a running node's /healthz, and how long a
    # node may go unanswered before it counts as hung and is killed.
    health_interval_s: float = 2.0
    health_timeout_s: float = 10.0
    # None: every node gets a free port of its own; else node-N starts on base+N-1.
    node_port_base: int | None = None

    def __post_init__(self) -> None:
        # A comma-separated string, as SIOPLAY_ALLOWED_HOSTS gives it, is the same list.
        if isinstance(self.allowed_hosts, str):
            object.__setattr__(self, "allowed_hosts", _split_list(self.allowed_hosts))

    @property
    def tls_enabled(self) -> bool:
        return self.tls == "dev" or self.tls_cert is not None

    @property
    def default_db_path(self) -> Path:
        """The SQLite file in `home`, used when no database URL is given."""
        return self.home / "sioplay.db"

    @property
    def effective_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite+aiosqlite:///{self.default_db_path.resolve()}"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from `defaults` (a config file's), then ``SIOPLAY_*`` variables, then ``overrides`` not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = dict(defaults or {})
        if "home" not in values:
            values["home"] = default_home(environ)
        for field in dataclasses.fields(cls):
            key = ENV_PREFIX + field.name.upper()
            if key in environ and environ[key] != "":
                values[field.name] = _parse(field, environ[key], key)
        for name, value in overrides.items():
            if name not in _FIELD_NAMES:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The variables that rebuild these settings in a child process."""
        env: dict[str, str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            if isinstance(value, tuple):
                value = ",".join(value)
            if isinstance(value, Path) or field.name == "home":
                # Children may run elsewhere: the home and the TLS files are found from anywhere.
                value = Path(value).resolve()
            env[ENV_PREFIX + field.name.upper()] = str(value)
        return env

    def child_env(self) -> dict[str, str]:
        """The environment of a child process: ours without any ``SIOPLAY_*``, plus :meth:`to_env`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
        env.update(self.to_env())
        return env

    def validate(self) -> None:
        if self.redis_url is not None:
            RedisEndpoint.from_url(self.redis_url)
        if not self.cluster or len(self.cluster) > 64 or not self.cluster.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"SIOPLAY_CLUSTER must be 1-64 letters, digits, '-' or '_', not {self.cluster!r}")
        if self.name is not None and _NAME.fullmatch(self.name) is None:
            raise ConfigError(
                f"SIOPLAY_NAME must be 1-63 letters, digits, '.', '_' or '-', starting with one, not {self.name[:70]!r}"
            )
        if not 0 < self.public_port < 65536:
            raise ConfigError(f"SIOPLAY_PUBLIC_PORT must be a TCP port, not {self.public_port}")
        for name in (
            "heartbeat_interval_s",
            "roster_timeout_s",
            "ping_interval_s",
            "ping_timeout_s",
            "stop_timeout_s",
            "start_timeout_s",
            "health_interval_s",
            "health_timeout_s",
            "connect_timeout_s",
            "header_timeout_s",
            "identity_change_rate_per_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"SIOPLAY_{name.upper()} must be positive, not {getattr(self, name)}")
        if self.node_port_base is not None and not 0 < self.node_port_base < 65536:
            raise ConfigError(f"SIOPLAY_NODE_PORT_BASE must be a TCP port, not {self.node_port_base}")
        if self.max_memory_bytes is not None and self.max_memory_bytes <= 0:
            raise ConfigError(f"SIOPLAY_MAX_MEMORY_BYTES must be positive, not {self.max_memory_bytes}")
        for name in ("max_connections_per_address", "identity_change_burst"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SIOPLAY_{name.upper()} must be at least 1, not {getattr(self, name)}")
        if self.auth not in ("none", "token"):
            raise ConfigError(f"SIOPLAY_AUTH must be 'none' or 'token', not {self.auth!r}")
        if self.auth_max_ttl_s <= 0 or not 0 <= self.auth_leeway_s <= 60:
            raise ConfigError("SIOPLAY_AUTH_MAX_TTL_S must be positive and SIOPLAY_AUTH_LEEWAY_S 0-60 s")
        if self.roster_mode not in ("ask", "replica"):
            raise ConfigError(f"SIOPLAY_ROSTER_MODE (--roster) must be 'ask' or 'replica', not {self.roster_mode!r}")
        if self.heartbeat_misses < 1:
            raise ConfigError(f"SIOPLAY_HEARTBEAT_MISSES must be at least 1, not {self.heartbeat_misses}")
        if self.tls not in ("off", "dev"):
            raise ConfigError(f"SIOPLAY_TLS (--tls) must be 'dev' or 'off', not {self.tls!r}")
        if self.tls == "dev" and (self.tls_cert or self.tls_key):
            raise ConfigError("give --tls dev or --tls-cert and --tls-key, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key (SIOPLAY_TLS_CERT, SIOPLAY_TLS_KEY) go together")
        for name in self.allowed_hosts:
            if not name or any(char in name for char in " /,@") or not name.isascii():
                raise ConfigError(f"SIOPLAY_ALLOWED_HOSTS must list host names (ASCII, no port), not {name!r}")


# A host part of a node id (see node/bus_message.NODE_ID).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_FIELD_NAMES = {field.name for field in dataclasses.fields(Settings)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse(field: dataclasses.Field[Any], raw: str, key: str) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind.startswith("bool"):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw)
        if kind.startswith("tuple"):
            return _split_list(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a valid {kind.split(' ')[0]}") from None
    return raw
