"""Hostile files: YAML nested without end, FIFOs, devices and links to them, in every place the project reads YAML."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from crawler.compliance.files import NotAFile, read_regular_file
from crawler.compliance.notices import load_notice_files
from crawler.compliance.policy import load_policies
from crawler.compliance.yamlfile import MAX_NESTING, YamlSyntaxError, load_yaml
from crawler.testing.runner import policy_dir_with_pace, run_site_crawl, scrapy_command
from crawler.testing.sites import TEST_CONTACT

from conftest import GUARD_ENV

#: The file from the report: 330 levels of nested lists, 665 bytes.
DEEP = "id: " + "[" * 330 + "]" * 330 + "\n"


def nested(depth: int) -> str:
    """``depth`` levels of lists and mappings, in block style (the other way to nest)."""
    return "".join("  " * level + f"k{level}:\n" for level in range(depth - 1)) + "  " * (depth - 1) + "- leaf\n"


def test_the_reported_file_is_what_it_says() -> None:
    """The fixture is the report's file: 665 bytes, 330 levels."""
    assert len(DEEP.encode()) == 665 and DEEP.count("[") == 330


@pytest.mark.parametrize("text", [DEEP, "- " * 400 + "x\n", "{a: " * 300 + "x" + "}" * 300 + "\n", nested(MAX_NESTING + 1)])
def test_nesting_over_the_bound_is_one_line_with_file_and_line(text: str) -> None:
    """Flow or block, lists or mappings: past MAX_NESTING levels it is `FILE:LINE: nested deeper than N`, no RecursionError."""
    with pytest.raises(YamlSyntaxError) as raised:
        load_yaml("p.yaml", text)
    assert re.fullmatch(rf"p\.yaml:\d+: nested deeper than {MAX_NESTING}", str(raised.value)), str(raised.value)


def test_the_line_is_where_the_nesting_crosses_the_bound() -> None:
    """In a block file the line named is the first one past the bound."""
    with pytest.raises(YamlSyntaxError, match=rf"^p\.yaml:{MAX_NESTING + 1}: nested deeper"):
        load_yaml("p.yaml", nested(MAX_NESTING + 1))


def test_nesting_at_the_bound_loads() -> None:
    """Exactly MAX_NESTING levels is accepted (the bound is "deeper than")."""
    data = load_yaml("p.yaml", nested(MAX_NESTING)).data
    for level in range(MAX_NESTING - 1):
        data = data[f"k{level}"]
    assert data == ["leaf"]


def test_deep_files_in_policies_and_notices_are_errors_not_tracebacks(tmp_path: Path) -> None:
    """`policy validate` names each deep file once; `scrapy crawl` refuses to start with the same line, exit 2, no request."""
    policies = policy_dir_with_pace(tmp_path / "policies")
    (policies / "notices").mkdir()
    (policies / "platforms" / "deep.yaml").write_text(DEEP)
    (policies / "notices" / "deep.yaml").write_text(DEEP)
    done = scrapy_command(["policy", "validate", str(policies)])
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert f"{policies}/platforms/deep.yaml:1: nested deeper than {MAX_NESTING}" in done.stdout.splitlines()
    assert f"{policies}/notices/deep.yaml:1: nested deeper than {MAX_NESTING}" in done.stdout.splitlines()
    (policies / "platforms" / "deep.yaml").unlink()
    run = run_site_crawl(None, ["http://shop.test/"], f"sqlite:///{tmp_path / 's.sqlite3'}",  # type: ignore[arg-type]
                         settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr and "RecursionError" not in run.stderr
    assert f"notices/deep.yaml:1: nested deeper than {MAX_NESTING}" in run.stderr


def test_a_deep_cassette_is_one_line(tmp_path: Path, store_url: str) -> None:
    """A cassette nested past the bound: the crawl refuses to start and the audit fails, each with one line naming it."""
    cassette = tmp_path / "deep.yaml"
    cassette.write_text("interactions: " + "[" * 330 + "]" * 330 + "\nversion: 1\n")
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = {"COMPLIANCE_CASSETTE": str(cassette), "COMPLIANCE_POLICY_DIR": str(policies)}
    run = run_site_crawl(None, ["http://rec.test/"], store_url, settings=settings, env=GUARD_ENV)  # type: ignore[arg-type]
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"error: crawl refused to start: COMPLIANCE_CASSETTE: {cassette}:1: nested deeper than {MAX_NESTING}" in run.stderr
    done = scrapy_command(["policy", "audit", "--cassette", str(cassette)],
                          settings={"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_CONTACT": TEST_CONTACT}, env=GUARD_ENV)  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip() == f"error: {cassette}:1: nested deeper than {MAX_NESTING}", done.stderr


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Paths that are not regular files, and what each must be called."""
    where = tmp_path / "odd"
    where.mkdir()
    os.mkfifo(where / "fifo.yaml")
    (where / "zero.yaml").symlink_to("/dev/zero")
    (where / "to-fifo.yaml").symlink_to("fifo.yaml")
    (where / "dangling.yaml").symlink_to("nowhere.yaml")
    (where / "folder.yaml").mkdir()
    return {
        "fifo.yaml": (where / "fifo.yaml", "is a FIFO (named pipe), not a file"),
        "zero.yaml": (where / "zero.yaml", "is a symbolic link to /dev/zero, a character device, not a file"),
        "to-fifo.yaml": (where / "to-fifo.yaml", "is a symbolic link to fifo.yaml, a FIFO (named pipe), not a file"),
        "dangling.yaml": (where / "dangling.yaml", "is a symbolic link to nowhere.yaml, which does not exist"),
        "folder.yaml": (where / "folder.yaml", "is a folder, not a file"),
    }


def test_read_regular_file_says_what_a_path_is(odd_paths: dict[str, tuple[Path, str]]) -> None:
    """FIFOs, devices, links to them and folders are refused by what they are; a FIFO is never opened (this would block)."""
    for path, what in odd_paths.values():
        with pytest.raises(NotAFile) as raised:
            read_regular_file(path)
        assert str(raised.value) == f"{path}: {what}"
    # Nobody ever opened the FIFO for reading: a non-blocking writer finds no reader.
    with pytest.raises(OSError) as no_reader:
        os.open(odd_paths["fifo.yaml"][0], os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == 6  # ENXIO


def test_policy_and_notice_paths_that_are_not_files_are_named(tmp_path: Path, odd_paths: dict[str, tuple[Path, str]]) -> None:
    """In platforms/ and notices/, and as default.yaml: never "missing", always what the path is; validate does not hang."""
    policies = policy_dir_with_pace(tmp_path / "policies")
    (policies / "notices").mkdir()
    for name, (path, _) in odd_paths.items():
        for folder in ("platforms", "notices"):
            target = policies / folder / name
            if path.is_symlink():
                target.symlink_to(os.readlink(path))
            elif path.is_dir():
                target.mkdir()
            else:
                os.mkfifo(target)
    (policies / "default.yaml").unlink()
    (policies / "default.yaml").symlink_to("/dev/zero")
    _, errors = load_policies(policies)
    _, notice_errors = load_notice_files(policies)
    for name, (_, what) in odd_paths.items():
        assert f"{policies}/platforms/{name}: {what}" in errors, errors
        assert f"{policies}/notices/{name}: {what}" in notice_errors, notice_errors
    assert f"{policies}/default.yaml: is a symbolic link to /dev/zero, a character device, not a file" in errors
    assert not [e for e in errors + notice_errors if "missing" in e]
    done = scrapy_command(["policy", "validate", str(policies)], timeout=120)
    assert done.returncode == 1 and "is a FIFO (named pipe), not a file" in done.stdout and "Traceback" not in done.stderr


def test_the_fifo_check_happens_before_open(tmp_path: Path) -> None:
    """A policy command on a folder holding a FIFO finishes even though no writer ever comes (it never opens it)."""
    policies = policy_dir_with_pace(tmp_path / "policies")
    os.mkfifo(policies / "platforms" / "pipe.yaml")
    try:
        done = scrapy_command(["policy", "list", "-s", f"COMPLIANCE_POLICY_DIR={policies}"], timeout=120)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test exists for
        pytest.fail("`scrapy policy list` blocked on a FIFO")
    assert done.returncode == 1 and f"{policies}/platforms/pipe.yaml: is a FIFO (named pipe), not a file" in done.stderr
