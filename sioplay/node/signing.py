"""Every message a node publishes carries an HMAC-SHA256 of its channel and payload, made with the cluster's secret.

A node drops anything whose signature is missing or wrong before any handler
reads it (`redis_wire.Subscription`), so a shared Redis, or one whose password
leaked, still cannot forge a member, a node or an identity. The channel is part
of what is signed: a reply cannot be replayed as a request. Old messages can be
replayed by whoever can read the channels; none of them grants anything a node
did not already say.

    b"s1" + HMAC-SHA256(secret, channel + b"\\n" + payload) (32 bytes) + payload
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["MessageSigner"]

_MARK = b"s1"
# Replies go to each requester's own channel, so a long-lived node meets a new one per peer restart.
_MAX_CACHED_CHANNELS = 256
_DIGEST_BYTES = 32
_HEADER_BYTES = len(_MARK) + _DIGEST_BYTES


class MessageSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        # The channel's part of each HMAC, computed once per channel: a node uses a handful.
        self._by_channel: dict[bytes, hmac.HMAC] = {}

    def _mac(self, channel: bytes, payload: bytes) -> bytes:
        base = self._by_channel.get(channel)
        if base is None:
            if len(self._by_channel) >= _MAX_CACHED_CHANNELS:
                self._by_channel.clear()
            base = self._by_channel[channel] = hmac.new(self._secret, channel + b"\n", hashlib.sha256)
        mac = base.copy()
        mac.update(payload)
        return mac.digest()

    def sign(self, channel: bytes, payload: bytes) -> bytes:
        return _MARK + self._mac(channel, payload) + payload

    def verify(self, channel: bytes, data: bytes) -> bytes | None:
        """The payload of `data` if it was signed for `channel` with this secret, else None."""
        if len(data) < _HEADER_BYTES or not data.startswith(_MARK):
            return None
        payload = data[_HEADER_BYTES:]
        if not hmac.compare_digest(data[len(_MARK) : _HEADER_BYTES], self._mac(channel, payload)):
            return None
        return payload
