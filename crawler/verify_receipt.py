#!/usr/bin/env python3
"""Check a receipt of the ethical crawler's ledger without installing the crawler.

Standalone on purpose: this file needs only Python 3.11+ and ``cryptography``
(``pip install cryptography``), so a site owner can copy it and check a
receipt against a crawler they do not trust::

    python verify_receipt.py receipt.json --key-directory https://crawler.example/.well-known/http-message-signatures-directory
    python verify_receipt.py receipt.json --key key.json --newer-head head.json --consistency proof.json
    python verify_receipt.py receipt.json --key-directory URL --portal https://crawler.example/

(``--portal``: the crawler's site owners' portal serves its latest signed head
at ``/ledger/head`` and consistency proofs at ``/ledger/consistency?old=N&new=M``.)

It prints one line per check (``ok`` or ``FAIL``) and exits 0 when every
check passed, 1 when one failed, 2 when an input cannot be read.

The ledger is an append-only Merkle tree (RFC 9162 section 2.1, as
Certificate Transparency): leaf ``SHA-256(0x00 || entry)`` where ``entry`` is
the canonical JSON of the ledger entry, interior node
``SHA-256(0x01 || left || right)``. A *tree head* (size, root hash,
timestamp) is signed with the crawler's Ed25519 identity key over the
RFC 9162 section 4.10 ``TreeHeadDataV2`` bytes; the head names the key by its
JWK SHA-256 thumbprint (RFC 7638), the key id of the crawler's published key
directory. Checks:

1. each head's signature, with the key the head names;
2. the receipt's entry is leaf ``seq - 1`` of the tree of the receipt's
   head (inclusion proof, RFC 9162 section 2.1.3.2);
3. given a newer head and a consistency proof, the newer tree extends the
   receipt's tree unchanged (RFC 9162 section 2.1.4.2): the log was only
   appended to since, so the entry was neither altered nor removed.

This module is also the one copy of the proof-checking math: the crawler's
own core (``crawler.transparency``) imports it from here.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: The root of the empty tree: SHA-256 of nothing (RFC 9162 section 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Media type the key directory is served as (draft-meunier-webbotauth-httpsig-directory-00).
DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"


class ProofError(ValueError):
    """A proof, head or receipt does not check out; the message says what and where."""


class InputError(ValueError):
    """An input file, URL or key cannot be read (exit status 2)."""


# -- RFC 9162 hashing ---------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 kept as is (what the ledger hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def entry_leaf_hash(entry: dict[str, Any]) -> bytes:
    """The leaf hash of a ledger entry: SHA-256(0x00 || its canonical JSON, UTF-8)."""
    return leaf_hash(canonical_json(entry).encode("utf-8"))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: ``leaf`` is leaf ``index`` (from 0) of the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != 32:
        raise ProofError(f"a leaf hash has 32 bytes, this one {len(leaf)}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    if r != root:
        raise ProofError(f"the proof leads to root {r.hex()[:16]}..., the head says {root.hex()[:16]}...")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """RFC 9162 section 2.1.4.2: the tree of ``size2``/``root2`` extends the tree of ``size1``/``root1``.

    The edge cases follow transparency-dev/merkle: equal sizes need an empty
    proof and equal roots; a proof from the empty tree proves nothing and is refused.
    """
    if size2 < size1:
        raise ProofError(f"the newer tree ({size2} entries) is smaller than the older one ({size1}): the log shrank")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if root1 != root2:
            raise ProofError(f"two heads of size {size1} have different roots: the log was rewritten (forked)")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than it should be")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than it should be")
    if fr != root1:
        raise ProofError(f"the older tree ({size1} entries) is not a prefix of the newer one: "
                         f"the proof rebuilds its root as {fr.hex()[:16]}..., the older head says {root1.hex()[:16]}...")  # fmt: skip
    if sr != root2:
        raise ProofError(f"the proof leads to root {sr.hex()[:16]}..., the newer head says {root2.hex()[:16]}...")


# -- signed tree heads --------------------------------------------------------------------------


def tree_head_bytes(tree_size: int, root_hash: bytes, timestamp: int) -> bytes:
    """RFC 9162 section 4.10 ``TreeHeadDataV2`` (TLS encoding): what a head's signature covers.

    ``uint64 timestamp`` (milliseconds since the epoch), ``uint64 tree_size``,
    ``opaque root_hash<32..2^8-1>``, ``Extension extensions<0..2^16-1>`` (none).
    """
    if not 0 <= timestamp < 2**64 or not 0 <= tree_size < 2**64 or not 32 <= len(root_hash) <= 255:
        raise ProofError("the tree head's timestamp, size or root hash is out of range")
    return struct.pack(">QQB", timestamp, tree_size, len(root_hash)) + root_hash + struct.pack(">H", 0)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(x: str) -> str:
    """RFC 7638 SHA-256 thumbprint of an Ed25519 public JWK (RFC 8037 A.3): the key id."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def public_keys(document: Any, where: str) -> dict[str, Any]:
    """Ed25519 public keys by key id (the thumbprint, computed here) from a JWK or a JWKS ``{"keys": [...]}``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    jwks = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
    if not isinstance(jwks, list):
        raise InputError(f"{where}: keys: expected a list of JWKs")
    found: dict[str, Any] = {}
    for index, jwk in enumerate(jwks):
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
            continue  # a directory may list other kinds of key; they cannot have signed a head
        try:
            raw = b64url_decode(jwk["x"])
            found[jwk_thumbprint(jwk["x"])] = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise InputError(f"{where}: keys[{index}].x: not a base64url Ed25519 public key") from None
    if not found:
        raise InputError(f"{where}: no Ed25519 public key (OKP/Ed25519 JWK with x) in it")
    return found


def _hash_field(head: dict[str, Any], name: str, where: str) -> bytes:
    value = head.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ProofError(f"{where}: {name}: expected 64 hex digits (a SHA-256 hash), got {str(value)[:80]!r}")
    return raw


def check_head(head: Any, keys: dict[str, Any], where: str) -> tuple[int, bytes]:
    """Check a signed tree head; returns (tree size, root hash)."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(head, dict):
        raise ProofError(f"{where}: expected a tree head object")
    size, timestamp = head.get("tree_size"), head.get("timestamp")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProofError(f"{where}: tree_size: expected a whole number, got {size!r}")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise ProofError(f"{where}: timestamp: expected milliseconds since the epoch, got {timestamp!r}")
    root = _hash_field(head, "root_hash", where)
    key_id = head.get("key_id")
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise ProofError(f"{where}: signed by key {key_id!r}, which the key directory or key file does not hold "
                         f"(it holds {', '.join(sorted(keys))})")  # fmt: skip
    try:
        signature = base64.b64decode(str(head.get("signature", "")), validate=True)
        key.verify(signature, tree_head_bytes(size, root, timestamp))
    except (InvalidSignature, ValueError):
        raise ProofError(f"{where}: the signature does not match the head (size {size}, root {root.hex()[:16]}...)") from None
    return size, root


def _when(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp} ms"


def _hashes(value: Any, where: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ProofError(f"{where}: expected a list of hex hashes")
    found = []
    for index, item in enumerate(value):
        try:
            raw = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ProofError(f"{where}[{index}]: expected 64 hex digits, got {str(item)[:80]!r}")
        found.append(raw)
    return found


# -- reading inputs ----------------------------------------------------------------------------


def read_source(source: str, *, accept: str = "application/json") -> Any:
    """JSON from a file or an http(s) URL (URLs: a 200 only, no redirects)."""
    if source.startswith(("https://", "http://")):
        # Imported here: the store imports this module (for the hashing), and every command would pay for urllib.
        import urllib.error
        import urllib.request

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # a key directory is accepted only as a 200 from the URL asked for

        request = urllib.request.Request(source, headers={"Accept": accept, "User-Agent": "verify_receipt.py"})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                if response.status != 200:
                    raise InputError(f"{source}: HTTP {response.status}, expected 200")
                body = response.read(1_000_000)
        except urllib.error.HTTPError as exc:
            raise InputError(f"{source}: HTTP {exc.code}, expected 200 (redirects are not followed)") from None
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"{source}: cannot fetch: {getattr(exc, 'reason', exc)}") from None
        where = source
    else:
        try:
            body = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror}") from None
        where = source
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: not JSON ({exc})") from None


def find_receipts(document: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every receipt in a document: the document itself, or each ``ledger_receipt`` inside it (command output)."""
    if isinstance(document, dict):
        if {"entry", "inclusion_proof", "tree_head"} <= set(document):
            yield path or "receipt", document
            return
        for key, value in document.items():
            yield from find_receipts(value, f"{path}.{key}" if path else key)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from find_receipts(value, f"{path}[{index}]")


# -- the checks ---------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def ok(self, line: str) -> None:
        print(f"ok    {line}")

    def fail(self, line: str) -> None:
        self.failed += 1
        print(f"FAIL  {line}")


def check_receipt(where: str, receipt: dict[str, Any], keys: dict[str, Any], report: Report) -> tuple[int, bytes] | None:
    """Head signature and inclusion; returns the receipt head's (size, root) when the head checks out."""
    entry = receipt.get("entry")
    seq = entry.get("seq") if isinstance(entry, dict) else None
    label = f"{where}: entry {seq} ({entry.get('kind') if isinstance(entry, dict) else '?'})"
    head: tuple[int, bytes] | None = None
    try:
        head = check_head(receipt.get("tree_head"), keys, f"{where}: tree_head")
        signed = receipt["tree_head"]
        report.ok(f"{where}: head signature: tree size {head[0]}, root {head[1].hex()[:16]}..., "
                  f"key {signed['key_id']}, signed {_when(signed['timestamp'])}")  # fmt: skip
    except ProofError as exc:
        report.fail(f"head signature: {exc}")
    try:
        if not isinstance(entry, dict) or not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ProofError(f"{where}: entry: expected a ledger entry with a seq from 1")
        if head is None:
            raise ProofError(f"{label}: no trusted head to prove it against")
        index = receipt.get("leaf_index", seq - 1)
        if index != seq - 1:
            raise ProofError(f"{label}: leaf_index {index!r} is not seq - 1 ({seq - 1})")
        proof = _hashes(receipt.get("inclusion_proof"), f"{where}: inclusion_proof")
        verify_inclusion(seq - 1, head[0], entry_leaf_hash(entry), proof, head[1])
        report.ok(f"{label}: inclusion: leaf {seq - 1} of the tree of size {head[0]} (proof of {len(proof)} hashes)")
    except ProofError as exc:
        report.fail(f"inclusion: {exc}" if str(exc).startswith(where) else f"inclusion: {label}: {exc}")
    return head


def check_consistency(old: tuple[int, bytes], newer_head: Any, proof_doc: Any, keys: dict[str, Any], report: Report) -> None:
    try:
        new = check_head(newer_head, keys, "newer head")
        report.ok(f"newer head signature: tree size {new[0]}, root {new[1].hex()[:16]}..., key {newer_head['key_id']}, "
                  f"signed {_when(newer_head['timestamp'])}")  # fmt: skip
    except ProofError as exc:
        report.fail(f"newer head signature: {exc}")
        return
    try:
        if not isinstance(proof_doc, dict):
            raise ProofError("consistency: expected a consistency proof object")
        if proof_doc.get("old_size") != old[0] or proof_doc.get("new_size") != new[0]:
            raise ProofError(f"the proof is from size {proof_doc.get('old_size')!r} to {proof_doc.get('new_size')!r}; "
                             f"the heads are of sizes {old[0]} and {new[0]} (ask for: scrapy ledger consistency {old[0]} {new[0]})")  # fmt: skip
        verify_consistency(old[0], new[0], _hashes(proof_doc.get("proof"), "consistency: proof"), old[1], new[1])
        report.ok(f"consistency: the tree of size {old[0]} is unchanged inside the tree of size {new[0]} (append-only)")
    except ProofError as exc:
        report.fail(f"consistency: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_receipt.py", description="Check a receipt of the ethical crawler's ledger (standalone: Python + cryptography)."
    )
    parser.add_argument("receipt", help="a receipt JSON file, or the saved output of `scrapy notice add` / `scrapy purge`")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key-directory", metavar="FILE_OR_URL", help="the crawler's published key directory (JWKS)")
    keys.add_argument("--key", metavar="FILE", help="a public JWK (or JWKS) file of the crawler's key")
    parser.add_argument("--newer-head", metavar="H.json", help="a newer signed tree head (`scrapy ledger head`)")
    parser.add_argument("--consistency", metavar="P.json",
                        help="the consistency proof from the receipt's head to the newer one (`scrapy ledger consistency OLD NEW`)")  # fmt: skip
    parser.add_argument("--portal", metavar="URL",
                        help="the crawler's portal (`scrapy compliance serve`): fetch its latest signed head and the consistency "
                             "proof from each receipt's head to it")  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.newer_head) != bool(args.consistency):
        parser.error("--newer-head and --consistency go together")
    if args.portal and args.newer_head:
        parser.error("--portal fetches the newer head and the proof itself: give it, or --newer-head and --consistency")
    portal = args.portal.rstrip("/") if args.portal else None
    try:
        source = args.key_directory or args.key
        key_set = public_keys(read_source(source, accept=DIRECTORY_MEDIA_TYPE), source)
        document = read_source(args.receipt)
        receipts = list(find_receipts(document))
        if not receipts:
            raise InputError(f"{args.receipt}: no receipt in it (an object with entry, inclusion_proof and tree_head)")
        newer = (read_source(args.newer_head), read_source(args.consistency)) if args.newer_head else None
        if portal is not None:
            newer = (read_source(f"{portal}/ledger/head"), None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report()
    heads = [check_receipt(where, receipt, key_set, report) for where, receipt in receipts]
    if newer is not None:
        # The receipts of one command's output are proved against one head; each distinct head is checked.
        trusted = sorted({head for head in heads if head is not None})
        for head in trusted:
            proof_doc = newer[1]
            if portal is not None:
                new_size = newer[0].get("tree_size") if isinstance(newer[0], dict) else None
                try:
                    proof_doc = read_source(f"{portal}/ledger/consistency?old={head[0]}&new={new_size}")
                except InputError as exc:
                    report.fail(f"consistency: {exc}")
                    continue
            check_consistency(head, newer[0], proof_doc, key_set, report)
        if not trusted:
            report.fail("consistency: no trusted head in the receipt to check the newer head against")
    print(f"{'all checks passed' if not report.failed else f'{report.failed} check(s) FAILED'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
