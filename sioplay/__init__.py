"""sioplay: identity-aware room membership across a multi-node Socket.IO cluster."""

__version__ = "0.1.0"
