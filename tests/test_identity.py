"""Web Bot Auth signing core, key file and the identity command (crawler/identity/)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crawler.identity import keyring
from crawler.identity.signing import (
    DIRECTORY_MEDIA_TYPE,
    RequestSigner,
    SigningError,
    SigningKey,
    b64url_decode,
    content_digest,
    jwk_thumbprint,
    signed_directory,
)

VECTORS = Path(__file__).parent / "data" / "webbotauth" / "web_bot_auth_architecture_v2.json"
ED25519_VECTORS = [v for v in json.loads(VECTORS.read_text()) if v["key"]["kty"] == "OKP"]
# RFC 9421 B.1.4 test-key-ed25519; its RFC 7638 thumbprint as the vectors name it.
RFC9421_X = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"
RFC9421_KEYID = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"


def vector_signer(vector: dict) -> RequestSigner:
    created, expires = vector["created_ms"] // 1000, vector["expires_ms"] // 1000
    agent = vector.get("signature_agent")
    return RequestSigner(
        SigningKey.from_jwk(vector["key"]),
        lifetime=expires - created,
        agent=agent.split("=", 1)[1].strip('"') if agent else None,
        agent_key=vector.get("signature_agent_key", "sig1"),
        components=("@authority",),
        label=vector["label"],
        clock=lambda: created,
        nonces=lambda: vector["nonce"],
    )


def test_thumbprint_of_the_rfc9421_test_key() -> None:
    """The key id is the RFC 7638 JWK SHA-256 thumbprint (RFC 8037 A.3 members), as the vectors name it."""
    assert jwk_thumbprint(RFC9421_X) == RFC9421_KEYID
    assert SigningKey.from_jwk(ED25519_VECTORS[0]["key"]).key_id == RFC9421_KEYID


def test_rfc8037_thumbprint_example() -> None:
    """RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key."""
    assert jwk_thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo") == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("vector", ED25519_VECTORS, ids=[v["label"] for v in ED25519_VECTORS])
def test_reproduces_the_web_bot_auth_vectors_byte_for_byte(vector: dict) -> None:
    """cloudflare/web-bot-auth architecture v2, Ed25519: Signature-Input, Signature and Signature-Agent are identical."""
    headers = vector_signer(vector).headers("GET", vector["target_url"])
    assert headers["Signature-Input"] == f"{vector['label']}={vector['signature_input'].split('=', 1)[1]}"
    assert headers["Signature"] == vector["signature"]
    assert headers.get("Signature-Agent") == vector.get("signature_agent")


def test_vector_signature_base() -> None:
    """The signature base of the vector with a Signature-Agent, line by line (RFC 9421 section 2.5)."""
    vector = ED25519_VECTORS[1]
    base, params = vector_signer(vector).base("GET", vector["target_url"], 1735689600, vector["nonce"])
    assert base.decode() == (
        '"@authority": example.com\n'
        '"signature-agent";key="agent2": "https://signature-agent.test"\n'
        f'"@signature-params": {params}'
    )
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(RFC9421_X))
    public.verify(base64.b64decode(vector["signature"].split(":")[1]), base)


def test_same_bytes_as_http_message_signatures() -> None:
    """The library implementation of RFC 9421 builds the same base and signature for our full profile."""
    from http_message_signatures import HTTPMessageSigner, algorithms
    from http_message_signatures._messages import _Request

    key = SigningKey.generate()

    class Resolver:
        def resolve_private_key(self, key_id: str):  # noqa: ANN202
            return key.private_key

    library = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Resolver())
    ours = RequestSigner(key, lifetime=300, agent="https://bot.example/agent", clock=lambda: 1_800_000_000, nonces=lambda: "n0nce")
    for url in ["https://Shop.Test/a/b?q=1", "http://shop.test:8080/", "http://shop.test", "https://x.test:443/%7Euser/"]:
        for method in ["GET", "HEAD"]:
            message = _Request(method, url, {"Signature-Agent": ours.agent_header})
            when = datetime.datetime.fromtimestamp(1_800_000_000, datetime.UTC)
            library.sign(
                message, key_id=key.key_id, created=when, expires=when + datetime.timedelta(seconds=300),
                nonce="n0nce", label="sig1", tag="web-bot-auth",
                covered_component_ids=["@authority", "@method", "@path", '"signature-agent";key="sig1"'],
            )  # fmt: skip
            headers = ours.headers(method, url)
            assert headers["Signature-Input"] == message.headers["Signature-Input"], url
            assert headers["Signature"] == message.headers["Signature"], url


def test_request_signature_covers_authority_method_path_and_agent() -> None:
    """Our profile: the draft's components and parameters, created/expires one lifetime apart."""
    key = SigningKey.generate()
    signer = RequestSigner(key, lifetime=300, agent="https://bot.example/", clock=lambda: 1000)
    headers = signer.headers("get", "https://shop.test/page?x=1")
    assert headers["Signature-Agent"] == 'sig1="https://bot.example/"'
    sig_input = headers["Signature-Input"]
    assert sig_input.startswith('sig1=("@authority" "@method" "@path" "signature-agent";key="sig1");created=1000;')
    assert f'keyid="{key.key_id}";alg="ed25519";expires=1300;nonce="' in sig_input
    assert sig_input.endswith(';tag="web-bot-auth"')
    # Every request gets a fresh nonce (replay detection).
    assert signer.headers("GET", "https://shop.test/").get("Signature-Input") != signer.headers("GET", "https://shop.test/").get("Signature-Input")


@pytest.mark.parametrize("agent", ["http://bot.example/", "https://bot.example/\"x", "bot.example", "https://"])
def test_signature_agent_must_be_a_plain_https_url(agent: str) -> None:
    """A Signature-Agent that is not an https URI, or cannot be a header string, is refused."""
    with pytest.raises(SigningError):
        RequestSigner(SigningKey.generate(), agent=agent)


def test_private_key_never_printed() -> None:
    """repr/str of a key show the key id only."""
    key = SigningKey.generate()
    d = key.private_jwk()["d"]
    assert d not in repr(key) and d not in str(key) and key.key_id in repr(key)
    assert "d" not in key.public_jwk()


def test_signed_directory_verifies_for_its_host_only() -> None:
    """Each listed key signs the directory over "@authority";req and content-digest."""
    keys = [SigningKey.generate(), SigningKey.generate()]
    headers, body = signed_directory(keys, "Bot.Example", created=2000, lifetime=600, nonces=lambda: None)
    assert headers["Content-Type"] == DIRECTORY_MEDIA_TYPE
    assert headers["Content-Digest"] == content_digest(body)
    assert [k["kid"] for k in json.loads(body)["keys"]] == [k.key_id for k in keys]
    inputs = headers["Signature-Input"].split(", ")
    signatures = headers["Signature"].split(", ")
    for index, key in enumerate(keys):
        label, params = inputs[index].split("=", 1)
        assert label == f"binding{index}"
        assert params == (f'("@authority";req "content-digest");created=2000;keyid="{key.key_id}";alg="ed25519";'
                          'expires=2600;tag="http-message-signatures-directory"')
        signature = base64.b64decode(signatures[index].split(":")[1])
        base = f'"@authority";req: bot.example\n"content-digest": {content_digest(body)}\n"@signature-params": {params}'
        key.private_key.public_key().verify(signature, base.encode())
        with pytest.raises(Exception):  # noqa: B017,PT011 - InvalidSignature
            key.private_key.public_key().verify(signature, base.replace("bot.example", "evil.example").encode())


# -- the key file -------------------------------------------------------------------------------------------


def test_key_file_is_created_0600_once(tmp_path: Path) -> None:
    """The first use creates the file readable by its owner only; later uses load the same key."""
    path = tmp_path / "var" / "signing-key.json"
    ring, created = keyring.load_or_create(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = keyring.load_or_create(path)
    assert not created_again and again.current.key_id == ring.current.key_id
    # A racing creator (another worker) gets the existing key, not a new one.
    raced, created_raced = keyring.create(path)
    assert not created_raced and raced.current.key_id == ring.current.key_id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file with group/other permissions is refused, with the fix."""
    path = tmp_path / "signing-key.json"
    keyring.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(keyring.KeyFileError, match="chmod 600"):
        keyring.load(path)


def test_key_file_errors_name_the_field(tmp_path: Path) -> None:
    """A tampered key file names the key and the field."""
    path = tmp_path / "signing-key.json"
    keyring.create(path)
    data = json.loads(path.read_text())
    data["keys"][0]["x"] = SigningKey.generate().x
    path.write_text(json.dumps(data))
    with pytest.raises(keyring.KeyFileError, match=r"keys\[0\]\.x: does not match"):
        keyring.load(path)


def test_rotation_keeps_the_old_key_published_for_the_overlap(tmp_path: Path) -> None:
    """rotate: a new current key; the old one is listed until its overlap ends, then dropped."""
    path = tmp_path / "signing-key.json"
    ring, _ = keyring.create(path)
    old = ring.current.key_id
    rotated = ring.rotate(overlap=100, now=1_000)
    assert rotated.current.key_id != old
    assert [k.key_id for k in keyring.load(path).published(now=1_050)] == [rotated.current.key_id, old]
    assert [k.key_id for k in rotated.published(now=1_100)] == [rotated.current.key_id]
    again = keyring.load(path).rotate(overlap=10, now=1_200)
    assert old not in [k.key.key_id for k in again.keys]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- the command ------------------------------------------------------------------------------------------


def test_identity_command(tmp_path: Path) -> None:
    """init, show, rotate, directory through the real CLI; problems are one error line, never a traceback."""
    from crawler.testing.runner import scrapy_command

    key = tmp_path / "k" / "signing-key.json"
    settings = {"COMPLIANCE_SIGNING_KEY": str(key)}
    missing = scrapy_command(["identity", "show"], settings=settings)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: {key}: no signing key file (create one with `scrapy identity init`)"
    init = scrapy_command(["identity", "init"], settings=settings)
    first = init.stdout.split("key id: ")[1].strip()
    assert init.returncode == 0 and stat.S_IMODE(key.stat().st_mode) == 0o600
    shown = json.loads(scrapy_command(["identity", "show", "--json"], settings=settings).stdout)
    assert [k["key_id"] for k in shown["keys"]] == [first] and "d" not in shown["keys"][0]["jwk"]
    rotated = scrapy_command(["identity", "rotate", "--overlap", "3600"], settings=settings)
    second = rotated.stdout.split("new current key id: ")[1].split()[0]
    assert rotated.returncode == 0 and f"previous key {first} stays published until" in rotated.stdout
    body = json.loads(scrapy_command(["identity", "directory", "--body-only"], settings=settings).stdout)
    assert [k["kid"] for k in body["keys"]] == [second, first]
    unbound = scrapy_command(["identity", "directory"], settings=settings)
    assert unbound.returncode == 1 and "--authority" in unbound.stderr and "Traceback" not in unbound.stderr
    signed = scrapy_command(["identity", "directory", "--authority", "bot.test"], settings=settings)
    assert signed.returncode == 0
    assert signed.stdout.startswith("Content-Type: application/http-message-signatures-directory+json\n")
    assert "binding0=" in signed.stdout and "binding1=" in signed.stdout
    private = [k["d"] for k in json.loads(key.read_text())["keys"]]
    for done in (init, rotated, signed):
        assert not any(d in done.stdout + done.stderr for d in private)
    os.chmod(key, 0o640)
    loose = scrapy_command(["identity", "show"], settings=settings)
    assert loose.returncode == 1 and "chmod 600" in loose.stderr
    bad_agent = scrapy_command(["identity", "show"], settings={**settings, "COMPLIANCE_SIGNATURE_AGENT": "http://bot.test"})
    assert bad_agent.returncode == 1 and bad_agent.stderr.startswith("error: COMPLIANCE_SIGNATURE_AGENT:")
