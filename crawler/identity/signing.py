"""The Web Bot Auth signing core: RFC 9421 signature bases for one fixed profile, Ed25519.

No Scrapy imports. What is signed, and why (draft-ietf-webbotauth-httpsig-protocol-01):

* covered components ``"@authority"`` (MUST), ``"@method"`` and ``"@path"``
  (SHOULD), and ``"signature-agent";key="sig1"`` when a ``Signature-Agent``
  header is sent (its dictionary member, RFC 9421 section 2.1.2);
* parameters in the order ``created``, ``keyid``, ``alg``, ``expires``,
  ``nonce``, ``tag``: the order the reference implementations write
  (cloudflare/web-bot-auth, http-message-signatures), so the published test
  vectors come out byte for byte;
* ``keyid`` is the key's JWK SHA-256 thumbprint (RFC 7638, RFC 8037 A.3),
  ``alg="ed25519"``, ``tag="web-bot-auth"``, ``expires`` a short time after
  ``created`` (the draft recommends at most 24 h), ``nonce`` 64 random bytes
  in base64 so a site can refuse a replayed request.

The signature base is built here rather than by ``http-message-signatures``:
that library produces the same bytes (tests/test_identity.py checks it on
the test vectors and on generated requests), but it costs about 270 µs per
request (130 µs through ``prepare()``), against about 25 µs here, and the
crawl-speed budget of the whole compliance stack is a few per cent of a
page's 4 ms. The profile is fixed and every value is checked before it goes
into a base (no line breaks, no characters a structured-field string cannot
hold), which is what keeps a hand-built base safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: draft-ietf-webbotauth-httpsig-protocol-01: the tag that marks a Web Bot Auth signature.
TAG = "web-bot-auth"
#: draft-meunier-webbotauth-httpsig-directory-00: the tag of a signed key directory.
DIRECTORY_TAG = "http-message-signatures-directory"
DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"
DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
ALG = "ed25519"
#: The label of the request signature and of the Signature-Agent member it covers.
LABEL = "sig1"
#: The draft recommends ``expires`` at most 24 hours after ``created``.
MAX_LIFETIME = 86_400
_DEFAULT_PORTS = {"http": 80, "https": 443}
# An sf-string may hold printable ASCII; '"' and '\' would need escaping, and
# nothing we sign needs them, so they are refused rather than escaped.
_SF_STRING_SAFE = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")
_COMPONENT_VALUE_SAFE = re.compile(r"[\x20-\x7e]*")
_AUTHORITY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")


class SigningError(ValueError):
    """A value cannot be signed as given (the message says which and why)."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2), as JWKs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(x: str) -> str:
    """RFC 7638 SHA-256 thumbprint of an Ed25519 public JWK (members per RFC 8037 A.3)."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 key pair with its key id. ``repr`` and ``str`` never show the private half."""

    private_key: Ed25519PrivateKey
    #: The public key, base64url (the JWK's ``x``).
    x: str
    #: The JWK SHA-256 thumbprint of the public key: the ``keyid`` every signature names.
    key_id: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        x = b64url(private_key.public_key().public_bytes_raw())
        return cls(private_key, x, jwk_thumbprint(x))

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> SigningKey:
        """A private OKP/Ed25519 JWK (``d`` and ``x``); the two halves must match."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise SigningError(f"kty/crv: expected OKP/Ed25519, got {jwk.get('kty')!r}/{jwk.get('crv')!r}")
        try:
            seed = b64url_decode(str(jwk["d"]))
            key = cls.from_private_key(Ed25519PrivateKey.from_private_bytes(seed))
        except KeyError:
            raise SigningError("d: missing (the private key)") from None
        except (ValueError, TypeError):
            raise SigningError("d: not a base64url Ed25519 private key (32 bytes)") from None
        if "x" in jwk and jwk["x"] != key.x:
            raise SigningError("x: does not match the private key d")
        return key

    def public_jwk(self) -> dict[str, str]:
        """The public JWK as the key directory lists it (``kid`` is the thumbprint)."""
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.key_id}

    def private_jwk(self) -> dict[str, str]:
        """For the key file only: the only place the private half is ever written."""
        from cryptography.hazmat.primitives import serialization

        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "d": b64url(raw)}

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    __str__ = __repr__


def authority(scheme: str, netloc_host: str | None, port: int | None) -> str:
    """``@authority`` (RFC 9421 section 2.2.3): lower-case host, the port only when not the scheme's default."""
    host = (netloc_host or "").lower()
    if not host:
        raise SigningError("the URL has no host")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme.lower()):
        return host
    return f"{host}:{port}"


def check_signature_agent(url: str) -> str:
    """COMPLIANCE_SIGNATURE_AGENT: an https URL that fits in a structured-field string."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise SigningError(f"{url!r} is not an https URL (draft-ietf-webbotauth-httpsig-protocol-01: an https URI)")
    if not _SF_STRING_SAFE.fullmatch(url):
        raise SigningError(f"{url!r} contains characters a header string cannot carry (quotes, backslashes, non-ASCII)")
    return url


def signature_params(
    components: Sequence[str], *, created: int, key_id: str, expires: int, nonce: str | None, tag: str
) -> str:
    """The ``@signature-params`` value (RFC 9421 section 2.3): the inner list and its parameters."""
    params = f';created={created};keyid="{key_id}";alg="{ALG}";expires={expires}'
    if nonce is not None:
        params += f';nonce="{nonce}"'
    return "(" + " ".join(components) + ")" + params + f';tag="{tag}"'


def signature_base(lines: Iterable[tuple[str, str]], params: str) -> bytes:
    """RFC 9421 section 2.5: one ``component-id: value`` line each, then ``"@signature-params"``."""
    out = []
    for component, value in lines:
        if not _COMPONENT_VALUE_SAFE.fullmatch(value):
            raise SigningError(f"{component}: {value!r} holds characters that cannot be signed")
        out.append(f"{component}: {value}\n")
    out.append(f'"@signature-params": {params}')
    return "".join(out).encode("ascii")


def new_nonce() -> str:
    """64 random bytes, base64 (the length the reference implementation uses)."""
    return base64.b64encode(os.urandom(64)).decode("ascii")


#: The derived components every request signature covers: @authority (MUST), @method and @path (SHOULD).
COMPONENTS = ("@authority", "@method", "@path")


@dataclass
class RequestSigner:
    """Signs requests with one key: ``headers(method, url)`` gives the headers to set.

    ``lifetime`` is ``expires - created`` in seconds (the settings keep it
    within the draft's 24 hours). ``agent`` is the Signature-Agent URL (sent
    as the member ``agent_key`` and covered) or None. ``components``,
    ``label``, ``clock`` and ``nonces`` are replaceable so the published test
    vectors can be reproduced.
    """

    key: SigningKey
    lifetime: int = 300
    agent: str | None = None
    components: tuple[str, ...] = COMPONENTS
    label: str = LABEL
    agent_key: str = LABEL
    clock: Callable[[], float] = time.time
    nonces: Callable[[], str | None] = new_nonce
    _agent_header: str | None = field(init=False, default=None)
    _covered: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.lifetime < 1:
            raise SigningError(f"lifetime: {self.lifetime} s must be at least 1")
        unknown = set(self.components) - set(COMPONENTS)
        if "@authority" not in self.components or unknown:
            raise SigningError(f"components: must include @authority and only {COMPONENTS}, got {self.components}")
        covered = [f'"{name}"' for name in self.components]
        if self.agent is not None:
            check_signature_agent(self.agent)
            self._agent_header = f'{self.agent_key}="{self.agent}"'
            covered.append(f'"signature-agent";key="{self.agent_key}"')
        self._covered = tuple(covered)

    @property
    def agent_header(self) -> str | None:
        """The ``Signature-Agent`` value to send (a dictionary with one member), or None."""
        return self._agent_header

    def base(self, method: str, url: str, created: int, nonce: str | None) -> tuple[bytes, str]:
        """The signature base of one request and its ``@signature-params`` value."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise SigningError(f"{url!r}: invalid port") from None
        values = {
            "@authority": authority(parts.scheme, parts.hostname, port),
            "@method": method.upper(),
            "@path": parts.path or "/",
        }
        lines = [(f'"{name}"', values[name]) for name in self.components]
        if self.agent is not None:
            lines.append((f'"signature-agent";key="{self.agent_key}"', f'"{self.agent}"'))
        params = signature_params(
            self._covered, created=created, key_id=self.key.key_id, expires=created + self.lifetime, nonce=nonce, tag=TAG
        )
        return signature_base(lines, params), params

    def headers(self, method: str, url: str) -> dict[str, str]:
        """``Signature-Input``, ``Signature`` (and ``Signature-Agent``) for one request."""
        base, params = self.base(method, url, int(self.clock()), self.nonces())
        signature = base64.b64encode(self.key.sign(base)).decode("ascii")
        headers = {"Signature-Input": f"{self.label}={params}", "Signature": f"{self.label}=:{signature}:"}
        if self._agent_header is not None:
            headers["Signature-Agent"] = self._agent_header
        return headers


# -- the key directory ------------------------------------------------------------------------


def directory_body(keys: Iterable[SigningKey]) -> bytes:
    """The JWKS the directory serves: one public JWK per published key."""
    return json.dumps({"keys": [key.public_jwk() for key in keys]}, separators=(",", ":")).encode("ascii")


def content_digest(body: bytes) -> str:
    """RFC 9530 ``Content-Digest`` with sha-256."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def signed_directory(
    keys: Sequence[SigningKey], host: str, *, created: int, lifetime: int, nonces: Callable[[], str | None] = new_nonce
) -> tuple[dict[str, str], bytes]:
    """The directory response: headers and body, signed by every key it lists.

    draft-meunier-webbotauth-httpsig-directory-00: each key in the directory
    signs the response (labels ``binding0``, ``binding1``, ...), which proves
    the publisher holds each private key; the signature covers
    ``"@authority";req`` (the host the directory is fetched from, so it cannot
    be replayed from another host) and ``content-digest`` (the body), with
    ``tag="http-message-signatures-directory"``.
    """
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise SigningError(f"lifetime: {lifetime} s is outside 1..{MAX_LIFETIME}")
    body = directory_body(keys)
    digest = content_digest(body)
    target = host.lower()
    if not _AUTHORITY.fullmatch(target):
        raise SigningError(f"{host!r} is not a host name (with an optional :port) to bind the directory to")
    inputs, signatures = [], []
    for index, key in enumerate(keys):
        label = f"binding{index}"
        params = signature_params(
            ['"@authority";req', '"content-digest"'], created=created, key_id=key.key_id,
            expires=created + lifetime, nonce=nonces(), tag=DIRECTORY_TAG,
        )  # fmt: skip
        base = signature_base([('"@authority";req', target), ('"content-digest"', digest)], params)
        inputs.append(f"{label}={params}")
        signatures.append(f"{label}=:{base64.b64encode(key.sign(base)).decode('ascii')}:")
    headers = {
        "Content-Type": DIRECTORY_MEDIA_TYPE,
        "Content-Digest": digest,
        "Signature-Input": ", ".join(inputs),
        "Signature": ", ".join(signatures),
    }
    return headers, body
