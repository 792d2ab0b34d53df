"""Optional Ed25519 signatures of run records (``cryptography``).

``AUDITS_SIGNING_KEY`` names a PEM file holding an Ed25519 private key (PKCS#8, unencrypted);
when set, every recorded run's record hash is signed. ``audits verify --public-key PEM``
(or ``AUDITS_VERIFY_KEY``) checks each signature with the public key.
Make a key pair with ``audits store keygen --out signing``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from audits.store.records import StoreError, sha256_hex

SIGNING_KEY_ENV = "AUDITS_SIGNING_KEY"
VERIFY_KEY_ENV = "AUDITS_VERIFY_KEY"


def _serialization():
    from cryptography.hazmat.primitives import serialization

    return serialization


def load_private_key(path: str | Path | None = None):
    """The Ed25519 private key in ``path`` (else ``$AUDITS_SIGNING_KEY``); None when neither is set."""
    path = path or os.environ.get(SIGNING_KEY_ENV)
    if not path:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _load(Path(path), private=True)
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"The signing key {path} is not an Ed25519 private key.", fix="Make one with: audits store keygen --out signing")
    return key


def load_public_key(path: str | Path | None = None):
    """The Ed25519 public key in ``path`` (else ``$AUDITS_VERIFY_KEY``); None when neither is set."""
    path = path or os.environ.get(VERIFY_KEY_ENV)
    if not path:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = _load(Path(path), private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise StoreError(f"The key {path} is not an Ed25519 public key.", fix="Pass the signing.pub.pem written by: audits store keygen")
    return key


def _load(path: Path, *, private: bool):
    if not path.is_file():
        raise StoreError(f"The key file {path} does not exist.", fix=f"Point {SIGNING_KEY_ENV if private else VERIFY_KEY_ENV} (or --public-key) at a PEM file.")
    serialization = _serialization()
    try:
        data = path.read_bytes()
        return serialization.load_pem_private_key(data, password=None) if private else serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"The key file {path} is not a readable PEM key: {exc}.", fix="Make a key pair with: audits store keygen --out signing") from None


def key_id(public_key) -> str:
    """A short fingerprint of a public key (sha256 of its raw bytes, 16 hex digits)."""
    serialization = _serialization()
    return sha256_hex(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))[:16]


def sign(private_key, record_sha256: str) -> tuple[str, str]:
    """The base64 signature of a record hash and the signing key's id."""
    return base64.b64encode(private_key.sign(record_sha256.encode("ascii"))).decode("ascii"), key_id(private_key.public_key())


def signature_valid(public_key, record_sha256: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signature), record_sha256.encode("ascii"))
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key_pair(out: str | Path) -> tuple[Path, Path]:
    """Write ``<out>.pem`` (private, mode 0600) and ``<out>.pub.pem``; returns both paths."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    serialization = _serialization()
    key = Ed25519PrivateKey.generate()
    private_path, public_path = Path(f"{out}.pem"), Path(f"{out}.pub.pem")
    if private_path.exists():
        raise StoreError(f"{private_path} already exists.", fix="Choose another --out; never overwrite a signing key.")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path
