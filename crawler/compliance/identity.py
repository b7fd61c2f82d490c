"""Honest identification: the product token and the User-Agent header.

RFC 9309 §2.2.1: a crawler matches robots.txt groups on its *product token*,
which may contain only letters, "_" and "-". Protego matches a group when the
group's name appears anywhere inside the string it is given, so it must be
given the bare token, never the full User-Agent header ("Mozilla/5.0 (...)"
would match a group named "mozilla").
"""

from __future__ import annotations

import re

_TOKEN_RE = re.compile(r"[A-Za-z_-]+")


class IdentityError(ValueError):
    """The bot name or contact cannot identify the crawler honestly."""


def validate_product_token(token: str) -> str:
    if not token or not _TOKEN_RE.fullmatch(token):
        raise IdentityError(
            f"COMPLIANCE_BOT_NAME: {token!r} is not a valid robots.txt product token; "
            "use only letters, '_' and '-' (RFC 9309 section 2.2.1), e.g. 'ExampleBot'"
        )
    return token


def validate_contact(contact: str | None) -> str:
    contact = (contact or "").strip()
    if not contact:
        raise IdentityError(
            "COMPLIANCE_CONTACT is not set: site owners must be able to reach the operator. "
            "Set it to a URL or e-mail address, e.g. "
            "-s COMPLIANCE_CONTACT=https://example.org/crawler or in settings.py"
        )
    if any(ch in contact for ch in "()\r\n"):
        raise IdentityError(
            f"COMPLIANCE_CONTACT: {contact!r} may not contain parentheses or line breaks "
            "(it is placed inside the User-Agent comment)"
        )
    return contact


def user_agent(token: str, version: str, contact: str) -> str:
    """``<token>/<version> (+<contact>)``, the form search engines use."""
    return f"{token}/{version} (+{contact})"
