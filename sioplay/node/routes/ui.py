"""`/ui/{room}`: the browser page of the original, served by every node with its own copy of the client library."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from sioplay.node.validation import validate_id_user, validate_room

__all__ = ["ui_routes"]

STATIC_DIR = Path(__file__).parent.parent / "static"


def ui_routes() -> list[web.RouteDef]:
    template = (STATIC_DIR / "ui.html").read_text(encoding="utf-8")

    async def page(request: web.Request) -> web.Response:
        room = validate_room(request.match_info["room"])
        id_user = validate_id_user(request.query.get("id_user"))
        body = template.replace("{{ROOM}}", html.escape(room)).replace("{{ID_USER}}", html.escape(id_user))
        return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})

    return [
        web.get("/ui/{room}", page),
        web.static("/assets", STATIC_DIR, append_version=False),
    ]
