"""Shared plumbing for the project's commands (not itself a command).

Scrapy imports every command module to list them, for every ``scrapy``
invocation (``scrapy version`` too), so this module and the command modules
import nothing heavy at module level: the store, the models and the
compliance core are imported inside the methods that use them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

if TYPE_CHECKING:
    import argparse

    from crawler.compliance.notices import NoticeSet
    from crawler.compliance.policy import PolicySet
    from crawler.compliance.registry import NoticeRow
    from crawler.compliance.store import Store


class CommandFailed(Exception):
    """A user-facing failure: printed as one line, exit status 1."""

    exitcode = 1


class UserMistake(CommandFailed):
    """What the user gave cannot be used (a malformed identifier, say): one line, exit status 2."""

    exitcode = 2


class ComplianceCommand(ScrapyCommand):
    """A command that works on the store or policies and crawls nothing.

    Subclasses implement :meth:`execute`; a :class:`CommandFailed` (or a
    setting or store problem) becomes one ``error: ...`` line on stderr and
    exit status 1, never a traceback.

    The commands are installed through the ``scrapy.commands`` entry points,
    so they exist in every Scrapy project that installed the package. They
    run outside a project too when the store is named with ``-s
    COMPLIANCE_STORE=...``; without one they say so instead of creating an
    empty registry wherever they run.
    """

    requires_project = False
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--no-progress", action="store_true",
                            help="no live progress line on the terminal (also COMPLIANCE_PROGRESS=0)")  # fmt: skip

    def progress_setting(self, opts: argparse.Namespace) -> object:
        """COMPLIANCE_PROGRESS as this run sees it: ``--no-progress`` wins (see crawler/progress_display.py)."""
        assert self.settings is not None
        return "0" if getattr(opts, "no_progress", False) else self.settings.get("COMPLIANCE_PROGRESS")

    def purge_everywhere(self, store: Store, request: Any, opts: argparse.Namespace, machine: str, extra: Any,
                         description: str = "purge") -> dict[str, Any]:  # fmt: skip
        """``run_purge`` as every command runs it: deletion requests to the exports' recipients
        (COMPLIANCE_DATA_DIR/outbox) and a live line on the terminal; returns the receipt."""
        from crawler.compliance.purge import run_purge
        from crawler.dataprotection import settings as dp_settings
        from crawler.progress_display import PurgeLine, task_progress

        assert self.settings is not None
        dp = dp_settings.read(self.settings)
        with task_progress(PurgeLine(description), self.progress_setting(opts)) as progress:
            return run_purge(store, request, machine, extra, progress, outbox=dp.outbox, deadline_days=dp.deadline_days)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        from crawler.compliance.registry import StoreError  # not the store module: commands start without SQLAlchemy
        from crawler.config import ConfigError

        try:
            self.exitcode = self.execute(args, opts) or 0
        except (CommandFailed, StoreError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = getattr(exc, "exitcode", 1)
        except UsageError:
            raise
        except KeyboardInterrupt:
            # Ctrl-C: what was committed stays committed (a purge resumes where it stopped).
            print("interrupted", file=sys.stderr)
            self.exitcode = 130
        except Exception as exc:  # noqa: BLE001 - never a traceback for people; the type and message say what
            first = (str(exc).strip().splitlines() or [""])[0]
            print(f"error: {type(exc).__name__}: {first[:500]}", file=sys.stderr)
            self.exitcode = 1

    def execute(self, args: list[str], opts: argparse.Namespace) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def policies(self) -> PolicySet:
        """The shipped policies and the project's, or CommandFailed with every error."""
        from crawler.config import ConfigError, policy_dir, policy_dir_required
        from crawler.runtime import load_policies_or_fail

        assert self.settings is not None
        try:
            return load_policies_or_fail(policy_dir(self.settings), policy_dir_required(self.settings))
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None

    def policies_to_stop(self) -> PolicySet:
        """The policies for filing a notice or purging: the project's, or the shipped ones when the project's are broken.

        Stopping and deleting are always safe: a broken ``default.yaml`` (or any
        policy file) must not keep a cease-and-desist from being filed or its
        purge from running. The errors are printed; the shipped platform
        policies (package data) resolve platform scopes meanwhile.
        """
        from crawler.compliance.policy import load_policies

        try:
            return self.policies()
        except CommandFailed as exc:
            shipped, errors = load_policies(None)
            if shipped is None:  # pragma: no cover - the package's own files are tested
                raise CommandFailed(f"{exc}\n(and the shipped policies cannot be read: {'; '.join(errors)})") from None
            print(f"warning: {exc}\nwarning: the shipped platform policies are used for this command; fix the files above",
                  file=sys.stderr)  # fmt: skip
            return shipped

    def notice_registry(self, policies: PolicySet) -> NoticeSet:
        """The notices in force as a crawl would see them: the store's registry and the notice files."""
        from crawler.compliance.notices import Notice, NoticeSet, load_notice_files, merge_notices
        from crawler.config import policy_dir

        assert self.settings is not None
        files, errors = load_notice_files(policy_dir(self.settings), [p.policy.id for p in policies.platforms])
        if errors:
            raise CommandFailed("invalid notice files:\n" + "\n".join(errors))
        rows = self.notice_rows()
        from_store = [(Notice.model_validate(r.data), r.resolved_domains) for r in rows]
        return NoticeSet.build(merge_notices(files, from_store, policies), "cli")

    def notice_rows(self) -> list[NoticeRow]:
        """The store's notice registry checked against its ledger, read without opening the store where that is safe.

        A SQLite store of the current schema is read with the standard
        library (see ``crawler.compliance.registry``); any other store, or
        one the fast read cannot vouch for, is opened as every command opens it.
        """
        from crawler.compliance.registry import read_sqlite_registry
        from crawler.config import store_url

        assert self.settings is not None
        rows = read_sqlite_registry(store_url(self.settings))
        return rows if rows is not None else self.open_store().notice_rows()

    def open_store(self) -> Store:
        """The store every crawl of this project uses (found from any subfolder; see ``crawler.config.store_url``)."""
        from crawler.compliance.store import Store
        from crawler.config import store_url

        assert self.settings is not None
        return Store(store_url(self.settings))

    def open_signing_store(self) -> Store:
        """The store, with the identity key set to sign a tree head after each append (the receipts need one).

        The key is loaded (created on first use, as a crawl does) before
        anything is written: a key file that cannot be used stops the command
        with its reason instead of leaving appends unsigned.
        """
        from crawler.identity import keyring
        from crawler.identity.config import identity_settings

        assert self.settings is not None
        options = identity_settings(self.settings)
        try:
            ring, created = keyring.load_or_create(options.key_path)
        except keyring.KeyFileError as exc:
            raise CommandFailed(f"{exc} (the ledger's tree heads are signed with this key)") from None
        if created:
            print(f"created a new signing key {ring.current.key_id} in {options.key_path} "
                  "(publish its directory: scrapy identity directory)", file=sys.stderr)  # fmt: skip
        store = self.open_store()
        store.head_key = ring.current
        return store
