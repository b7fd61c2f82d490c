"""An independent Web Bot Auth verifier for the test web (not the project's signing code).

It parses the headers with http_sf, rebuilds the RFC 9421 signature base from
the request *as the server received it* (host, port, method, path), and checks
the Ed25519 signature with ``cryptography`` against the keys of the published
key directory, whose own signatures it checks first
(draft-ietf-webbotauth-httpsig-protocol-01, draft-meunier-webbotauth-httpsig-directory-00).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
import urllib.request
from collections.abc import Callable

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crawler.testing.web import WebRequest

DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(jwk: dict) -> str:
    # RFC 7638: the required members in lexicographic order, no whitespace.
    canonical = '{"crv":"%s","kty":"%s","x":"%s"}' % (jwk["crv"], jwk["kty"], jwk["x"])
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _params_text(inner: tuple) -> str:
    return http_sf.ser({"x": inner})[2:]


def _component_line(name: str, params: dict, value: str) -> str:
    return f"{http_sf.ser((name, params))}: {value}"


class Verifier:
    """``verify(request) -> "valid" | "invalid: why"``; keys come from fetched directories."""

    def __init__(self, proxy_url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.proxy_url = proxy_url
        self.clock = clock
        self.directories: dict[str, dict[str, Ed25519PublicKey]] = {}

    # -- the directory --------------------------------------------------------------------------

    def fetch_directory(self, agent_url: str) -> dict[str, Ed25519PublicKey]:
        """The keys of ``agent_url``'s directory, each proven by its binding signature."""
        if agent_url in self.directories:
            return self.directories[agent_url]
        authority = urllib.parse.urlsplit(agent_url).netloc.lower()
        url = f"https://{authority}{DIRECTORY_PATH}"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test web's self-signed certificate
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"https": self.proxy_url}), urllib.request.HTTPSHandler(context=context)
        )
        with opener.open(url, timeout=10) as response:
            if response.status != 200:
                raise ValueError(f"directory answered {response.status}")
            body = response.read()
            headers = response.headers
        if headers["Content-Type"] != "application/http-message-signatures-directory+json":
            raise ValueError(f"directory media type {headers['Content-Type']!r}")
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        if headers["Content-Digest"] != digest:
            raise ValueError("directory body does not match its Content-Digest")
        candidates = {}
        for jwk in json.loads(body)["keys"]:
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                candidates[thumbprint(jwk)] = Ed25519PublicKey.from_public_bytes(_unb64url(jwk["x"]))
        inputs = http_sf.parse(headers["Signature-Input"].encode(), tltype="dictionary")
        signatures = http_sf.parse(headers["Signature"].encode(), tltype="dictionary")
        proven = {}
        for label, inner in inputs.items():
            components, params = inner
            if params.get("tag") != "http-message-signatures-directory" or params.get("keyid") not in candidates:
                continue
            if not params["created"] <= self.clock() + 60 <= params["expires"] + 60:
                continue
            lines = []
            for name, cparams in components:
                if (name, cparams) == ("@authority", {"req": True}):
                    lines.append(_component_line(name, cparams, authority))
                elif (name, cparams) == ("content-digest", {}):
                    lines.append(_component_line(name, cparams, headers["Content-Digest"]))
                else:
                    raise ValueError(f"unexpected directory component {name}")
            lines.append(f'"@signature-params": {_params_text(inner)}')
            try:
                candidates[params["keyid"]].verify(signatures[label][0], "\n".join(lines).encode())
            except InvalidSignature:
                continue
            proven[params["keyid"]] = candidates[params["keyid"]]
        self.directories[agent_url] = proven
        return proven

    # -- one request ----------------------------------------------------------------------------

    def verify(self, req: WebRequest) -> str:
        headers = req.headers
        if "signature-input" not in headers or "signature" not in headers:
            return "invalid: unsigned"
        if "signature-agent" not in headers:
            return "invalid: no Signature-Agent (no directory to look the key up in)"
        inputs = http_sf.parse(headers["signature-input"].encode(), tltype="dictionary")
        signatures = http_sf.parse(headers["signature"].encode(), tltype="dictionary")
        agents = http_sf.parse(headers["signature-agent"].encode(), tltype="dictionary")
        chosen = [label for label, (_, params) in inputs.items() if params.get("tag") == "web-bot-auth"]
        if len(chosen) != 1 or chosen[0] not in signatures:
            return "invalid: not exactly one web-bot-auth signature"
        label = chosen[0]
        inner = inputs[label]
        components, params = inner
        now = self.clock()
        if params.get("alg", "ed25519") != "ed25519":
            return f"invalid: alg {params.get('alg')}"
        if not isinstance(params.get("created"), int) or not isinstance(params.get("expires"), int):
            return "invalid: created and expires are required"
        if params["created"] > now + 5:
            return "invalid: created in the future"
        if params["expires"] < now:
            return "invalid: expired"
        if params["expires"] - params["created"] > 86_400:
            return "invalid: lifetime over 24 hours"
        names = [name for name, _ in components]
        if "@authority" not in names:
            return "invalid: @authority not covered"
        default = 443 if req.scheme == "https" else 80
        authority = req.host if req.port == default else f"{req.host}:{req.port}"
        lines = []
        agent_url = None
        for name, cparams in components:
            if name == "@authority" and not cparams:
                value = authority
            elif name == "@method" and not cparams:
                value = req.method
            elif name == "@path" and not cparams:
                value = req.path or "/"
            elif name == "signature-agent" and set(cparams) == {"key"}:
                member = agents.get(cparams["key"])
                if member is None or member[1]:
                    return "invalid: the covered Signature-Agent member is missing or has parameters"
                agent_url = member[0]
                value = http_sf.ser(member)
            else:
                return f"invalid: unexpected component {name}"
            lines.append(_component_line(name, cparams, value))
        if agent_url is None:
            return "invalid: Signature-Agent not covered"
        lines.append(f'"@signature-params": {_params_text(inner)}')
        keys = self.fetch_directory(agent_url)
        key = keys.get(params.get("keyid"))
        if key is None:
            return "invalid: key id not in the published directory"
        try:
            key.verify(signatures[label][0], "\n".join(lines).encode())
        except InvalidSignature:
            return "invalid: bad signature"
        return "valid"
