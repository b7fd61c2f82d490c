"""Signed tree heads: (size, root, timestamp) signed with the crawler's identity key. No Scrapy imports.

The signature covers RFC 9162 section 4.10 ``TreeHeadDataV2`` (see
``crawler.verify_receipt.tree_head_bytes``) and is made with the Ed25519
key that signs the crawler's requests (crawler/identity); the head names it
by its key id (the JWK thumbprint), so anyone finds the public key in the
crawler's published key directory.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from crawler.verify_receipt import ProofError, check_head, public_keys, tree_head_bytes

if TYPE_CHECKING:
    from crawler.identity.signing import SigningKey


def sign_head(key: SigningKey, tree_size: int, root_hash: bytes, timestamp: int | None = None) -> dict[str, Any]:
    """A head as the store keeps it and receipts carry it."""
    moment = int(time.time() * 1000) if timestamp is None else timestamp
    signature = key.sign(tree_head_bytes(tree_size, root_hash, moment))
    return {"tree_size": tree_size, "root_hash": root_hash.hex(), "timestamp": moment, "key_id": key.key_id,
            "signature": base64.b64encode(signature).decode("ascii")}  # fmt: skip


def keys_by_id(keys: list[SigningKey]) -> dict[str, Any]:
    """The public halves, as the verifier takes them (key id -> Ed25519 public key)."""
    return public_keys({"keys": [key.public_jwk() for key in keys]}, "key file")


def head_problem(head: dict[str, Any], keys: dict[str, Any]) -> str | None:
    """Why a stored head does not check out (bad signature, unknown key), or None."""
    try:
        check_head(head, keys, f"head of size {head.get('tree_size')}")
    except ProofError as exc:
        return str(exc)
    return None
