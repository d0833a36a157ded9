"""`sioplay token`: mint a connection token for a cluster that runs with `--auth token`."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from sioplay.commands._common import console, handles_errors, print_json, state_of
from sioplay.common.cluster_secret import existing_secret
from sioplay.errors import ClientError, ConfigError
from sioplay.settings import Settings

if TYPE_CHECKING:
    from sioplay.client.target import Target

__all__ = ["parse_ttl", "register"]

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(app: typer.Typer) -> None:
    app.command("token", rich_help_panel="Clients")(token)


def parse_ttl(text: str) -> float:
    """`90`, `90s`, `30m`, `1h`, `2d` in seconds."""
    match = _TTL.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"--ttl must be a positive duration such as 90s, 30m, 1h or 2d, not {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@handles_errors
def token(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", "-u", help="id_user the token proves (its 'sub').", show_default=False)
    ],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it is valid: 90s, 30m, 1h, 2d.")] = "1h",
    rooms: Annotated[
        list[str] | None, typer.Option("--room", help="Only this room (repeat for more); default: any room.")
    ] = None,
    private_key: Annotated[
        Path | None,
        typer.Option("--private-key", help="Sign with this PEM key (RS256/ES256) instead of the cluster's secret."),
    ] = None,
    page: Annotated[
        str | None, typer.Option("--page", help="Print the page URL of this room, the token in its fragment.")
    ] = None,
    issuer: Annotated[str | None, typer.Option("--iss", help="'iss' claim (default: SIOPLAY_AUTH_ISSUER).")] = None,
    audience: Annotated[str | None, typer.Option("--aud", help="'aud' claim (default: SIOPLAY_AUTH_AUDIENCE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: token, sub, exp, rooms, page.")] = False,
) -> None:
    """Mint a token for --user, signed with the cluster's secret (or --private-key)."""
    from sioplay.client.target import resolve_target
    from sioplay.common.tokens import mint_token
    from sioplay.node.validation import validate_id_user, validate_room

    settings = state_of(ctx).settings
    id_user = validate_id_user(user)
    allowed = [validate_room(room) for room in rooms or []]
    ttl_s = parse_ttl(ttl)
    if ttl_s > settings.auth_max_ttl_s:
        raise ConfigError(f"--ttl {ttl} is longer than the cluster accepts ({settings.auth_max_ttl_s:g} s)")
    target = resolve_target(settings)
    base = target.url
    now = time.time()
    minted = mint_token(
        _signing_key(settings, target, private_key),
        id_user,
        ttl_s=ttl_s,
        rooms=allowed,
        issuer=issuer or settings.auth_issuer,
        audience=audience or settings.auth_audience,
        now=now,
    )
    page_url = None
    if page is not None:
        room = validate_room(page)
        page_url = f"{base}/ui/{quote(room, safe='')}?id_user={quote(id_user, safe='')}#token={minted}"
    if as_json:
        print_json(
            {
                "token": minted,
                "sub": id_user,
                "exp": int(now) + max(1, round(ttl_s)),
                "rooms": allowed or None,
                "page": page_url,
            }
        )
    else:
        console.print(page_url or minted, highlight=False, soft_wrap=True)


def _signing_key(settings: Settings, target: Target, private_key: Path | None) -> Any:
    from sioplay.common.tokens import SECRET_ALGORITHM, load_private_key

    if private_key is not None:
        return load_private_key(private_key)
    if settings.auth_public_key is not None or _running_algorithm(target) not in (None, SECRET_ALGORITHM):
        raise ConfigError(
            "this cluster checks tokens with a public key: mint with --private-key (the key pair's private half)"
        )
    secret, path = existing_secret(settings.home)
    if secret is None:
        raise ConfigError(f"no cluster secret in {path}: start the cluster from this state directory first")
    return secret


def _running_algorithm(target: Target) -> str | None:
    """The algorithm the cluster at `target` checks tokens with; None when it checks none or does not answer."""
    from sioplay.client.http import open_api

    async def ask() -> Any:
        async with open_api(target.url, timeout_s=2.0, ssl_context=target.ssl) as api:
            return (await api.health()).get("auth")

    try:
        auth = asyncio.run(ask())
    except ClientError:
        return None
    return auth.get("algorithm") if isinstance(auth, dict) else None
