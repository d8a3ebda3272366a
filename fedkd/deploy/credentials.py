"""Development credentials for a TLS federation with SuperNode authentication.

``make_credentials(out, sans, nodes)`` writes::

    out/ca.crt  out/ca.key            a self-signed certificate authority (keep ca.key private)
    out/server.pem  out/server.key    the SuperLink's certificate, signed by the CA
    out/keys/node-<i>  node-<i>.pub   one ECDSA key pair per SuperNode, OpenSSH format

The server certificate always covers ``localhost`` and ``127.0.0.1``: the
SuperLink's own SuperExec connects to ``https://127.0.0.1:<port>`` and refuses
a certificate without that address, even on a multi-host deployment. The names
users reach the SuperLink by (a DNS name, a public IP, a compose service name)
are added with ``sans``.

An existing CA is reused, so certificates issued earlier stay valid; the
server certificate is issued again on every call (its names may change); node
keys that exist are kept, since they may already be registered with a SuperLink.

This is a development CA: a production deployment uses certificates from the
organisation's own CA. :func:`check_tls_files` and :func:`check_node_key` are
what the launcher runs before starting anything, so a wrong path or a mismatched
key is refused with a message that names the file.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALWAYS_COVERED = ("localhost", "127.0.0.1")
NODE_KEY_CURVE = ec.SECP384R1()  # Flower accepts ECDSA keys on NIST curves; ssh-keygen's -b 384


class CredentialError(ValueError):
    """A certificate or key file is missing, unreadable or does not fit; the message names it."""


@dataclass(frozen=True)
class NodeKey:
    """One SuperNode's key pair: the private key stays on the node, the public key is registered."""

    index: int
    private: Path
    public: Path


@dataclass(frozen=True)
class Credentials:
    """Paths of everything :func:`make_credentials` wrote."""

    root: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    node_keys: list[NodeKey] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)  # files written by this call (the rest were kept)


def credential_paths(root: str | Path, nodes: int = 0) -> Credentials:
    """Where the files of a credentials folder live (nothing is read or written)."""
    root = Path(root).resolve()
    keys = root / "keys"
    return Credentials(
        root=root, ca_cert=root / "ca.crt", ca_key=root / "ca.key",
        server_cert=root / "server.pem", server_key=root / "server.key",
        node_keys=[NodeKey(i, keys / f"node-{i}", keys / f"node-{i}.pub") for i in range(nodes)],
    )


def make_credentials(out: str | Path, sans: list[str] | tuple[str, ...] = (), nodes: int = 0,
                     days: int = 365) -> Credentials:
    """Create (or complete) a credentials folder; see the module docstring for what is kept."""
    if nodes < 0:
        raise CredentialError(f"--nodes must be >= 0, got {nodes}")
    if days < 1:
        raise CredentialError(f"certificate lifetime must be >= 1 day, got {days}")
    names = _subject_alt_names(sans)  # validate before writing anything
    paths = credential_paths(out, nodes)
    paths.root.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []

    if paths.ca_cert.exists() and paths.ca_key.exists():
        ca_cert = load_certificate(paths.ca_cert)
        ca_key = _load_private_key(paths.ca_key)
    elif paths.ca_cert.exists() or paths.ca_key.exists():
        raise CredentialError(f"{paths.root} holds only one of ca.crt and ca.key; remove it or add the other")
    else:
        ca_key = ec.generate_private_key(ec.SECP384R1())
        ca_cert = _self_signed_ca(ca_key, days)
        _write_private(paths.ca_key, _pem_private(ca_key))
        paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        created += [paths.ca_cert, paths.ca_key]

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_cert, ca_key, names, days)
    _write_private(paths.server_key, _pem_private(server_key))
    paths.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    created += [paths.server_cert, paths.server_key]

    for key in paths.node_keys:
        if key.private.exists() and key.public.exists():
            check_node_key(key.private)
            continue
        key.private.parent.mkdir(parents=True, exist_ok=True)
        private = ec.generate_private_key(NODE_KEY_CURVE)
        _write_private(key.private, private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        key.public.write_bytes(private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + f" fedkd-node-{key.index}\n".encode())
        created += [key.private, key.public]
    return Credentials(**{**paths.__dict__, "created": created})


# ---------------------------------------------------------------- checks the launcher runs first

def load_certificate(path: str | Path) -> x509.Certificate:
    path = _existing_file(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise CredentialError(f"{path} is not a PEM certificate: {exc}") from None


def check_tls_files(ca_cert: str | Path, server_cert: str | Path | None = None,
                    server_key: str | Path | None = None, must_cover: tuple[str, ...] = ALWAYS_COVERED) -> None:
    """Refuse TLS files that would make a SuperLink or SuperNode fail later, naming the file.

    Checks that each file exists and parses, that the server key belongs to the
    server certificate, that the CA signed it, that it is valid now, and that it
    covers every name in ``must_cover``.
    """
    ca = load_certificate(ca_cert)
    if server_cert is None:
        return
    cert = load_certificate(server_cert)
    if server_key is not None:
        key = _load_private_key(_existing_file(server_key, "private key"))
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CredentialError(f"{server_key} is not the private key of {server_cert}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CredentialError(f"{server_cert} was not signed by the CA in {ca_cert}") from None
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CredentialError(f"{server_cert} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                              f"to {cert.not_valid_after_utc:%Y-%m-%d})")
    covered = certificate_names(cert)
    missing = [name for name in must_cover if name not in covered]
    if missing:
        raise CredentialError(f"{server_cert} does not cover {', '.join(missing)} (it covers "
                              f"{', '.join(sorted(covered)) or 'nothing'}); issue it again with "
                              f"`fedkd certs --san NAME`")


def check_node_key(private_key: str | Path) -> None:
    """A SuperNode's private key must be an unencrypted OpenSSH ECDSA key."""
    path = _existing_file(private_key, "SuperNode private key")
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{path} is not an unencrypted OpenSSH private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialError(f"{path} is a {type(key).__name__}; Flower needs an ECDSA key "
                              f"(e.g. `ssh-keygen -t ecdsa -b 384 -N ''`)")


def check_public_key(public_key: str | Path) -> None:
    path = _existing_file(public_key, "SuperNode public key")
    try:
        key = serialization.load_ssh_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{path} is not an OpenSSH public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CredentialError(f"{path} is not an ECDSA public key")


def certificate_names(cert: x509.Certificate) -> set[str]:
    """DNS names and IP addresses a certificate's subjectAltName covers."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


# ---------------------------------------------------------------- helpers

def _subject_alt_names(sans) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in (*ALWAYS_COVERED, *sans):
        name = raw.strip()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not all(part and all(c.isalnum() or c in "-_*" for c in part) for part in name.split(".")):
            raise CredentialError(f"--san {raw!r} is neither an IP address nor a host name")
        names.append(x509.DNSName(name))
    return names


def _self_signed_ca(key: ec.EllipticCurvePrivateKey, days: int) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedkd development"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "fedkd development CA")])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA384()))


def _server_certificate(key, ca_cert: x509.Certificate, ca_key, names, days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedkd superlink")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA384()))


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_private_key(path: Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{path} is not an unencrypted PEM private key: {exc}") from None


def _write_private(path: Path, data: bytes) -> None:
    """Private keys are readable by their owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CredentialError(f"{what} file not found: {path}")
    return path
