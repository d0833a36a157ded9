"""`/ui/{room}`: the browser page of the original, served by every node with its own copy of the client library.

The page runs only the scripts under `/assets` and is framed by no one: its
Content-Security-Policy allows no inline script or style (the room and the
id_user reach the script through escaped ``data-`` attributes), no other origin
and no ancestor, and it sends no Referer with its requests.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web

from sioplay.node.routes.responses import error_response
from sioplay.node.validation import validate_id_user, validate_room

__all__ = ["ui_routes"]

STATIC_DIR = Path(__file__).parent.parent / "static"
# 'self' covers the page's websocket to its own node; the icon is an empty data: URL, so that none is fetched.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
PLACEHOLDER = re.compile(r"\{\{(ROOM_URL|ROOM|ID_USER)\}\}")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def ui_routes() -> list[web.RouteDef]:
    template = (STATIC_DIR / "ui.html").read_text(encoding="utf-8")
    # Who opened /ui/{room} without saying who they are gets a page that says what to add, not a JSON error.
    choose = (STATIC_DIR / "ui_choose.html").read_text(encoding="utf-8")

    async def page(request: web.Request) -> web.Response:
        room = validate_room(request.match_info["room"])
        raw_id_user = request.query.get("id_user")
        if raw_id_user is None or not raw_id_user.strip():
            values = {"ROOM": html.escape(room), "ROOM_URL": html.escape(quote(room, safe=""))}
            body = PLACEHOLDER.sub(lambda match: values[match[1]], choose)
            # A 200: a page for a person (every error of the node leaves as JSON, see responses.json_errors).
            return web.Response(text=body, content_type="text/html", headers=PAGE_HEADERS)
        id_user = validate_id_user(raw_id_user)
        # One pass, so that a room named "{{ID_USER}}" stays that text.
        values = {"ROOM": html.escape(room), "ID_USER": html.escape(id_user)}
        body = PLACEHOLDER.sub(lambda match: values[match[1]], template)
        return web.Response(text=body, content_type="text/html", headers=PAGE_HEADERS)

    return [
        web.get("/ui/{room}", page),
        web.get("/assets/{name}", asset_handler(STATIC_DIR)),
    ]


def asset_handler(directory: Path) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The files of `directory`, read once, and a JSON 404 for any other name.

    aiohttp's static route answers a miss with an empty body, decided only as it
    sends; here the names are known up front, and no path reaches beyond them.
    """
    assets = {
        path.name: (path.read_bytes(), CONTENT_TYPES.get(path.suffix, "text/plain"))
        for path in sorted(directory.iterdir())
        if path.is_file()
    }
    etags = {name: f'"{hashlib.sha256(body).hexdigest()[:32]}"' for name, (body, _) in assets.items()}

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            return error_response(404, f"no asset {name[:80]!r}")
        etag = etags[name]
        if etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
            return web.Response(status=304, headers={hdrs.ETAG: etag})
        body, content_type = assets[name]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers={hdrs.ETAG: etag})

    return asset
