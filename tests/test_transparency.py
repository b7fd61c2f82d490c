"""The transparency log: RFC 9162 proofs against published vectors, signed heads, receipts, and tampering caught from outside."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import crawler
from crawler.compliance.ledger import GENESIS, Entry, entry_hash
from crawler.compliance.store import Store, StoreError, ledger, ledger_heads, ledger_nodes, store_meta
from crawler.identity.signing import SigningKey, directory_body
from crawler.testing.runner import scrapy_command
from crawler.testing.web import StaticSite, TestWeb, WebResponse
from crawler.transparency.heads import sign_head
from crawler.transparency.tree import MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root
from crawler.verify_receipt import ProofError, canonical_json, verify_consistency, verify_inclusion

VECTORS = json.loads((Path(__file__).parent / "data" / "transparency-dev-merkle" / "vectors.json").read_text())
VERIFIER = Path(crawler.__file__).parent / "verify_receipt.py"


def _b64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


# -- the math, against transparency-dev/merkle's published vectors --------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS["inclusion"]))
def test_inclusion_vectors(name: str) -> None:
    """Every inclusion vector of transparency-dev/merkle: accepted exactly when it should be."""
    case = VECTORS["inclusion"][name]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), [_b64(p) for p in case["proof"] or []], _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("name", sorted(VECTORS["consistency"]))
def test_consistency_vectors(name: str) -> None:
    """Every consistency vector of transparency-dev/merkle: accepted exactly when it should be."""
    case = VECTORS["consistency"][name]
    args = (case["size1"], case["size2"], [_b64(p) for p in case["proof"] or []], _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def _reference_tree() -> MemoryTree:
    tree = MemoryTree()
    for leaf in VECTORS["leaf_inputs_hex"]:
        tree.append(leaf_hash(bytes.fromhex(leaf)))
    return tree


def test_roots_and_happy_path_proofs_are_built_exactly_as_published() -> None:
    """The roots of sizes 0..8 of the RFC 6962 test tree, and every happy-path proof, come out byte for byte."""
    tree = _reference_tree()
    assert [root(n, tree.fetch).hex() for n in range(9)] == VECTORS["root_hashes_hex"]
    happy = {k: v for kind in ("inclusion", "consistency") for k, v in VECTORS[kind].items() if k.endswith("/happy-path.json")}
    assert len(happy) >= 9
    for name, case in happy.items():
        if "leafIdx" in case:
            built = inclusion_proof(case["leafIdx"], case["treeSize"], tree.fetch)
        else:
            built = consistency_proof(case["size1"], case["size2"], tree.fetch)
        assert built == [_b64(p) for p in case["proof"] or []], name


def test_every_proof_of_small_trees_verifies_and_no_other_root_passes() -> None:
    """All inclusion and consistency proofs of trees up to 40 leaves verify; a changed leaf never does."""
    trees = [MemoryTree()]
    for n in range(1, 41):
        tree = MemoryTree()
        for i in range(n):
            tree.append(leaf_hash(str(i).encode()))
        trees.append(tree)
    for n in range(1, 41):
        tree, top = trees[n], root(n, trees[n].fetch)
        for m in range(n):
            proof = inclusion_proof(m, n, tree.fetch)
            verify_inclusion(m, n, leaf_hash(str(m).encode()), proof, top)
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaf_hash(b"forged"), proof, top)
        for old in range(1, n + 1):
            verify_consistency(old, n, consistency_proof(old, n, tree.fetch), root(old, trees[old].fetch), top)


# -- the store: nodes, heads, migration, both engines ---------------------------------------------


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def _tree_of(store: Store) -> MemoryTree:
    tree = MemoryTree()
    for entry in store.ledger_entries():
        tree.append(entry.leaf_hash())
    return tree


def test_store_proofs_match_a_tree_built_from_the_entries(any_store_url: str, key: SigningKey) -> None:
    """Appends one by one and in batches: stored nodes give the same roots and proofs as the entries, one signed head per batch."""
    store = Store(any_store_url, head_key=key)
    for n in range(5):
        store.append_ledger("consent.changed", {"n": n})
    store.append_ledger_batch([("consent.changed", {"n": n}) for n in range(5, 21)])
    store.append_ledger("purge.completed", {"purge_id": "p", "total_deleted": 0})
    tree = _tree_of(store)
    assert store.ledger_tree_size() == tree.size == 22
    assert [h["tree_size"] for h in store.tree_heads()] == [1, 2, 3, 4, 5, 21, 22]
    for head in store.tree_heads():
        assert head["root_hash"] == root(head["tree_size"], tree.fetch).hex() and head["key_id"] == key.key_id
    for seq in (1, 7, 22):
        assert store.inclusion_proof(seq, 22) == inclusion_proof(seq - 1, 22, tree.fetch)
    assert store.consistency_proof(5, 21) == consistency_proof(5, 21, tree.fetch)
    with store.engine.connect() as conn:  # about two nodes per entry: 22 leaves + 19 interior
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger_nodes)).scalar() == 41
    store.dispose()


def test_an_existing_ledger_migrates_in_place_and_its_chain_stays_checkable(any_store_url: str, key: SigningKey, tmp_path: Path) -> None:
    """A schema-3 ledger (a chain, no tree) reopened: its entries are the first leaves, in order; the chain still verifies."""
    from crawler.compliance.ledger import verify

    store = Store(any_store_url)
    for n in range(9):
        store.append_ledger("consent.changed", {"n": n})
    before = [e.hash for e in store.ledger_entries()]
    with store.engine.begin() as conn:  # back to schema 3, as a store written before this change
        ledger_nodes.drop(conn)
        ledger_heads.drop(conn)
        conn.execute(store_meta.update().where(store_meta.c.key == "schema_version").values(value="3"))
    store.dispose()
    store = Store(any_store_url, head_key=key)
    assert [e.hash for e in store.ledger_entries()] == before
    assert verify(store.ledger_entries(), store.ledger_head()).ok
    tree = _tree_of(store)
    assert store.ledger_tree_size() == 9 and store.tree_root(9) == root(9, tree.fetch)
    assert list(store.tree_heads()) == []  # nothing signed by the migration
    entry = store.append_ledger("consent.changed", {"n": 9})
    assert entry.seq == 10 and entry.prev_hash == before[-1]
    head = store.latest_tree_head()
    assert head is not None and head["tree_size"] == 10
    store.dispose()
    code, out = _verify_cmd(any_store_url, key, tmp_path)
    assert code == 0 and "ledger intact: 10 entries" in out and "tree intact: 10 leaves" in out and "1 signed head(s)" in out, out


def _key_file(key: SigningKey, tmp_path: Path) -> Path:
    path = tmp_path / "signing-key.json"
    if not path.exists():
        record = {**key.private_jwk(), "kid": key.key_id, "created": 1, "retired": None, "publish_until": None}
        path.write_text(json.dumps({"format": "ethical-crawler-signing-keys/1", "keys": [record]}))
        path.chmod(0o600)
    return path


def _verify_cmd(url: str, key: SigningKey, tmp_path: Path) -> tuple[int, str]:
    done = scrapy_command(["ledger", "verify", "-s", f"COMPLIANCE_STORE={url}", "-s", f"COMPLIANCE_SIGNING_KEY={_key_file(key, tmp_path)}"])
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("UPDATE ledger_nodes SET hash = ledger_nodes.hash WHERE level = 9", None),  # no change: the control
        ("DELETE FROM ledger_nodes WHERE level = 1 AND idx = 1", "tree node (level 1, index 1) over entries 3..4 is missing"),
        ("UPDATE ledger_heads SET root_hash = '" + "ab" * 32 + "' WHERE tree_size = 3", "signed head of size 3 has root abababab"),
        ("UPDATE ledger_heads SET timestamp = timestamp + 1 WHERE tree_size = 4", "the signature does not match the head (size 4"),
        ("DELETE FROM ledger WHERE seq = 6; UPDATE store_meta SET value = (SELECT '5:' || hash FROM ledger WHERE seq = 5) "
         "WHERE key = 'ledger_head'", "tree holds 6 leaves for 5 entries"),
        ("DELETE FROM ledger WHERE seq = 6; UPDATE store_meta SET value = (SELECT '5:' || hash FROM ledger WHERE seq = 5) "
         "WHERE key = 'ledger_head'; DELETE FROM ledger_nodes WHERE (level = 0 AND idx = 5) OR (level = 1 AND idx = 2)",
         "signed head of size 6 is beyond the tree (5 leaves)"),
    ],
    ids=["intact", "node-deleted", "head-root-changed", "head-re-timed", "entry-cut", "entry-and-leaf-cut"],
)  # fmt: skip
def test_ledger_verify_checks_the_tree_and_every_signed_head(
    any_store_url: str, key: SigningKey, tmp_path: Path, damage: str, words: str | None
) -> None:
    """`scrapy ledger verify` rebuilds the tree from the entries and checks each stored head's root and signature."""
    store = Store(any_store_url, head_key=key)
    for n in range(6):
        store.append_ledger("consent.changed", {"n": n})
    with store.engine.begin() as conn:
        for statement in damage.split(";"):
            conn.exec_driver_sql(statement)
    store.dispose()
    code, out = _verify_cmd(any_store_url, key, tmp_path)
    if words is None:
        assert code == 0 and "heads intact: 6 signed head(s)" in out, out
    else:
        assert code == 1 and words in out, out


# -- the standalone verifier, run as a site owner would --------------------------------------------


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    """verify_receipt.py copied into a folder with only `cryptography` (and its cffi) beside it, run without site-packages.

    ``-S -E -s``: no site-packages (where the crawler is installed), no
    PYTHON* variables, no user site; the script's own folder is the only
    place beyond the standard library that imports come from.
    """
    folder = tmp_path_factory.mktemp("owner")
    shutil.copy(VERIFIER, folder / "verify_receipt.py")
    site = Path(sysconfig.get_paths()["purelib"])
    for name in ("cryptography", "cffi", "pycparser", *(p.name for p in site.glob("_cffi_backend*"))):
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    (folder / "probe.py").write_text(
        "import importlib.util as u, sys\nprint([m for m in ('crawler', 'scrapy', 'sqlalchemy', 'cryptography') if u.find_spec(m)])\n"
    )

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-S", "-E", "-s", str(folder / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=60, env=env, cwd=folder, check=False)  # fmt: skip

    probe = run("probe.py")
    assert probe.stdout.strip() == "['cryptography']", probe  # the crawler, Scrapy and SQLAlchemy are out of reach
    return run


def _write(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value, indent=2))
    return str(path)


def test_standalone_verifier_accepts_a_good_receipt_and_names_each_bad_part(
    any_store_url: str, key: SigningKey, tmp_path: Path, standalone: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """One line per check, exit 0 when all pass; a forged entry, proof, head, key or signature each fail their own check."""
    store = Store(any_store_url, head_key=key)
    for n in range(11):
        store.append_ledger("purge.completed", {"purge_id": f"p{n}", "total_deleted": n})
    receipt = store.ledger_receipt(4)
    keys = _write(tmp_path / "directory.json", json.loads(directory_body([key])))
    good = standalone("verify_receipt.py", _write(tmp_path / "r.json", receipt), "--key-directory", keys)
    assert good.returncode == 0, good.stdout + good.stderr
    assert [line.split()[0] for line in good.stdout.splitlines()] == ["ok", "ok", "all"], good.stdout
    other = SigningKey.generate()
    forged_head = sign_head(other, 11, bytes.fromhex(receipt["tree_head"]["root_hash"]))
    cases = {
        "entry": ({**receipt, "entry": {**receipt["entry"], "payload": {"purge_id": "p3", "total_deleted": 0}}}, "inclusion: "),
        "proof": ({**receipt, "inclusion_proof": receipt["inclusion_proof"][:-1]}, "inclusion: "),
        "head-size": ({**receipt, "tree_head": {**receipt["tree_head"], "tree_size": 12}}, "head signature: "),
        "other-key": ({**receipt, "tree_head": forged_head}, "which the key directory or key file does not hold"),
    }
    for name, (changed, words) in cases.items():
        bad = standalone("verify_receipt.py", _write(tmp_path / f"{name}.json", changed), "--key-directory", keys)
        assert bad.returncode == 1 and "FAIL" in bad.stdout and words in bad.stdout, (name, bad.stdout)
    unreadable = standalone("verify_receipt.py", str(tmp_path / "missing.json"), "--key-directory", keys)
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr and "Traceback" not in unreadable.stderr
    store.dispose()


def _rewrite(store: Store, key: SigningKey | None,
             change: Callable[[list[tuple[str, str, Any]]], list[tuple[str, str, Any]]]) -> None:  # fmt: skip
    """An attacker with the database AND the signing key: rewrite history, recompute every hash, node and head.

    With ``key=None``, an attacker with the database only: every hash and node is recomputed, the signed heads stay.
    """
    with store.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger).order_by(ledger.c.seq)).all()
        records = change([(r.at, r.kind, json.loads(r.payload)) for r in rows])
        for table in (ledger, ledger_nodes, *([ledger_heads] if key is not None else [])):
            conn.execute(table.delete())
        tree, prev = MemoryTree(), GENESIS
        for seq, (at, kind, payload) in enumerate(records, 1):
            digest = entry_hash(seq, at, kind, payload, prev)
            entry = Entry(seq, at, kind, canonical_json(payload), prev, digest)
            conn.execute(ledger.insert().values(seq=seq, at=at, kind=kind, payload=entry.payload, prev_hash=prev, hash=digest))
            tree.append(entry.leaf_hash())
            if key is not None:
                conn.execute(ledger_heads.insert().values(**sign_head(key, seq, root(seq, tree.fetch))))
            prev = digest
        conn.execute(ledger_nodes.insert(), [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in tree.nodes.items()])
        conn.execute(store_meta.update().where(store_meta.c.key == "ledger_head").values(value=f"{len(records)}:{prev}"))


def _altered(records: list[Any]) -> list[Any]:
    at, kind, payload = records[2]
    return [*records[:2], (at, kind, {**payload, "total_deleted": 0}), *records[3:]]


def _forked(records: list[Any]) -> list[Any]:
    return [*records[:4], *((at, kind, {"purge_id": "other", "total_deleted": 1}) for at, kind, _ in records[4:])]


ATTACKS: dict[str, Callable[[list[Any]], list[Any]] | None] = {
    "none": None,  # the control: an honest log that only grew
    "altered": _altered,
    "deleted": lambda records: records[:1] + records[2:],
    "reordered": lambda records: [records[0], records[2], records[1], *records[3:]],
    "forked": _forked,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_holder_of_an_earlier_head_detects_rewritten_history(
    any_store_url: str, key: SigningKey, tmp_path: Path, attack: str,
    standalone: Callable[..., subprocess.CompletedProcess[str]],
) -> None:  # fmt: skip
    """History rewritten by someone holding the database and the key, then grown: the standalone verifier, given the
    holder's receipt, a newer head and a consistency proof, fails the append-only check (and passes when nothing was rewritten)."""
    store = Store(any_store_url, head_key=key)
    for n in range(6):
        store.append_ledger("purge.completed", {"purge_id": f"p{n}", "total_deleted": n + 1})
    receipt = _write(tmp_path / "receipt.json", store.ledger_receipt(3))  # what the site owner keeps (head of size 6)
    change = ATTACKS[attack]
    if change is not None:
        _rewrite(store, key, change)
    for n in range(3):
        store.append_ledger("consent.changed", {"n": n})  # the log goes on, through the store's own path
    newer = store.sign_tree_head()
    assert newer["tree_size"] >= 6
    proof = {"old_size": 6, "new_size": newer["tree_size"], "proof": [h.hex() for h in store.consistency_proof(6, newer["tree_size"])]}
    keys = _write(tmp_path / "key.json", key.public_jwk())
    done = standalone("verify_receipt.py", receipt, "--key", keys, "--newer-head", _write(tmp_path / "head.json", newer),
                      "--consistency", _write(tmp_path / "proof.json", proof))  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok ") and lines[1].startswith("ok ") and lines[2].startswith("ok "), done.stdout  # receipt and newer head
    if change is None:
        assert done.returncode == 0 and lines[3].startswith("ok    consistency:"), done.stdout
    else:
        assert done.returncode == 1 and lines[3].startswith("FAIL  consistency:"), done.stdout
    store.dispose()


def test_the_crawler_never_signs_over_a_history_rewritten_behind_its_back(any_store_url: str, key: SigningKey) -> None:
    """Database access without the key: entries, chain and nodes recomputed, heads left. The next append and the next
    head are refused, so the crawler's key never signs the forged tree."""
    store = Store(any_store_url, head_key=key)
    for n in range(6):
        store.append_ledger("purge.completed", {"purge_id": f"p{n}", "total_deleted": n + 1})
    signed = store.latest_tree_head()
    _rewrite(store, None, _altered)
    with pytest.raises(StoreError, match="history was rewritten"):
        store.append_ledger("consent.changed", {"n": 1})
    with pytest.raises(StoreError, match="history was rewritten"):
        store.sign_tree_head()
    assert store.latest_tree_head() == signed and store.ledger_tree_size() == 6
    store.dispose()


def test_a_shrunk_log_is_detected(any_store_url: str, key: SigningKey, tmp_path: Path,
                                  standalone: Callable[..., subprocess.CompletedProcess[str]]) -> None:  # fmt: skip
    """Entries cut from the end and every head re-signed: a newer head smaller than the one held fails the check."""
    store = Store(any_store_url, head_key=key)
    for n in range(6):
        store.append_ledger("purge.completed", {"purge_id": f"p{n}"})
    receipt = _write(tmp_path / "receipt.json", store.ledger_receipt(2))
    _rewrite(store, key, lambda records: records[:4])
    newer = store.sign_tree_head()
    done = standalone("verify_receipt.py", receipt, "--key", _write(tmp_path / "k.json", key.public_jwk()),
                      "--newer-head", _write(tmp_path / "h.json", newer),
                      "--consistency", _write(tmp_path / "p.json", {"old_size": 6, "new_size": 4, "proof": []}))  # fmt: skip
    assert done.returncode == 1 and "the log shrank" in done.stdout, done.stdout
    store.dispose()


# -- the commands: receipts from notice add, head, prove, consistency; a key directory by URL ------


def test_notice_add_receipt_checks_out_with_the_published_directory(
    any_store_url: str, tmp_path: Path, standalone: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """The saved output of `notice add` is a receipt the verifier checks against the directory fetched by URL, then against
    a later head and `ledger consistency`; the key server saw exactly one request for the directory per run."""
    from crawler.testing.runner import policy_dir_with_pace

    key_path = tmp_path / "var" / "signing-key.json"
    common = ["-s", f"COMPLIANCE_STORE={any_store_url}", "-s", f"COMPLIANCE_SIGNING_KEY={key_path}",
              "-s", f"COMPLIANCE_POLICY_DIR={policy_dir_with_pace(tmp_path / 'policies')}"]  # fmt: skip
    added = scrapy_command(["notice", "add", "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
                            "--id", "n1", *common])  # fmt: skip
    assert added.returncode == 0, added.stderr
    output = json.loads(added.stdout)
    assert output["ledger_receipt"]["tree_head"] == output["purge"]["ledger_receipt"]["tree_head"]
    saved = _write(tmp_path / "notice-add.json", output)
    body = scrapy_command(["identity", "directory", "--body-only", *common])
    assert body.returncode == 0, body.stderr
    directory = WebResponse(body=body.stdout.strip(), headers=[("Content-Type", "application/http-message-signatures-directory+json")])
    with TestWeb({"crawler.test": StaticSite({"/.well-known/http-message-signatures-directory": directory})}) as web:
        url = "http://crawler.test/.well-known/http-message-signatures-directory"
        first = standalone("verify_receipt.py", saved, "--key-directory", url, env=web.env())
        assert first.returncode == 0 and first.stdout.count("ok ") == 4, first.stdout + first.stderr
        for seq_args in (["ledger", "purge", "--domain", "other.test", "--reason", "asked"],):
            assert scrapy_command(["purge", *seq_args[2:], *common]).returncode == 0
        head = scrapy_command(["ledger", "head", *common])
        old = output["ledger_receipt"]["tree_head"]["tree_size"]
        consistency = scrapy_command(["ledger", "consistency", str(old), *common])
        assert head.returncode == 0 and consistency.returncode == 0, head.stderr + consistency.stderr
        assert json.loads(head.stdout)["tree_size"] > old
        later = standalone("verify_receipt.py", saved, "--key-directory", url,
                           "--newer-head", _write(tmp_path / "head.json", json.loads(head.stdout)),
                           "--consistency", _write(tmp_path / "proof.json", json.loads(consistency.stdout)), env=web.env())  # fmt: skip
        assert later.returncode == 0 and "ok    consistency:" in later.stdout, later.stdout + later.stderr
        assert [e.path for e in web.requests(host="crawler.test")] == ["/.well-known/http-message-signatures-directory"] * 2
    prove = scrapy_command(["ledger", "prove", "1", *common])
    assert prove.returncode == 0 and json.loads(prove.stdout)["entry"]["kind"] == "notice.added", prove.stderr
    heads = scrapy_command(["ledger", "heads", *common])
    assert heads.returncode == 0 and len(heads.stdout.splitlines()) >= 3, heads.stdout
    wrong = scrapy_command(["ledger", "prove", "99", *common])
    assert wrong.returncode == 1 and "SEQ 99" in wrong.stderr and "Traceback" not in wrong.stderr
