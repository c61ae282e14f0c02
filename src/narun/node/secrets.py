"""Secrets: AES-256-GCM with a 32-byte master key, stored as Go narun's ``StoredSecret`` JSON.

Pure (no NATS): the key, the cipher and the stored document. A secret is encrypted with a
fresh 12-byte nonce and the secret's name as associated data, so a ciphertext moved under
another name does not decrypt. The document in the ``narun-secrets`` KV bucket is Go narun's
(``name``, ``ciphertext`` and ``nonce`` as standard base64, ``description``, ``created_at``,
``updated_at``), so Go narun and narun share one bucket.

No function here puts a secret value into an exception message or a ``repr``.
The cipher comes from the ``cryptography`` package (``pip install 'narun[node]'``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from narun.errors import NarunError

__all__ = [
    "KEY_ENV",
    "KEY_PATH_ENV",
    "SECRETS_BUCKET",
    "MasterKey",
    "SecretError",
    "StoredSecret",
    "decrypt",
    "encrypt",
    "load_master_key",
    "new_master_key",
    "secret_name_problem",
]

SECRETS_BUCKET = "narun-secrets"
"""KV bucket: secret name -> :class:`StoredSecret` JSON (Go narun's name)."""
KEY_ENV = "NARUN_MASTER_KEY"
"""Environment variable holding the master key (standard base64 of 32 bytes)."""
KEY_PATH_ENV = "NARUN_MASTER_KEY_PATH"
"""Environment variable naming a file that holds the master key."""
_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NONCE_SIZE = 12


class SecretError(NarunError):
    """A secret or the master key cannot be used; the message never holds a secret value."""


def secret_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a secret (a KV key), or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "a secret name is 1 to 128 letters, digits, '_' or '-'"
    return None


class MasterKey:
    """The 32-byte AES-256 key. Its ``repr`` does not show it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretError(f"the master key must be 32 bytes (got {len(key)})")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    @classmethod
    def from_text(cls, text: str | bytes, *, source: str) -> MasterKey:
        """Standard base64 of 32 bytes (Go narun's form), surrounding blanks ignored."""
        raw = text.strip() if isinstance(text, bytes) else text.strip().encode()
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise SecretError(f"{source}: the master key is not base64 text") from None
        if len(key) != 32:
            raise SecretError(f"{source}: the master key must decode to 32 bytes (got {len(key)})")
        return cls(key)

    def text(self) -> str:
        """The key as standard base64 (what a key file holds)."""
        return base64.b64encode(self._key).decode()


def new_master_key() -> MasterKey:
    """32 random bytes from the OS."""
    return MasterKey(os.urandom(32))


def load_master_key(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> MasterKey | None:
    """The key from ``path``, else ``$NARUN_MASTER_KEY_PATH``, else ``$NARUN_MASTER_KEY``.

    None when none is given; :class:`SecretError` when one is given but unusable.
    """
    env = os.environ if env is None else env
    where = path or env.get(KEY_PATH_ENV) or None
    if where:
        try:
            data = Path(where).read_bytes()
        except OSError as exc:
            raise SecretError(f"cannot read the master key file {where}: {exc.strerror}") from None
        return MasterKey.from_text(data, source=str(where))
    if env.get(KEY_ENV):
        return MasterKey.from_text(env[KEY_ENV], source=f"${KEY_ENV}")
    return None


def _aesgcm(key: MasterKey) -> object:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise SecretError(
            "secrets need the 'cryptography' package: pip install 'narun[node]'"
        ) from None
    return AESGCM(key._key)


def encrypt(key: MasterKey, name: str, value: bytes) -> tuple[bytes, bytes]:
    """``(ciphertext with tag, nonce)`` of ``value``, bound to ``name``."""
    nonce = os.urandom(_NONCE_SIZE)
    cipher = _aesgcm(key)
    return cipher.encrypt(nonce, value, name.encode()), nonce  # type: ignore[attr-defined]


def decrypt(key: MasterKey, name: str, ciphertext: bytes, nonce: bytes) -> bytes:
    """The value; :class:`SecretError` if key, name, nonce or bytes do not match."""
    from cryptography.exceptions import InvalidTag

    if len(nonce) != _NONCE_SIZE:
        raise SecretError(f"secret {name!r}: the nonce is {len(nonce)} bytes, not 12")
    cipher = _aesgcm(key)
    try:
        value: bytes = cipher.decrypt(nonce, ciphertext, name.encode())  # type: ignore[attr-defined]
    except InvalidTag:
        raise SecretError(
            f"secret {name!r} does not decrypt with this master key (another key, or altered)"
        ) from None
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, repr=False)
class StoredSecret:
    """The KV document (Go's ``StoredSecret``): only ciphertext, never the value."""

    name: str
    ciphertext: bytes
    nonce: bytes
    created_at: str
    updated_at: str
    description: str = ""

    def __repr__(self) -> str:
        return f"StoredSecret(name={self.name!r}, updated_at={self.updated_at!r})"

    @classmethod
    def seal(
        cls,
        key: MasterKey,
        name: str,
        value: bytes,
        *,
        description: str = "",
        previous: StoredSecret | None = None,
    ) -> StoredSecret:
        """Encrypt ``value``; an update keeps the first ``created_at``."""
        ciphertext, nonce = encrypt(key, name, value)
        now = _now()
        return cls(
            name=name,
            ciphertext=ciphertext,
            nonce=nonce,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            description=description or (previous.description if previous else ""),
        )

    def open(self, key: MasterKey) -> bytes:
        """The value (see :func:`decrypt`)."""
        return decrypt(key, self.name, self.ciphertext, self.nonce)

    def encode(self) -> bytes:
        """JSON as Go writes it (``[]byte`` as standard base64, ``description`` omitempty)."""
        d: dict[str, str] = {
            "name": self.name,
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
            "nonce": base64.b64encode(self.nonce).decode(),
        }
        if self.description:
            d["description"] = self.description
        d["created_at"] = self.created_at
        d["updated_at"] = self.updated_at
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes, *, key_name: str) -> StoredSecret:
        """Parse the KV value stored under ``key_name``; :class:`SecretError` if malformed."""
        try:
            d = json.loads(raw)
            secret = cls(
                name=str(d["name"]),
                ciphertext=base64.b64decode(d["ciphertext"], validate=True),
                nonce=base64.b64decode(d["nonce"], validate=True),
                created_at=str(d.get("created_at", "")),
                updated_at=str(d.get("updated_at", "")),
                description=str(d.get("description") or ""),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise SecretError(f"secret {key_name!r}: not a stored secret document") from None
        if secret.name != key_name:
            raise SecretError(f"secret {key_name!r}: the document names {secret.name!r}")
        return secret
