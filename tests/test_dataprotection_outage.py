"""A store that cannot be read for a moment does not make a crawl lose items: the suppression list as last read stays in force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crawler.testing.runner import policy_dir_with_pace, project_dir, scrapy_command
from crawler.testing.sites import TEST_CONTACT

#: Run in its own process: the extension needs Scrapy's asyncio reactor, which this test process must not install.
SCRIPT = """
import json, logging, sys
from pathlib import Path
from scrapy.utils.reactor import install_reactor
install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
from scrapy.utils.test import get_crawler
from crawler.extensions.dataprotection import DataProtection

settings, database = json.loads(sys.argv[1]), Path(sys.argv[2])
warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("crawler.compliance").addHandler(Keep(logging.WARNING))
extension = DataProtection.from_crawler(get_crawler(settings_dict=settings))
before = extension.active()
extension.runtime.store.dispose()
database.write_bytes(b"not a database " * 512)  # the store becomes unreadable; the next re-read fails
extension._checked_at = 0.0
after = extension.active()
jane = extension.check("http://people.test/jane", {"text": "Write to Jane.Doe@example.org"})
other = extension.check("http://people.test/other", {"text": "Nobody in particular"})
print(json.dumps({"before": before, "after": after, "jane": jane.reason if jane else None,
                  "other": other.reason if other else None, "warnings": warnings}))
"""


def test_a_suppression_list_that_cannot_be_read_again_stays_in_force(tmp_path: Path) -> None:
    """The re-read fails: a warning, no exception (which would drop the item unrecorded), and the list still refuses."""
    database = tmp_path / "store.sqlite3"
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = {"COMPLIANCE_CONTACT": TEST_CONTACT, "COMPLIANCE_STORE": f"sqlite:///{database}",
                "COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_DATA_DIR": str(tmp_path / "var")}  # fmt: skip
    done = scrapy_command(["erase", "--email", "jane.doe@example.org", "--reason", "ticket 1"], settings=settings)
    assert done.returncode == 0, done.stderr
    run = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(settings), str(database)],
                         cwd=project_dir(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["before"] and found["after"], found
    assert found["jane"] and found["jane"].startswith("erasure.") and found["other"] is None, found
    assert any("Could not re-read the suppression list" in w for w in found["warnings"]), found
