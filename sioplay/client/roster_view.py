"""Room rosters as the CLI shows them: the server's roster body hydrated with names, as a Rich table."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sioplay.client.http import Api
from sioplay.client.ids import typed_ids
from sioplay.client.names import NameCache
from sioplay.common.node_counts import answer_summary
from sioplay.common.units import count_of
from sioplay.errors import ClientError

__all__ = ["completeness_line", "fetch_roster", "group_by_user", "roster_view", "same_roster", "user_rows"]


@dataclasses.dataclass(frozen=True, slots=True)
class UserRow:
    id_user: str
    name: str | None
    sockets: int
    nodes: list[str]


async def fetch_roster(api: Api, names: NameCache, room: str) -> dict[str, Any]:
    """GET /rooms/{room}, with every entry given its user's `name` (None if unknown)."""
    roster_body = await api.roster(room)
    if not isinstance(roster_body, dict) or not isinstance(roster_body.get("users"), list):
        raise ClientError(f"{api.url} did not answer with a sioplay roster")
    by_id = await names.hydrate(str(entry["id_user"]) for entry in roster_body["users"])
    users = [{**typed_ids(entry), "name": by_id[str(entry["id_user"])]} for entry in roster_body["users"]]
    return {**roster_body, "users": users}


def group_by_user(roster_body: dict[str, Any]) -> dict[str, Any]:
    """The roster as `GET /rooms/{room}?group=user` gives it: one entry per user with its sockets, names kept."""
    grouped: dict[Any, dict[str, Any]] = {}
    for entry in roster_body["users"]:
        new = {"id_user": entry["id_user"], "name": entry.get("name"), "sockets": []}
        user = grouped.setdefault(entry["id_user"], new)
        user["sockets"].append({"id_socket": entry.get("id_socket"), "node": entry.get("node")})
    return {**roster_body, "users": list(grouped.values())}


def same_roster(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Equal but for the time the query took."""
    return a is not None and {**a, "took_ms": None} == {**b, "took_ms": None}


def user_rows(roster_body: dict[str, Any]) -> list[UserRow]:
    """One row per user, in the server's order, with their sockets counted and nodes merged."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in roster_body["users"]:
        grouped.setdefault(str(entry["id_user"]), []).append(entry)
    return [
        UserRow(id_user, entries[0].get("name"), len(entries), sorted({str(e.get("node", "?")) for e in entries}))
        for id_user, entries in grouped.items()
    ]


def _complete(roster_body: dict[str, Any]) -> bool:
    return roster_body.get("complete") is True


def completeness_line(roster_body: dict[str, Any]) -> Text:
    nodes = roster_body.get("nodes") or {}
    missing = nodes.get("missing") or []
    answered = answer_summary(len(nodes.get("answered") or []), nodes.get("expected", "?"), list(map(str, missing)))
    if nodes.get("error"):
        answered += f", error: {nodes['error']}"
    users, sockets = roster_body.get("unique_users", 0), roster_body.get("sockets", 0)
    counts = f"{count_of(users, 'user')}, {count_of(sockets, 'socket')}"
    took = f"{float(roster_body.get('took_ms', 0.0)):.1f} ms"
    if _complete(roster_body):
        return Text(f"{counts} · {answered} · {took}", style="green")
    return Text(f"PARTIAL: {counts} known · {answered} · {took}", style="bold red")


def roster_view(roster_body: dict[str, Any], heading: str | None = None) -> Group:
    """The table of users and, under it, how complete the answer is; `heading` goes above it."""
    complete = _complete(roster_body)
    title = str(roster_body.get("room", ""))
    table = Table(
        "id_user", "name", "sockets", "nodes", title=title if complete else f"{title} (PARTIAL)", title_justify="left"
    )
    for row in user_rows(roster_body):
        # Names are user input: never let them be read as Rich markup.
        name = Text(row.name) if row.name is not None else Text("?", style="dim")
        table.add_row(Text(row.id_user), name, str(row.sockets), Text(", ".join(row.nodes)))
    if not complete:
        missing = (roster_body.get("nodes") or {}).get("missing") or []
        unknown = f"no answer from {', '.join(map(str, missing))}" if missing else "the query failed"
        table.add_row("?", "not known", "?", unknown, style="bold red")
    if heading is None:
        return Group(table, completeness_line(roster_body))
    return Group(Text(heading, style="bold"), table, completeness_line(roster_body))
