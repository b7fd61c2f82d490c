"""The signing keys on disk: one JSON file, mode 0600, with the current key and the retired ones still published.

No Scrapy imports. The file (``var/signing-key.json`` of the project, or
``COMPLIANCE_SIGNING_KEY``) holds private JWKs, so it is created with mode
0600 and refused when anyone but its owner may read it (as ssh refuses a
private key with loose permissions). Writes go to a temporary file in the
same folder that is then renamed over the old one, so a reader never sees
half a file; the first creation links the new file into place, so two
crawlers starting together (cluster workers on one machine) end up with
the same key rather than one overwriting the other's.

Rotation makes a new key current and keeps the old one in the directory
until ``publish_until``: requests signed just before the rotation, and sites
that cached the directory, still verify during that overlap.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.identity.signing import SigningError, SigningKey

FORMAT = "ethical-crawler-signing-keys/1"
#: How long a rotated-out key stays in the directory by default: 7 days.
DEFAULT_OVERLAP = 7 * 86_400


class KeyFileError(ValueError):
    """The key file is missing, unreadable, malformed or too widely readable (the message names it)."""


@dataclass(frozen=True)
class StoredKey:
    key: SigningKey
    created: int
    #: When it stopped being the current key (None: it is current).
    retired: int | None = None
    #: Listed in the directory until then (None: while current).
    publish_until: int | None = None

    def record(self) -> dict[str, Any]:
        return {**self.key.private_jwk(), "kid": self.key.key_id, "created": self.created,
                "retired": self.retired, "publish_until": self.publish_until}  # fmt: skip


@dataclass(frozen=True)
class Keyring:
    path: Path
    keys: tuple[StoredKey, ...]

    @property
    def current(self) -> SigningKey:
        return next(k.key for k in reversed(self.keys) if k.retired is None)

    def published(self, now: float | None = None) -> list[SigningKey]:
        """The current key first, then every retired key still inside its overlap."""
        now = time.time() if now is None else now
        current = self.current
        others = [k.key for k in self.keys if k.key is not current and (k.publish_until or 0) > now]
        return [current, *others]

    def rotate(self, overlap: int = DEFAULT_OVERLAP, now: float | None = None) -> Keyring:
        """A new current key; the old one stays published for ``overlap`` seconds, expired ones are dropped."""
        if overlap < 0:
            raise KeyFileError(f"overlap: must be at least 0 seconds, got {overlap}")
        moment = int(time.time() if now is None else now)
        kept = []
        for stored in self.keys:
            if stored.retired is None:
                stored = StoredKey(stored.key, stored.created, moment, moment + overlap)
            if (stored.publish_until or 0) > moment:
                kept.append(stored)
        kept.append(StoredKey(SigningKey.generate(), moment))
        ring = Keyring(self.path, tuple(kept))
        _write(self.path, ring, replace=True)
        return ring


def load(path: Path) -> Keyring:
    """Read and check the key file; KeyFileError names the file and what is wrong."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no signing key file (create one with `scrapy identity init`)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the private key; "
            f"fix: chmod 600 {path} (and rotate the key if someone else may have read it)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"{path}: not a JSON key file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("keys"), list):
        raise KeyFileError(f"{path}: format: expected {FORMAT!r} with a list of keys")
    keys = []
    for index, record in enumerate(data["keys"]):
        where = f"{path}: keys[{index}]"
        if not isinstance(record, dict):
            raise KeyFileError(f"{where}: expected an object")
        try:
            key = SigningKey.from_jwk(record)
        except SigningError as exc:
            raise KeyFileError(f"{where}.{exc}") from None
        try:
            created = int(record["created"])
            retired = None if record.get("retired") is None else int(record["retired"])
            until = None if record.get("publish_until") is None else int(record["publish_until"])
        except (KeyError, TypeError, ValueError):
            raise KeyFileError(f"{where}: created/retired/publish_until: expected integer timestamps") from None
        keys.append(StoredKey(key, created, retired, until))
    if not any(k.retired is None for k in keys):
        raise KeyFileError(f"{path}: no current key (every key is retired); fix: scrapy identity rotate")
    return Keyring(path, tuple(keys))


def create(path: Path) -> tuple[Keyring, bool]:
    """A new key file with one key, unless one exists: (the keyring, whether it was created here)."""
    ring = Keyring(path, (StoredKey(SigningKey.generate(), int(time.time())),))
    if _write(path, ring, replace=False):
        return ring, True
    return load(path), False


def load_or_create(path: Path) -> tuple[Keyring, bool]:
    if path.exists():
        return load(path), False
    return create(path)


def _write(path: Path, ring: Keyring, *, replace: bool) -> bool:
    """Write the file 0600 atomically; with ``replace=False``, only if none exists (False: one did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "keys": [k.record() for k in ring.keys]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".signing-key-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fsync(fp.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
