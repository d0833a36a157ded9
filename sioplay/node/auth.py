"""Who a client is, with `--auth token`: the checks on its JWT, and where a connecting client puts it.

The accepted algorithm comes from the node's configuration, never from the
token's header: HS256 with the cluster's secret, or the one algorithm of the
configured public key (RS256 or ES256). So `alg: none`, and an HS256 token
signed with the public key's bytes, are refused as algorithms not accepted.
Every refusal says why and never echoes the token.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import jwt

from sioplay.common.tokens import SECRET_ALGORITHM, algorithm_of_key, load_public_key
from sioplay.errors import TokenError
from sioplay.settings import Settings

__all__ = ["TokenClaims", "TokenVerifier", "bearer_token", "connect_token"]

# A JWT is three base64url parts; anything far longer is not one worth decoding.
MAX_TOKEN_CHARS = 8192


@dataclasses.dataclass(frozen=True, slots=True)
class TokenClaims:
    id_user: str
    expires_at: float
    # None: any room.
    rooms: frozenset[str] | None

    def allows(self, room: str) -> bool:
        return self.rooms is None or room in self.rooms


class TokenVerifier:
    """Checks tokens as `settings` say: key, algorithm, maximum lifetime, issuer and audience, leeway."""

    def __init__(self, settings: Settings, secret: bytes) -> None:
        if settings.auth_public_key is not None:
            self._key: Any = load_public_key(settings.auth_public_key)
            self.algorithm = algorithm_of_key(self._key)
        else:
            self._key = secret
            self.algorithm = SECRET_ALGORITHM
        self.max_ttl_s = settings.auth_max_ttl_s
        self.leeway_s = settings.auth_leeway_s
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience

    def verify(self, token: object, now: float | None = None) -> TokenClaims:
        if not isinstance(token, str) or not token:
            raise TokenError("token required")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("token is not a JWT") from None
        said = header.get("alg")
        if said != self.algorithm:
            raise TokenError(f"token algorithm {str(said)[:16]!r} not accepted (this cluster accepts {self.algorithm})")
        required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                leeway=self.leeway_s,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token audience not accepted") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not valid yet") from None
        except jwt.InvalidTokenError:
            raise TokenError("token is not a valid JWT") from None
        return self._claims(claims, time.time() if now is None else now)

    def _claims(self, claims: Mapping[str, Any], now: float) -> TokenClaims:
        sub, exp, rooms = claims["sub"], claims["exp"], claims.get("rooms")
        if not isinstance(sub, str) or not sub:
            raise TokenError("token 'sub' must be an id_user string")
        if not isinstance(exp, int | float) or exp - now > self.max_ttl_s + self.leeway_s:
            raise TokenError(f"token lives longer than this cluster allows ({self.max_ttl_s:g} s)")
        if rooms is not None and (not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)):
            raise TokenError("token 'rooms' must be a list of room names")
        return TokenClaims(sub, float(exp), None if rooms is None else frozenset(rooms))


def connect_token(auth: object, query: Mapping[str, str]) -> tuple[object, bool]:
    """(the token a connecting client sent, whether it came in the query string, which proxies log)."""
    if isinstance(auth, Mapping) and "token" in auth:
        return auth["token"], False
    if "token" in query:
        return query["token"], True
    return None, False


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
