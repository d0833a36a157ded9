"""Connection tokens: JWTs whose `sub` is an id_user, minted here and checked by the nodes (`node/auth.py`).

HS256 tokens are signed with the cluster's secret, so only who holds it (the
state directory's owner, the nodes) can mint them; RS256/ES256 tokens are signed
by an application server's private key and checked with its public key, so the
nodes never hold what mints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sioplay.errors import ConfigError

__all__ = ["DEFAULT_TTL_S", "algorithm_of_key", "load_private_key", "load_public_key", "mint_token"]

DEFAULT_TTL_S = 3600.0
SECRET_ALGORITHM = "HS256"


def algorithm_of_key(key: object) -> str:
    """The one algorithm a key is used with: RS256 for RSA, ES256 for an EC P-256 key."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp256r1":
            raise ConfigError(f"EC keys must be on P-256 for ES256, not {key.curve.name}")
        return "ES256"
    raise ConfigError("token keys must be RSA (RS256) or EC P-256 (ES256)")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_public_key(path: Path) -> Any:
    """The PEM public key in `path` (RSA or EC P-256)."""
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except ValueError:
        raise ConfigError(f"{path} is not a PEM public key") from None
    algorithm_of_key(key)
    return key


def load_private_key(path: Path) -> Any:
    """The PEM private key in `path` (RSA or EC P-256), unencrypted."""
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path} is not an unencrypted PEM private key") from None
    algorithm_of_key(key)
    return key


def mint_token(
    key: bytes | Any,
    id_user: str,
    ttl_s: float = DEFAULT_TTL_S,
    rooms: Sequence[str] = (),
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """A token for `id_user` valid `ttl_s` seconds: signed HS256 with `key` (the cluster's secret, bytes), or with
    the algorithm of a private key."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": str(id_user), "iat": issued, "exp": issued + max(1, round(ttl_s))}
    if rooms:
        claims["rooms"] = list(rooms)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    algorithm = SECRET_ALGORITHM if isinstance(key, bytes) else algorithm_of_key(key)
    return jwt.encode(claims, key, algorithm=algorithm)
