"""The transparency log: the ledger as an append-only Merkle tree with signed heads (RFC 9162).

A hash chain whose head lives in the database it protects proves order, not
integrity: whoever writes to the database can rewrite history and recompute
every hash. So the ledger is also a Merkle tree (RFC 9162 section 2.1, as
Certificate Transparency), each append batch ends with a *signed tree head*
(size, root, timestamp) signed with the crawler's identity key, and every
receipt carries an inclusion proof against such a head. A site owner who
keeps one head can later check, with the standalone ``crawler/verify_receipt.py``,
that the log only grew since (a consistency proof). ``tree`` is the pure
core (proof construction over stored complete-subtree hashes; the checking
math lives in ``crawler/verify_receipt.py``, the one copy), ``heads`` signs
and checks tree heads, the store keeps nodes and heads (crawler/compliance/store.py),
and ``scrapy ledger head|heads|prove|consistency|verify`` is the command.
See docs/ledger.md.
"""
