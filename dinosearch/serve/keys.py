"""API keys: salted hashes in a file, plain keys from the environment, compared in constant time.

A key file holds one ``sha256$SALT$HEX`` line per key (``#`` comments allowed); the keys are long
random tokens, so a salted SHA-256 is enough (no slow password hash, which would cost each request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dinosearch.serve.config import API_KEYS_ENV

SCHEME = "sha256"
MIN_KEY_CHARS = 16


def new_key() -> str:
    """A fresh random API key (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_key(key: str, salt: str | None = None) -> str:
    """The key file line for ``key``: ``sha256$SALT$HEX``."""
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"API key is {len(key)} characters; use ≥ {MIN_KEY_CHARS} (new_key())")
    salt = salt or secrets.token_hex(16)
    return f"{SCHEME}${salt}${_digest(salt, key)}"


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}${key}".encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The accepted keys: (salt, digest) pairs; every check walks all of them."""

    hashes: tuple[tuple[str, str], ...]

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is one of the keys, in time independent of which (or where it differs)."""
        found = False
        for salt, digest in self.hashes:
            found |= hmac.compare_digest(_digest(salt, key), digest)
        return found


def load_keys(path: str | Path | None, env: Mapping[str, str]) -> KeyRing:
    """Keys from ``path`` (hash lines) and ``DINOSEARCH_API_KEYS`` (plain, comma-separated)."""
    hashes = list(_read_key_file(Path(path))) if path else []
    plain = [k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
    for key in plain:
        salt = secrets.token_hex(16)
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(
                f"{API_KEYS_ENV} holds a key of {len(key)} characters; use ≥ {MIN_KEY_CHARS}"
            )
        hashes.append((salt, _digest(salt, key)))
    return KeyRing(tuple(hashes))


def _read_key_file(path: Path) -> Sequence[tuple[str, str]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{path}: no such key file; make lines with `dinosearch serve --hash-key`"
        ) from e
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("$")
        if len(parts) != 3 or parts[0] != SCHEME or len(parts[2]) != 64:
            raise ValueError(
                f"{path}:{n} is not a key hash (sha256$SALT$HEX); make one with "
                "`dinosearch serve --hash-key`"
            )
        out.append((parts[1], parts[2]))
    if not out:
        raise ValueError(f"{path} holds no key hash; add one with `dinosearch serve --hash-key`")
    return out
