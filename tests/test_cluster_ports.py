"""Which ports `cluster start` takes as free: what a node could listen on, TIME_WAIT or not."""

from __future__ import annotations

import os
import socket

import psutil
import pytest

from sioplay.common.ports import free_port, port_is_free, port_owner
from tests.helpers import wait_until


def time_wait_on(port: int) -> bool:
    return any(
        conn.status == psutil.CONN_TIME_WAIT and conn.laddr and conn.laddr.port == port
        for conn in psutil.net_connections(kind="tcp4")
    )


def test_time_wait_left_by_a_stopped_server_does_not_take_the_port() -> None:
    port = free_port()
    with socket.socket() as listener:
        # As aiohttp sets it for the nodes; connections in TIME_WAIT keep their listener's SO_REUSEADDR.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        # The side that closes first keeps the TIME_WAIT: here the server, as when a node drains.
        served.close()
        client.recv(1)
        client.close()
    wait_until(lambda: time_wait_on(port), 5, f"a TIME_WAIT connection on port {port}")
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the check before this fix: it refused the port
    assert port_is_free(port, "127.0.0.1")
    assert port_owner(port) is None


def test_a_listener_or_a_bound_socket_takes_the_port_and_is_named() -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not port_is_free(port, "127.0.0.1")
        assert not port_is_free(port, "0.0.0.0"), "a wildcard bind collides with a listener on one address"
        assert port_owner(port) == f"{psutil.Process().name()} (pid {os.getpid()})"
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", port))
        assert not port_is_free(port, "127.0.0.1")
    assert port_is_free(port, "127.0.0.1")
