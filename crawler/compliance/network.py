"""Which network addresses a crawl may reach: public ones, and what the operator allowed.

A hostile page, robots.txt or redirect can point the crawler at the
machine's own services or its cloud's metadata endpoint
(``http://169.254.169.254/``). So every address a request would reach is
checked: literal hosts here before the request leaves (in every form a URL
parser or ``inet_aton`` accepts: ``2130706433``, ``0x7f.1``, ``017700000001``,
``127.1``, IPv6, IPv4-mapped IPv6), and names after resolution, by the
resolver the connection itself uses (crawler/middlewares/network.py).

Refused unless allowed, by Python's :mod:`ipaddress` tables (IANA special-purpose
registries): loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16),
link-local (169.254/16, fe80::/10), unique-local (fc00::/7), site-local
(fec0::/10), shared address space / CGNAT (100.64/10), documentation
(192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32), multicast
(224/4, ff00::/8), unspecified (0.0.0.0, ::), "this network" (0/8),
benchmarking (198.18/15), reserved (240/4, broadcast) and anything else
``ipaddress`` does not call global. IPv4 embedded in IPv6 (IPv4-mapped,
NAT64 64:ff9b::/96, 6to4, Teredo) is checked as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from crawler.compliance.decision import ALLOW, Decision

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REASON = "network.private-address"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
#: RFC 6761 section 6.3: these names are the local machine whatever DNS says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class NetworkSettingError(ValueError):
    """A COMPLIANCE_ALLOW_NETWORKS entry that is neither a network nor a host name."""


def address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"link-local"``, ...), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_kind(embedded)
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _CGNAT:
        return "shared address space (CGNAT)"
    if any(ip in net for net in _DOCUMENTATION):
        return "documentation"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return "site-local"
        if ip in _UNIQUE_LOCAL:
            return "unique-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None | bool:
    """The WHATWG URL Standard's IPv4 parser (what browsers and ``inet_aton`` accept).

    Returns the address, None when ``host`` is not numeric (a name), or False
    when it looks numeric but is no valid address (refused: a resolver might
    still read it as one).
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if not last or not (last.isdigit() or (last[:2].lower() == "0x" and _is_hex(last[2:]))):
        return None  # does not end in a number: a name
    if len(parts) > 4:
        return False
    numbers = []
    for part in parts:
        value = _ipv4_number(part)
        if value is None:
            return False
        numbers.append(value)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return False
    result = numbers[-1]
    for index, value in enumerate(numbers[:-1]):
        result += value * 256 ** (3 - index)
    return ipaddress.IPv4Address(result)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    if part[:2].lower() == "0x":
        digits = part[2:]
        if not digits:
            return 0
        return int(digits, 16) if _is_hex(digits) else None
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if all(c in "01234567" for c in part[1:]) else None
    return int(part) if part.isdigit() else None


def normalize_host(host: str) -> str:
    """A URL's host as a resolver would read it: percent-decoded, NFKC-mapped, lower-case, no brackets."""
    if "%" in host:
        host = unquote(host)
    if not host.isascii():
        host = unicodedata.normalize("NFKC", host)
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def literal_address(host: str) -> IPAddress | None | bool:
    """The address a host written as a literal names (IPv4 in any form, IPv6), None for a name, False if malformed."""
    host = normalize_host(host)
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return False
    return parse_ipv4_literal(host)


def _is_local_name(name: str) -> bool:
    name = name.rstrip(".")
    return name in _LOCAL_NAMES or name.endswith(".localhost")


@dataclass(frozen=True)
class NetworkPolicy:
    """What a crawl may reach beyond public addresses: COMPLIANCE_ALLOW_NETWORKS."""

    networks: tuple[Network, ...] = ()
    #: Host names allowed whatever they resolve to (``intranet.example``); ``*.corp.example`` covers subdomains.
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: object) -> NetworkPolicy:
        """From the setting: a list or a comma-separated string of CIDRs, addresses and host names."""
        if value is None or value == "":
            return cls()
        entries = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        networks: list[Network] = []
        names: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = str(raw).strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = normalize_host(entry).rstrip(".")
            wildcard = name.startswith("*.")
            label = name[2:] if wildcard else name
            if not label or literal_address(label) is not None or not all(
                part and all(c.isalnum() or c in "-_" for c in part) for part in label.split(".")
            ):
                raise NetworkSettingError(
                    f"COMPLIANCE_ALLOW_NETWORKS: {entry!r} is neither a network (10.0.0.0/8, fd00::/8, 192.168.1.5) "
                    "nor a host name (intranet.example, *.corp.example)"
                )
            if wildcard:
                suffixes.append("." + label)
            else:
                names.add(label)
        return cls(tuple(networks), frozenset(names), tuple(suffixes))

    def allows_name(self, name: str) -> bool:
        name = normalize_host(name).rstrip(".")
        return name in self.names or any(name.endswith(s) or name == s[1:] for s in self.suffixes)

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def address_decision(self, ip: IPAddress, host: str = "") -> Decision:
        """Whether a connection to ``ip`` (reached for ``host``) may be made."""
        kind = address_kind(ip)
        if kind is None or self.allows_address(ip) or (host and self.allows_name(host)):
            return ALLOW
        for_host = f" for {host}" if host and normalize_host(host) != str(ip) else ""
        return Decision.refuse(
            REASON, rule=f"{ip} is {kind}", source="COMPLIANCE_ALLOW_NETWORKS",
            detail=f"address {ip}{for_host}; allow it with COMPLIANCE_ALLOW_NETWORKS if this crawl must reach it",
        )  # fmt: skip

    def resolved_decision(self, host: str, addresses: Iterable[str]) -> Decision:
        """A name's resolved addresses: refused when any of them may not be reached (fail closed)."""
        if self.allows_name(host):
            return ALLOW
        for text in addresses:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                return Decision.refuse(REASON, rule=f"unreadable address {text!r}", detail=f"resolved for {host}")
            decision = self.address_decision(ip, host)
            if not decision.allowed:
                return decision
        return ALLOW

    def host_decision(self, host: str) -> Decision:
        """Before a request leaves: a literal address, or a name that is always this machine (``localhost``).

        Other names are checked once resolved (or left to the proxy, which
        must enforce its own egress rules).
        """
        return _host_decision(self, host)


@lru_cache(maxsize=8192)
def _host_decision(policy: NetworkPolicy, host: str) -> Decision:
    found = literal_address(host)
    if found is False:
        if policy.allows_name(host):
            return ALLOW
        return Decision.refuse(
            REASON, rule=f"host {host!r} looks like a numeric address but is not a valid one",
            detail="a resolver could still read it as an address",
        )  # fmt: skip
    if found is not None:
        return policy.address_decision(found, host)  # type: ignore[arg-type]
    name = normalize_host(host)
    if _is_local_name(name) and not policy.allows_name(name):
        return Decision.refuse(
            REASON, rule=f"{name} is this machine (RFC 6761 6.3)", source="COMPLIANCE_ALLOW_NETWORKS",
            detail=f"host {name}; allow it with COMPLIANCE_ALLOW_NETWORKS if this crawl must reach it",
        )  # fmt: skip
    return ALLOW
