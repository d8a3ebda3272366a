"""Client identity bound to a node's key: challenge signatures and the operator's registry.

A deployed SuperNode authenticates to the SuperLink with an ECDSA key pair
(Flower's node authentication). The ServerApp cannot ask the SuperLink which key
a node used, so it asks the node itself: the identify query carries a fresh
random nonce, and the node's ClientApp signs ``(nonce, its own node id)`` with
the same private key (``--node-config "auth-key=PATH"``). The server checks the
signature against the public key that the operator's registry lists for the
client id the node claims. A node cannot replay another node's answer (the
nonce is fresh, and the node id inside the signature must be the sender's), and
cannot claim an id without that id's private key.

The registry is a JSON file ``{"clients": {"0": "ecdsa-sha2-nistp384 AAAA...", ...}}``
written by ``fedkd certs --nodes N`` (``identities.json`` beside the keys) or
``fedkd register``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedkd.files import UnsafeInput, read_bytes, read_text

DOMAIN = b"fedkd-identify-v1"
NONCE_BYTES = 32
MAX_KEY_FILE_BYTES = 64 * 1024      # an OpenSSH key is a few hundred bytes
MAX_REGISTRY_BYTES = 16 * 2**20     # ~200 bytes per client: room for 80,000 clients


class IdentityError(ValueError):
    """The registry or a key cannot be used; the message names the file."""


def challenge(nonce: bytes, node_id: int) -> bytes:
    """The bytes a node signs: a domain tag, the server's nonce and the node's own id."""
    return DOMAIN + nonce + int(node_id).to_bytes(8, "big", signed=False)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        data = read_bytes(path, MAX_KEY_FILE_BYTES, "identity key (node config auth-key)")
    except UnsafeInput as exc:
        raise IdentityError(str(exc)) from None
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not an unencrypted OpenSSH private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path} is not an ECDSA key")
    return key


def sign(key_path: str | Path, nonce: bytes, node_id: int) -> bytes:
    return load_private_key(key_path).sign(challenge(nonce, node_id), ec.ECDSA(hashes.SHA256()))


def verify(public_key: ec.EllipticCurvePublicKey, nonce: bytes, node_id: int, signature: bytes) -> bool:
    try:
        public_key.verify(signature, challenge(nonce, node_id), ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def public_key_line(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def load_registry(path: str | Path) -> dict[int, ec.EllipticCurvePublicKey]:
    """{client id: public key} from the operator's registry file."""
    path = Path(path)
    try:
        raw = json.loads(read_text(path, MAX_REGISTRY_BYTES, "identity registry (server.identity_registry)"))
        entries = raw["clients"]
        registry = {}
        for client, line in entries.items():
            key = serialization.load_ssh_public_key(" ".join(str(line).split()[:2]).encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError(f"client {client}: not an ECDSA key")
            registry[int(client)] = key
    except UnsafeInput as exc:  # missing, a FIFO, /dev/zero, or too large
        raise IdentityError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 -- any unreadable entry (cryptography raises its own types)
        raise IdentityError(f"identity registry {path} is not usable: {type(exc).__name__}: {exc}") from None
    lines = [public_key_line(k) for k in registry.values()]
    if len(set(lines)) != len(lines):
        raise IdentityError(f"identity registry {path} lists one key for two client ids")
    return registry


def write_registry(path: str | Path, public_keys: dict[int, str | Path]) -> Path:
    """Write (or extend) the registry: {client id: OpenSSH public key file}."""
    path = Path(path)
    clients = json.loads(path.read_text())["clients"] if path.is_file() else {}
    for client, key_file in public_keys.items():
        line = Path(key_file).read_text().split()
        clients[str(int(client))] = " ".join(line[:2])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"clients": dict(sorted(clients.items(), key=lambda kv: int(kv[0])))}, indent=2)
                   + "\n")
    os.replace(tmp, path)
    return path
