"""id_user as the CLI's JSON gives it: an integer, as the database keys users, whatever the wire carried."""

from __future__ import annotations

from typing import Any

__all__ = ["typed_id", "typed_ids", "id_ranges"]


def typed_id(id_user: Any) -> Any:
    """'7' and 7 are 7; anything that is not a whole number stays as it came (the server refuses it anyway)."""
    if isinstance(id_user, str) and id_user.isascii() and id_user.isdigit():
        return int(id_user)
    return id_user


def typed_ids(value: dict[str, Any]) -> dict[str, Any]:
    """`value` with its `id_user`, if any, typed."""
    return {**value, "id_user": typed_id(value["id_user"])} if "id_user" in value else value


def id_ranges(ids: list[str]) -> str:
    """'1-3, 7, x' for ids 1 2 3 7 x: runs of consecutive numbers summarised, in the order given."""
    parts: list[str] = []
    run: list[int] = []

    def close() -> None:
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()

    for id_user in ids:
        number = typed_id(id_user)
        if isinstance(number, int) and run and number == run[-1] + 1:
            run.append(number)
            continue
        close()
        if isinstance(number, int):
            run.append(number)
        else:
            parts.append(str(id_user))
    close()
    return ", ".join(parts)
