"""The token a CLI client brings to a cluster that runs with `--auth token`.

`--token` is used as given. Otherwise the cluster's `/healthz` says whether it
wants tokens; if it does, and signs them with the secret of the state directory
the command runs from, one is minted per user for as long as the command may
need it. A cluster that checks tokens with a public key needs `--token`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sioplay.common.cluster_secret import existing_secret
from sioplay.common.tokens import SECRET_ALGORITHM, mint_token
from sioplay.errors import ClientError

if TYPE_CHECKING:
    from sioplay.client.http import Api

__all__ = ["CLIENT_TOKEN_TTL_S", "Credentials"]

# Long enough for a swarm or a long `join --for`: a CLI command's tokens are minted locally, for itself.
CLIENT_TOKEN_TTL_S = 12 * 3600.0


class Credentials:
    def __init__(self, home: Path, token: str | None = None) -> None:
        self.home = home
        self.token = token
        self._auth: dict[str, object] | None = None
        self._minted: dict[str, str] = {}

    async def for_user(self, api: Api, id_user: str) -> str | None:
        """The token to connect or write as `id_user`, or None when the cluster does not want one."""
        if self.token is not None:
            return self.token
        if self._auth is None:
            auth = (await api.health()).get("auth")
            self._auth = auth if isinstance(auth, dict) else {"mode": "none"}
        if self._auth.get("mode") != "token":
            return None
        if id_user not in self._minted:
            self._minted[id_user] = mint_token(self._secret(api), id_user, ttl_s=CLIENT_TOKEN_TTL_S)
        return self._minted[id_user]

    def _secret(self, api: Api) -> bytes:
        if self._auth is not None and self._auth.get("algorithm") != SECRET_ALGORITHM:
            raise ClientError(
                f"the cluster at {api.url} checks tokens with a public key: give --token (minted by its key holder)"
            )
        secret, path = existing_secret(self.home)
        if secret is None:
            raise ClientError(
                f"the cluster at {api.url} runs with --auth token and {path} is not readable: give --token"
            )
        return secret
