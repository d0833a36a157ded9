"""The library patches: each one active on the pinned versions, and off, with one warning, when its target moved."""

from __future__ import annotations

import logging

import pytest
import socketio
from aiohttp import web_server
from engineio import async_server, async_socket

from sioplay.node import patches
from sioplay.node.app import Node
from sioplay.settings import Settings


async def test_every_patch_is_active_on_the_pinned_versions(settings: Settings) -> None:
    node = Node(settings, "node-p", port=1)
    assert node.patches.active == patches.APPLICABLE
    assert node.patches.inactive == {}
    websocket_driver = node.sio.eio._async["websocket"]
    assert issubclass(websocket_driver, patches.engineio_aiohttp.WebSocket) and websocket_driver.corked
    assert node.manager.enabled and node.manager.direct, "room emits write to idle sockets, else queue"
    socket_class = async_server.async_socket.AsyncSocket
    assert issubclass(socket_class, patches.QueueSocket)
    assert issubclass(socket_class, patches.LeanSocket), "a timer for the next ping, frames read in the handler"
    assert node.sio.eio.create_queue is patches.SendQueue
    assert web_server.RequestHandler is patches.JsonErrorRequestHandler, "aiohttp's own errors answer JSON"


async def test_installing_twice_changes_nothing(settings: Settings) -> None:
    first = Node(settings, "node-p", port=1).patches
    assert Node(settings, "node-q", port=2).patches == first


async def test_a_patch_whose_target_moved_is_off_with_one_warning(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As if python-socketio renamed the flag: setting it would no longer stop a second initialisation.
    monkeypatch.delattr(socketio.base_server.BaseServer, "manager_initialized", raising=False)
    original_init = socketio.base_server.BaseServer.__init__

    def init_without_flag(self: socketio.AsyncServer, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        del self.manager_initialized

    monkeypatch.setattr(socketio.base_server.BaseServer, "__init__", init_without_flag)
    with caplog.at_level(logging.WARNING, logger="sioplay.node.patches"):
        node = Node(settings, "node-p", port=1)
    assert "early-manager" not in node.patches.active
    assert "manager_initialized" in node.patches.inactive["early-manager"]
    assert [record.getMessage() for record in caplog.records] == [
        "patch early-manager is off: socketio AsyncServer.manager_initialized not found "
        "(installed versions differ from those pinned)"
    ]
    assert patches.initialize_manager_early(node.sio, node.patches) is False
    assert getattr(node.manager, "thread", None) is None, (
        "the manager is left to python-socketio's own first connection"
    )


async def test_a_room_broadcast_without_its_target_takes_python_socketios_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(socketio.base_manager.BaseManager, "get_participants")
    node = Node(settings, "node-p", port=1)
    assert "room-broadcast" not in node.patches.active
    assert node.manager.enabled is False


async def test_aiohttp_errors_stay_text_when_its_request_handler_moved(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(web_server, "RequestHandler", type("ElsewhereHandler", (), {}))
    with caplog.at_level(logging.WARNING, logger="sioplay.node.patches"):
        node = Node(settings, "node-p", port=1)
    assert "json-parse-errors" not in node.patches.active
    assert web_server.RequestHandler is not patches.JsonErrorRequestHandler
    assert [record.getMessage() for record in caplog.records] == [
        "patch json-parse-errors is off: aiohttp.web_server.RequestHandler not found "
        "(installed versions differ from those pinned)"
    ]


async def test_engineios_socket_stays_when_its_ping_and_handler_moved(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Restored after the test: install sets the class engine.io builds each socket from.
    monkeypatch.setattr(async_socket, "AsyncSocket", async_socket.AsyncSocket)
    monkeypatch.setattr(patches._ENGINEIO_SOCKET, "schedule_ping", lambda self: None)
    with caplog.at_level(logging.WARNING, logger="sioplay.node.patches"):
        node = Node(settings, "node-p", port=1)
    assert "lean-socket" not in node.patches.active
    assert not issubclass(async_socket.AsyncSocket, patches.LeanSocket)
    assert [record.getMessage() for record in caplog.records] == [
        "patch lean-socket is off: engineio AsyncSocket.schedule_ping starting _send_ping not found "
        "(installed versions differ from those pinned)"
    ]
