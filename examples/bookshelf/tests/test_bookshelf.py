"""This project's spider and commands with the compliance stack, as any adopting project tests them."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from crawler.testing.assertions import assert_no_disallowed_fetch, assert_no_images, assert_refused, assert_stored
from crawler.testing.plugin import guarded_env

PROJECT = Path(__file__).resolve().parent.parent


def test_spider_by_name_is_compliant(run_compliance_crawl, tmp_path):
    """The spider, run by name, obeys robots.txt; its url-less items are stored under their pages; its own table is written."""
    shelf = tmp_path / "shelf.sqlite3"
    result = run_compliance_crawl("books", ["http://books.test/"], {"BOOKSHELF_DB": str(shelf), "CONCURRENT_REQUESTS": 4}).check()
    assert_no_disallowed_fetch(result)
    assert_no_images(result)
    assert_refused(result, "http://books.test/page/3", "robots.disallow")
    assert_stored(result, "http://books.test/")
    assert sorted(i["title"] for i in result.items) == ["Dune", "Emma", "Ulysses"]
    assert {i["url"] for i in result.items} == {"http://books.test/", "http://books.test/page/2"}
    assert all(i["domain"] == "books.test" and i["provenance"]["robots"] for i in result.items)
    with sqlite3.connect(shelf) as db:
        assert db.execute("SELECT COUNT(*) FROM books WHERE site = 'books.test'").fetchone() == (3,)


def scrapy(args, cwd, web=None):
    done = subprocess.run([sys.executable, "-m", "scrapy", *args], cwd=cwd, env=guarded_env(web),
                          capture_output=True, text=True, timeout=300, check=False)
    return done


def test_commands_from_anywhere_in_the_project(compliance_web, tmp_path):
    """crawl, policy validate, notice add from a subfolder, purge --verify and ledger verify share one store and reach the project's table."""
    project = tmp_path / "bookshelf"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("var", "__pycache__", ".pytest_cache", "tests"))
    crawl = scrapy(["crawl", "books", "-s", "DOWNLOAD_DELAY=0", "-s", "TELNETCONSOLE_ENABLED=False"], project, compliance_web)
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    assert "ROBOTSTXT_OBEY = True: robots.txt is obeyed by the compliance stack" in crawl.stderr
    assert (project / "var" / "compliance.sqlite3").is_file() and (project / "var" / "shelf.sqlite3").is_file()

    subfolder = project / "bookshelf" / "spiders"
    validate = scrapy(["policy", "validate"], subfolder)
    assert validate.returncode == 0 and "valid (5 platform policies" in validate.stdout, validate.stdout + validate.stderr
    count = scrapy(["items", "count", "--domain", "books.test"], subfolder)
    assert count.stdout.strip().splitlines()[-1] == "3", count.stderr

    added = scrapy(["notice", "add", "--domain", "books.test", "--sender", "Books Ltd", "--received", "2026-11-30"], subfolder)
    assert added.returncode == 0, added.stderr
    receipt = json.loads(added.stdout)["purge"]
    assert receipt["counts"] == {"store": 3, "custom:bookshelf-db": 3}, receipt
    assert (project / "policies" / "notices" / f"{json.loads(added.stdout)['notice']['id']}.yaml").is_file()
    assert not (subfolder / "var").exists() and not (subfolder / "policies").exists()

    listed = scrapy(["notice", "list"], project / "bookshelf")
    assert "books.test" in listed.stdout
    verify = scrapy(["purge", "--domain", "books.test", "--reason", "check", "--dry-run", "--verify"], subfolder)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["in_scope"]["custom:bookshelf-db"] == {"remaining": 0}
    with sqlite3.connect(project / "var" / "shelf.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM books").fetchone() == (0,)
    ledger = scrapy(["ledger", "verify"], subfolder)
    assert ledger.returncode == 0 and ledger.stdout.startswith("ledger intact"), ledger.stdout


def test_outside_the_project_commands_refuse(tmp_path):
    """Outside any project, with no store named, registry commands say so and exit non-zero; nothing is created."""
    done = scrapy(["notice", "list"], tmp_path)
    assert done.returncode == 1 and "no Scrapy project here" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
