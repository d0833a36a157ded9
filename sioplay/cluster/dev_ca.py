"""`--tls dev`: a local CA and a certificate for localhost, 127.0.0.1 and ::1, made once in the state directory.

Like mkcert, but narrower: the CA may only sign for those three names (X.509
name constraints), and its key is thrown away once the certificate is signed,
so trusting the CA trusts this one certificate and nothing anyone makes later.
The key files are 0600. When the certificate expires, delete ``<home>/tls`` and
trust the new CA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import os
import shutil
from pathlib import Path

from sioplay.common.tls import DEV_CA, DEV_CERT, DEV_KEY, dev_dir
from sioplay.errors import ConfigError

__all__ = ["DevCertificate", "ensure_dev_certificate", "trust_hint"]

NAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")
# The longest validity Apple's clients accept for a TLS server certificate; the CA lasts as long.
VALID_DAYS = 825


@dataclasses.dataclass(frozen=True, slots=True)
class DevCertificate:
    ca: Path
    cert: Path
    key: Path
    created: bool


def ensure_dev_certificate(home: Path) -> DevCertificate:
    """The dev CA and certificate in `home`, made now if there are none.

    Processes started together race to make them: each writes a private draft
    folder and renames it into place, so exactly one wins and the others use its files.
    """
    folder = dev_dir(home)
    created = False
    if not (folder / DEV_CERT).is_file():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = home / f".tls-draft-{os.getpid()}"
        shutil.rmtree(draft, ignore_errors=True)
        draft.mkdir(mode=0o700)
        try:
            _write(draft)
            try:
                os.rename(draft, folder)
                created = True
            except OSError:
                if not (folder / DEV_CERT).is_file():
                    raise ConfigError(
                        f"cannot make the dev certificate in {folder}: it exists but is incomplete; "
                        "delete it to make a new one"
                    ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(draft)
    return DevCertificate(folder / DEV_CA, folder / DEV_CERT, folder / DEV_KEY, created)


def _write(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sioplay development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sioplay dev CA {os.uname().nodename} {now:%Y-%m-%d}"),
        ]
    )
    permitted = [x509.DNSName(name) for name in NAMES] + [
        x509.IPAddress(ipaddress.ip_network(address)) for address in ADDRESSES
    ]
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(name) for name in NAMES] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_file(folder / DEV_CA, ca.public_bytes(pem), 0o644)
    _write_file(folder / DEV_CERT, cert.public_bytes(pem), 0o644)
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_file(folder / DEV_KEY, private, 0o600)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, mode)


def trust_hint(ca: Path, public_port: int) -> list[str]:
    """How to make curl, Node and browsers trust the dev CA: lines for the terminal."""
    return [
        f"trust its CA {ca}:",
        f"  curl --cacert {ca} https://localhost:{public_port}/healthz",
        f"  NODE_EXTRA_CA_CERTS={ca} node client.js",
        f"  Chromium/Chrome (Linux): certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n sioplay-dev -i {ca}",
        "  Firefox, macOS, Windows: import it as a certificate authority in the certificate settings",
    ]
