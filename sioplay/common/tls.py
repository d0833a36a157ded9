"""HTTPS and WSS: the certificate the nodes serve, and what the CLI's clients trust.

The nodes serve `--tls-cert`/`--tls-key`, or with `--tls dev` the development
certificate made once in ``<home>/tls/`` (`sioplay/cluster/dev_ca.py`). Clients
trust, in this order: `--ca FILE` alone; else, for an address taken from the
running cluster's state, exactly the certificate that cluster serves (pinned: a
certificate for a public name still verifies on 127.0.0.1); else the system's
authorities plus the state directory's dev CA.

A key file that every user may read is refused: it may have leaked. One only
its owner's group may read (Debian's ``ssl-cert`` group, 0640) is accepted.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from sioplay.errors import ConfigError
from sioplay.settings import Settings

__all__ = [
    "DEV_CA",
    "DEV_CERT",
    "DEV_KEY",
    "client_context",
    "dev_dir",
    "health_check_ssl",
    "pinned_context",
    "served_files",
    "server_context",
]

DEV_CA = "dev-ca.pem"
DEV_CERT = "dev-cert.pem"
DEV_KEY = "dev-key.pem"


def dev_dir(home: Path) -> Path:
    return home / "tls"


def served_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key files the nodes serve, None for plain HTTP."""
    if settings.tls == "dev":
        folder = dev_dir(settings.home)
        return folder / DEV_CERT, folder / DEV_KEY
    if settings.tls_cert is not None and settings.tls_key is not None:
        return settings.tls_cert, settings.tls_key
    return None


def _refuse_encrypted_key() -> str:
    # Without this, OpenSSL would prompt on the terminal, or fail with an opaque error under a supervisor.
    raise ConfigError("the TLS key is encrypted with a passphrase; give it unencrypted (file mode 0600)")


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context the nodes listen with; None for plain HTTP; ConfigError naming the file that is wrong."""
    files = served_files(settings)
    if files is None:
        return None
    cert, key = files
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            hint = " (start with --tls dev once to make it)" if settings.tls == "dev" else ""
            raise ConfigError(f"TLS {what} file {path} does not exist{hint}")
    if key.stat().st_mode & 0o004:
        raise ConfigError(
            f"TLS key {key} can be read by every user: 'chmod 600 {key}' (and get a new key if it leaked)"
        )
    _check_not_expired(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise ConfigError(f"TLS key {key} does not belong to the certificate {cert}") from None
        raise ConfigError(f"cannot use TLS certificate {cert} with key {key}: {reason}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS certificate {cert} or key {key}: {exc.strerror or exc}") from None
    return context


def _check_not_expired(cert: Path) -> None:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        raise ConfigError(f"TLS certificate {cert} is not a PEM certificate") from None
    if certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise ConfigError(f"TLS certificate {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")


def pinned_context(cert: Path) -> ssl.SSLContext:
    """Trusts the peer that serves exactly `cert` (or a chain it ends), whatever name it was reached by."""
    context = ssl.create_default_context(cafile=str(cert))
    # The served certificate itself is the trust anchor, not the authority above it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def health_check_ssl(settings: Settings) -> ssl.SSLContext | bool:
    """For aiohttp's `ssl=`: the served certificate pinned when the nodes serve TLS, else aiohttp's default."""
    files = served_files(settings)
    return pinned_context(files[0]) if files is not None else True


def client_context(settings: Settings, served: Path | None = None) -> ssl.SSLContext:
    """What a CLI client verifies an HTTPS node with: `--ca` alone, else `served` pinned, else system + dev CA.

    `served` is the certificate of the running cluster, for an address that came from its state.
    """
    if settings.tls_ca is not None:
        if not settings.tls_ca.is_file():
            raise ConfigError(f"--ca {settings.tls_ca}: no such file")
        try:
            return ssl.create_default_context(cafile=str(settings.tls_ca))
        except ssl.SSLError as exc:
            raise ConfigError(f"--ca {settings.tls_ca} holds no usable CA certificate: {exc.reason}") from None
    if served is not None and served.is_file():
        return pinned_context(served)
    context = ssl.create_default_context()
    dev_ca = dev_dir(settings.home) / DEV_CA
    if dev_ca.is_file():
        context.load_verify_locations(cafile=str(dev_ca))
    return context
