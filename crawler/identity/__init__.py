"""Verifiable identity: every request the crawler sends is signed (Web Bot Auth).

A User-Agent string can be copied by anyone; a signature cannot. Following
draft-ietf-webbotauth-httpsig-protocol-01, which profiles HTTP Message
Signatures (RFC 9421) for bots, each request carries ``Signature-Input`` and
``Signature`` made with an Ed25519 key whose public half is published in a
key directory (draft-meunier-webbotauth-httpsig-directory-00), so a site can
check that a request claiming to be this crawler really is. ``signing`` is
the pure core (signature base, key ids, the directory; no Scrapy imports),
``keyring`` keeps the keys on disk (0600, rotation with an overlap),
``middleware`` signs each request as it leaves, and ``scrapy identity``
(crawler/commands/identity.py) manages the keys. See docs/identity.md.
"""
