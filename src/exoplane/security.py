"""Secrets at rest: hashing of credentials, encryption of stored secrets, the server key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exoplane.config import MIN_SECRET_KEY_LENGTH, Settings

__all__ = ["MIN_SECRET_KEY_LENGTH"]

SECRET_KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """The configured or stored server key cannot be used."""


def load_secret_key(settings: Settings) -> bytes:
    """Return the server key: ``EXOPLANE_SECRET_KEY``, else ``$EXOPLANE_HOME/secret.key``.

    The file is created with mode 0600 on first use; concurrent first starts agree on one key
    because only the process that wins the exclusive create writes it. On PostgreSQL, where
    processes on several machines share the database, the key must be set explicitly: a key
    generated per machine would differ from machine to machine.
    """
    if settings.secret_key is None and not settings.is_sqlite:
        raise SecretKeyError(
            "EXOPLANE_SECRET_KEY must be set when the database is PostgreSQL: every process "
            "sharing the database must use the same key (see docs/deployment.md)"
        )
    if settings.secret_key is not None:
        key = settings.secret_key.get_secret_value().encode()
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise SecretKeyError(
                f"EXOPLANE_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long"
            )
        return key
    path = Path(settings.home) / SECRET_KEY_FILE
    make_private_directory(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    key = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


def make_private_directory(path: Path) -> None:
    """Create ``path`` (the home, say) with mode 0700 unless it exists; an existing
    directory is left as its owner set it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _read_key_file(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise SecretKeyError(f"{path} is empty or too short; remove it to generate a new one")
    return key


def derive_key(secret_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, so no two uses ever share key material."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"exoplane/{purpose}".encode()
    ).derive(secret_key)


def key_fingerprint(secret_key: bytes) -> str:
    """A fingerprint that tells keys apart without revealing them: a key derived for this
    purpose alone, so it gives nothing about the keys of any other use."""
    return derive_key(secret_key, "fingerprint").hex()


# How a keyed secret hash is stored: the scheme, then the HMAC in unpadded base64url (55
# characters in all, so it fits the 64-character columns the unkeyed hex form had).
SECRET_HASH_SCHEME = "hmac-sha256$"


class Vault:
    """Keeps secrets at rest: encrypts those that must be read back (Exotel credentials, SIP
    secrets) and hashes, keyed, those that need only be checked (customer and app secrets)."""

    def __init__(self, secret_key: bytes) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "vault")))
        self._secret_hash_key = derive_key(secret_key, "secret-hash")

    def hash_secret(self, value: str) -> str:
        """The stored form of a customer or app secret: HMAC-SHA256 under a key derived from
        the server key. The secrets carry 128 random bits, so one fast keyed hash is all a
        check needs, and a copy of the database alone does not even allow guessing at them."""
        digest = hmac.new(self._secret_hash_key, value.encode(), hashlib.sha256).digest()
        return SECRET_HASH_SCHEME + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def secret_matches(self, value: str, stored: str) -> bool:
        """Whether ``value`` is the secret ``stored`` was made from, in the keyed form or the
        unkeyed SHA-256 hex of earlier versions (see ``needs_rehash``)."""
        if stored.startswith(SECRET_HASH_SCHEME):
            return hmac.compare_digest(self.hash_secret(value), stored)
        return hmac.compare_digest(hash_secret(value), stored)

    @staticmethod
    def needs_rehash(stored: str) -> bool:
        """True for a stored form of an earlier version, to be replaced by ``hash_secret``'s
        once the secret has been presented and matched."""
        return not stored.startswith(SECRET_HASH_SCHEME)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def can_decrypt(self, ciphertext: str) -> bool:
        try:
            self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted: EXOPLANE_SECRET_KEY differs from the key "
                "it was written with"
            ) from exc


def hash_secret(value: str) -> str:
    """Hash of a high-entropy credential looked up by its hash (a token, an operator's API
    key, a console session), and the form customer and app secrets had before
    ``Vault.hash_secret``.

    The inputs carry at least 122 random bits, so a fast hash is the right tool here: a
    password hash would only slow every authenticated request down.
    """
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    """A fresh customer or app secret in the shape Exotel issues them (a UUID's 36
    characters), every one of its 128 bits random: a version 4 UUID fixes 6 of them."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16)))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def new_id() -> str:
    return str(uuid.uuid4())


# Passwords are chosen by people, so they get a deliberately slow, salted hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


def new_api_key() -> str:
    return "exo_" + secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(18)
