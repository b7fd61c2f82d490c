"""Check a stored tree against the entries it was built from, and every stored head against the tree. Pure core.

``scrapy ledger verify`` feeds the entries in order (after the hash chain
has judged them); the tree is rebuilt beside them and every node the store
holds is compared with the rebuilt one, batch by batch (one query per 2,000
nodes), so memory stays flat at any size. Each stored head is checked when
the rebuilt tree reaches its size: same root, and a valid signature by a
key the key file holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from crawler.transparency.heads import head_problem
from crawler.transparency.tree import CompactRange, Fetch, Node

_BATCH = 2000


@dataclass
class TreeAudit:
    fetch: Fetch
    heads: Iterator[dict[str, Any]]
    keys: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    nodes_checked: int = 0
    heads_checked: int = 0
    _tree: CompactRange = field(default_factory=CompactRange)
    _pending: list[tuple[int, int, bytes, int]] = field(default_factory=list)
    _next_head: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._next_head = next(self.heads, None)
        self._check_heads()  # a head of size 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: int, leaf: bytes) -> None:
        for level, idx, digest in self._tree.append(leaf):
            self._pending.append((level, idx, digest, seq))
        if len(self._pending) >= _BATCH:
            self._compare()
        self._check_heads()

    def finish(self) -> None:
        self._compare()
        while self._next_head is not None:
            size = self._next_head.get("tree_size")
            self._problem(f"signed head of size {size} is beyond the tree ({self._tree.size} leaves): entries were removed after it was signed")
            self._next_head = next(self.heads, None)

    @property
    def size(self) -> int:
        return self._tree.size

    def root(self) -> bytes:
        return self._tree.root()

    def _problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def _compare(self) -> None:
        if not self._pending:
            return
        keys: list[Node] = [(lv, ix) for lv, ix, _, _ in self._pending]
        stored = self.fetch(keys)
        for level, idx, digest, seq in self._pending:
            found = stored.get((level, idx))
            self.nodes_checked += 1
            if found == digest:
                continue
            what = "is missing" if found is None else f"is {found.hex()[:16]}..., the entries give {digest.hex()[:16]}..."
            span = f"entry {seq}" if level == 0 else f"entries {(idx << level) + 1}..{(idx + 1) << level}"
            self._problem(f"tree node (level {level}, index {idx}) over {span} {what}")
        self._pending.clear()

    def _check_heads(self) -> None:
        while self._next_head is not None and self._next_head.get("tree_size", -1) <= self._tree.size:
            head = self._next_head
            self._next_head = next(self.heads, None)
            if head.get("tree_size") != self._tree.size:
                continue  # unreachable: heads come in size order and the tree grows one leaf at a time
            self.heads_checked += 1
            if head.get("root_hash") != self._tree.root().hex():
                self._problem(f"signed head of size {head['tree_size']} has root {str(head.get('root_hash'))[:16]}..., "
                              f"the entries give {self._tree.root().hex()[:16]}... (the log was rewritten after it was signed)")  # fmt: skip
            elif self.keys is None:
                self._problem(f"signed head of size {head['tree_size']}: no key file to check its signature with")
            else:
                problem = head_problem(head, self.keys)
                if problem:
                    self._problem(problem)
