"""Registered domains, computed offline.

tldextract's default extractor downloads the Public Suffix List on first use,
with no timeout: on a machine whose network black-holes, that stalls a crawl
for minutes, and it makes results depend on whatever list was fetched. We
always use the snapshot bundled with the pinned tldextract release, and never
a cache directory, so results are reproducible and nothing goes out.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

# RFC 6761 / RFC 2606 special-use names are not in the Public Suffix List, so
# without these "shop.test" would have no registered domain at all, and every
# such host would collapse into one empty domain.
SPECIAL_USE_SUFFIXES: tuple[str, ...] = ("test", "example", "invalid", "localhost")

@lru_cache(maxsize=1)
def _extractor():  # type: ignore[no-untyped-def]
    """tldextract with the bundled snapshot (built on first use: commands that need no domain skip its import)."""
    import tldextract

    return tldextract.TLDExtract(
        suffix_list_urls=(),  # never fetch: the bundled snapshot only
        cache_dir=None,  # never read or write a cache that could hold a fetched list
        fallback_to_snapshot=True,
        extra_suffixes=SPECIAL_USE_SUFFIXES,
    )


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """The registrable domain of ``host`` (``a.news.test`` -> ``news.test``).

    IP literals, bare suffixes and other hosts without a registrable part fall
    back to the host itself, so that two different IPs never share a domain.
    """
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        return host
    domain = _extractor()(host).top_domain_under_public_suffix
    return domain or host


def is_public_suffix(name: str) -> bool:
    """True for a bare public suffix (``co.uk``, ``uk``, ``test``): no registrable part, and not an IP literal."""
    name = name.strip().lower().rstrip(".").strip("[]")
    return bool(name) and not is_ip_literal(name) and not _extractor()(name).domain


def is_ip_literal(name: str) -> bool:
    """``name`` (without brackets) is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: One DNS label (RFC 1035 / RFC 1123): letters, digits and '-', not first or last, 1 to 63 characters.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
#: Host names in URLs sometimes carry '_' in labels below the registered domain (browsers accept them).
_URL_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def host_problem(host: str, *, in_url: bool = False) -> str | None:
    """Why ``host`` (as written, Unicode or IDNA) is not a syntactically valid host name, or None.

    IP literals are valid. ``in_url`` accepts '_' in labels (host names in
    URLs); a registered domain never has one.
    """
    name = host.strip().lower().rstrip(".").strip("[]")
    if is_ip_literal(name):
        return None
    if not name:
        return "an empty name covers nothing"
    if "*" in name:
        return "wildcards are not accepted (a domain covers its subdomains already)"
    if any(c.isspace() for c in name):
        return "a domain name has no spaces"
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return "not a valid internationalized domain name (IDNA)"
    if len(name) > 253:
        return "longer than 253 characters"
    label_re = _URL_LABEL if in_url else _LABEL
    for label in name.split("."):
        if not label:
            return "has an empty label ('..')"
        if not label_re.fullmatch(label):
            allowed = "letters, digits, '-'" + (" and '_'" if in_url else "")
            return f"{label!r} is not a DNS label ({allowed}; 1-63 characters; not starting or ending with '-')"
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return f"{label!r} is not valid IDNA (punycode)"
    return None


def registered_domain_problem(name: str) -> str | None:
    """Why ``name`` is not a registered domain a notice can name (syntax, wildcard, public suffix, unknown suffix), or None.

    ``name`` as stored: lower case, IDNA. IP literals are accepted (they have
    no registered domain; a notice on one covers that address).
    """
    problem = host_problem(name)
    if problem is not None:
        return problem
    bare = name.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return None
    except ValueError:
        pass
    if is_public_suffix(name):
        return "is a public suffix, not a registered domain"
    if not _extractor()(name).suffix:
        return ("is not under a public suffix the bundled Public Suffix List knows, so its subdomains could not be "
                "told apart from it; name a registered domain, or give the host as a URL pattern (https://HOST/*)")
    return None


def host_of(url: str) -> str:
    """The lower-case host name of ``url`` (no port, no brackets for IPv6)."""
    return (urlsplit(url).hostname or "").lower()


def ascii_host(host: str) -> str:
    """A host as URLs carry it: lower case, no trailing dot, IDNA (``bücher.de`` -> ``xn--bcher-kva.de``)."""
    host = host.strip().lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host  # not encodable: kept as written


def filed_under(url: str) -> tuple[str, str]:
    """The (host, registered domain) a record of ``url`` is filed under in the store.

    The host in IDNA form, as URLs carry it and as notice scopes are written
    (a spider may yield ``http://bücher.de/`` in an item; a purge of
    ``bücher.de`` must still find it), and at most 255 characters, the
    column's width (a longer name is not a DNS name anyway; a hostile link
    must not make the whole batch fail to write).
    """
    host = ascii_host(host_of(url))
    return host[:255], registered_domain(host)[:255]


def domain_of(url: str) -> str:
    return registered_domain(host_of(url))


def host_in_domain(host: str, domain: str) -> bool:
    """True when ``host`` is ``domain`` or one of its subdomains."""
    host = host.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def extractor_is_offline() -> bool:
    """True when the shared extractor is configured never to fetch the list."""
    return tuple(_extractor().suffix_list_urls) == () and not _extractor()._cache.enabled
