"""Merkle tree construction over stored complete subtrees (RFC 9162 section 2.1). No Scrapy, no SQLAlchemy.

The store keeps one hash per *complete* subtree: node ``(level, index)``
covers leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 are the
leaf hashes. A node is written once, when its last leaf arrives, and never
changes (append-only), about two rows per entry. Any tree size's root, and
any inclusion or consistency proof, is then a fold over at most
``2 * log2(n)`` stored nodes, fetched in one query: no scan, whatever the
size.

A subtree of RFC 9162's recursive definitions that is not complete (the
right edge of a tree whose size is not a power of two) is the fold of the
complete subtrees it splits into (:func:`range_nodes`), exactly as
``MTH(D[k:n])`` recurses.

The checking side (``verify_inclusion``, ``verify_consistency``) is in
``crawler/verify_receipt.py``, the standalone verifier, and imported from
there so that the crawler and a site owner run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from crawler.verify_receipt import (  # noqa: F401 - re-exported: the one copy of the math
    EMPTY_ROOT, ProofError, canonical_json, entry_leaf_hash, leaf_hash, node_hash, verify_consistency, verify_inclusion,
)  # fmt: skip

Node = tuple[int, int]
#: Fetches stored nodes by (level, index); a missing node is simply absent from the answer.
Fetch = Callable[[Iterable[Node]], Mapping[Node, bytes]]


class MissingNode(LookupError):
    """The store lacks a node the tree needs (deleted or never written): the tree is damaged."""


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees, left to right, whose fold is ``MTH(D[start:end])``.

    ``start`` is a multiple of the largest power of two not above ``end - start``
    (true of every subtree RFC 9162's recursion visits).
    """
    nodes = []
    while start < end:
        width = end - start
        level = width.bit_length() - 1
        if width != 1 << level:
            level = _split(width).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: list[bytes]) -> bytes:
    """The hash of a range from its complete subtrees' hashes: ``H(a, H(b, H(c, d)))``."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 section 2.1.3.1 ``PATH(m, D[n])`` as leaf ranges, deepest first."""
    if not 0 <= index < size:
        raise ProofError(f"entry {index + 1} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """RFC 9162 section 2.1.4.1 ``PROOF(m, D[n])`` as leaf ranges, in proof order."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new, old, True
    while True:
        if m == end - start:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    return ranges[::-1]


def _hashes_of(ranges: list[tuple[int, int]], fetch: Fetch) -> list[bytes]:
    wanted = {(s, e): range_nodes(s, e) for s, e in ranges}
    found = fetch({node for nodes in wanted.values() for node in nodes})
    result = []
    for s, e in ranges:
        missing = [node for node in wanted[(s, e)] if node not in found]
        if missing:
            level, idx = missing[0]
            raise MissingNode(f"the tree has no node at level {level}, index {idx} (leaves {idx << level}..{((idx + 1) << level) - 1})")
        result.append(fold([found[node] for node in wanted[(s, e)]]))
    return result


def root(size: int, fetch: Fetch) -> bytes:
    return _hashes_of([(0, size)], fetch)[0] if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, fetch: Fetch) -> list[bytes]:
    return _hashes_of(inclusion_ranges(index, size), fetch)


def consistency_proof(old: int, new: int, fetch: Fetch) -> list[bytes]:
    return _hashes_of(consistency_ranges(old, new), fetch)


@dataclass
class CompactRange:
    """The right edge of a tree: the complete subtrees (peaks) that make up ``size`` leaves.

    Appending a leaf returns the nodes it completes (the leaf itself and each
    parent it closes), which is all a store must write. Built from the
    stored peaks of the current size, so an append reads at most log2(n) rows.
    """

    size: int = 0
    peaks: list[tuple[Node, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, size: int, fetch: Fetch) -> CompactRange:
        keys = range_nodes(0, size)
        found = fetch(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            level, idx = missing[0]
            raise MissingNode(f"the tree has no node at level {level}, index {idx}")
        return cls(size, [(key, found[key]) for key in keys])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        written = [(0, self.size, leaf)]
        self.peaks.append(((0, self.size), leaf))
        while len(self.peaks) > 1 and self.peaks[-1][0][0] == self.peaks[-2][0][0]:
            (level, _), right = self.peaks.pop()
            (_, left_idx), left = self.peaks.pop()
            parent = (level + 1, left_idx >> 1)
            digest = node_hash(left, right)
            self.peaks.append((parent, digest))
            written.append((*parent, digest))
        self.size += 1
        return written

    def root(self) -> bytes:
        return fold([digest for _, digest in self.peaks])


class MemoryTree:
    """A whole tree in a dict: for tests and for checking a store against its entries."""

    def __init__(self) -> None:
        self.nodes: dict[Node, bytes] = {}
        self.range = CompactRange()

    def append(self, leaf: bytes) -> None:
        for level, idx, digest in self.range.append(leaf):
            self.nodes[(level, idx)] = digest

    def fetch(self, keys: Iterable[Node]) -> dict[Node, bytes]:
        return {key: self.nodes[key] for key in keys if key in self.nodes}

    @property
    def size(self) -> int:
        return self.range.size
