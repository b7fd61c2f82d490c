"""TLS for the proof-of-control fetch: the chain and the host name checked, and any doubt refuses.

Scrapy's ``DOWNLOAD_VERIFY_CERTIFICATES`` hands the check to Twisted's
``optionsForClientTLS`` (the chain against the system's trust store, the
host name with service_identity). Twisted's host-name callback (26.10,
``twisted/internet/_sslverify.py`` ``_verifyCB``) only refuses on
``VerificationError``: any other exception, such as service_identity's
``CertificateError`` for a name pattern it will not read (``*.test``: "too
few host components for wildcard usage"), is logged and the chain's
verdict stands, so a certificate trusted for *any* name passes for every
host. :class:`ProofTLSPolicy` puts a callback in its place that refuses on
anything but a clean match.

The trust store is OpenSSL's default (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
replace it; the test kit trusts the test web's certificate that way).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from OpenSSL import SSL
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer


class HostNameMismatch(Exception):
    """The certificate does not name the host (or names it in a way that cannot be read)."""


@implementer(IPolicyForHTTPS)
class ProofTLSPolicy:
    """``DOWNLOADER_CLIENTCONTEXTFACTORY`` of the proof fetch: Twisted's client TLS, the host name checked fail-closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # Scrapy passes its TLS method and options; Twisted's defaults for a verifying client are kept.

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> ProofTLSPolicy:
        return cls()

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        host = hostname.decode("ascii")
        return _StrictHostName(optionsForClientTLS(host), host)


@implementer(IOpenSSLClientConnectionCreator)
class _StrictHostName:
    def __init__(self, inner: Any, host: str) -> None:
        self.inner = inner
        self.host = host

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = self.inner.clientConnectionForTLS(tls_protocol)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verifier(tls_protocol, self.host))
        return connection


def _verifier(tls_protocol: Any, host: str) -> Any:
    def verify(connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int) -> bool:
        if not ok:
            return False  # the chain failed: OpenSSL says why ("certificate verify failed")
        if depth != 0:
            return True  # the host name is the leaf's to carry
        try:
            try:
                ipaddress.ip_address(host)
                wanted: Any = IPAddress_ID(host)
            except ValueError:
                wanted = DNS_ID(host)
            verify_service_identity(extract_patterns(certificate), [wanted], [])
        except Exception as exc:  # noqa: BLE001 - anything but a clean match refuses, and says why
            tls_protocol.failVerification(Failure(HostNameMismatch(f"the certificate is not valid for {host}: {exc}")))
            return False
        return True

    return verify
