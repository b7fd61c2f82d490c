"""``scrapy compliance report|init|page|serve``: the report a compliance person reads after a crawl, a project's
policy folder, the public page that explains the crawler to site owners, and the site owners' portal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "report [--crawl ID | --all] [--html FILE] | init [DIR] | page [--out DIR] | serve [--host 127.0.0.1] [--port 8080]"

    def short_desc(self) -> str:
        return ("Report what a crawl stored and refused (report); write the project's policies/ folder (init); "
                "write the public page that explains the crawler (page); run the site owners' portal (serve)")

    def long_desc(self) -> str:
        return (
            "report: what a crawl stored and refused, notices, purges and the ledger's status; exit 1 if the "
            "ledger is broken or a crawl could not write to the store. init: write policies/ into the project "
            "(the default policy, the shipped platform policies, schema.json, an empty notices/), to edit. "
            "page: write index.html, crawler.json (the same content) and, with COMPLIANCE_IP_RANGES, "
            "client-ranges.json into --out (default COMPLIANCE_DATA_DIR/page), for hosting at COMPLIANCE_CONTACT. serve: the "
            "site owners' portal (docs/portal.md) on the crawls' store and policies; needs the 'portal' extra."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--crawl", metavar="ID", help="the crawl to report (default: the latest)")
        parser.add_argument("--all", action="store_true", help="every crawl in the store")
        parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
        parser.add_argument("--out", metavar="DIR", help="page: the folder to write into (default COMPLIANCE_DATA_DIR/page)")
        parser.add_argument("--host", default="127.0.0.1", help="serve: the address to listen on (default 127.0.0.1; put a TLS proxy in front)")
        parser.add_argument("--port", default="8080", help="serve: the port (default 8080)")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if args[:1] == ["init"] and len(args) <= 2:
            return self.init(args[1] if len(args) == 2 else None)
        if args == ["page"]:
            return self.page(opts)
        if args == ["serve"]:
            return self.serve(opts)
        if args != ["report"]:
            raise UsageError("expected: report [--crawl ID | --all] [--html FILE], init [DIR], page [--out DIR], "
                             "or serve [--host H] [--port P]", print_help=True)  # fmt: skip
        return self.report(opts)

    def init(self, given: str | None) -> int:
        """Write the policy folder a compliance person edits; never overwrite a file that exists."""
        import json
        import shutil

        from crawler.compliance.policy import SHIPPED, json_schema
        from crawler.config import policy_dir

        assert self.settings is not None
        target = Path(given).resolve() if given else Path(str(policy_dir(self.settings) or ""))
        if not given and policy_dir(self.settings) is None:
            raise CommandFailed("no Scrapy project here (no scrapy.cfg in this folder or above); run it inside your project or name a folder: scrapy compliance init DIR")
        if target.exists() and not target.is_dir():
            raise CommandFailed(f"{target} exists and is not a folder")
        wanted: list[tuple[Path, str | Path]] = [
            (target / "default.yaml", SHIPPED / "default.yaml"),
            (target / "schema.json", json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"),
            *[(target / "platforms" / p.name, p) for p in sorted((SHIPPED / "platforms").glob("*.yaml"))],
        ]
        written, kept = [], []
        for path, source in wanted:
            if path.exists() or path.is_symlink():
                kept.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, Path):
                shutil.copyfile(source, path)
            else:
                path.write_text(source, encoding="utf-8")
            written.append(path)
        notices = target / "notices"
        if not notices.exists():
            notices.mkdir(parents=True)
            written.append(notices)
        for path in written:
            print(f"wrote {path}{'/' if path.is_dir() else ''}")
        for path in kept:
            print(f"kept  {path} (exists; not overwritten)")
        print(
            f"{target}: the project's policies. Edit them and run `scrapy policy validate`. The shipped platform "
            "policies stay in force for every platform domain these files do not claim."
        )
        return 0

    def report(self, opts: argparse.Namespace) -> int:
        from crawler.report import build, render_html, render_text

        store = self.open_store()
        crawl_id = None if opts.all else (opts.crawl or store.last_crawl_id())
        if crawl_id is not None and store.crawl(crawl_id) is None:
            raise CommandFailed(f"no crawl {crawl_id!r} in the store" if opts.crawl else "the store holds no crawl yet; run one first")
        from crawler.config import unwritten_files

        assert self.settings is not None
        data = build(store, crawl_id, [str(p) for p in unwritten_files(self.settings)])
        print(render_text(data), end="")
        if opts.html:
            target = Path(opts.html)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(render_html(data), encoding="utf-8")
            except OSError as exc:
                raise CommandFailed(f"cannot write {opts.html}: {exc.strerror or exc}") from None
            print(f"wrote {opts.html}")
        return 0 if data["ledger"]["ok"] and not data.get("store_failures") else 1

    def page(self, opts: argparse.Namespace) -> int:
        """Write the page that explains the crawler, from the configuration a crawl here would use."""
        import json

        from crawler.config import data_dir
        from crawler.identity.page import CLIENT_RANGES_FILE, PageSettingError, client_ranges, content_from_settings, render_html, render_json

        settings = self.settings
        assert settings is not None
        rate = self.policies().default.rate
        try:
            content = content_from_settings(settings, rate.min_delay, rate.max_concurrency)
        except PageSettingError as exc:
            raise CommandFailed(str(exc)) from None
        ranges, now = content["ip_ranges"], content["generated_at"]
        out = Path(opts.out) if opts.out else data_dir(settings) / "page"
        files = {"index.html": render_html(content), "crawler.json": render_json(content)}
        if ranges:
            files[CLIENT_RANGES_FILE] = json.dumps(client_ranges(ranges, now), indent=2) + "\n"
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (out / name).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandFailed(f"cannot write the page into {out}: {exc.strerror or exc}") from None
        for name in files:
            print(f"wrote {out / name}")
        return 0

    def serve(self, opts: argparse.Namespace) -> int:
        """Run the portal under uvicorn until interrupted (the crawls never depend on it)."""
        import gc

        try:
            import uvicorn

            from crawler.portal.app import create_app
        except ImportError as exc:
            raise CommandFailed(f"the portal needs its extra: pip install 'ethical-crawler[portal]' ({exc})") from None
        from scrapy.utils.conf import arglist_to_dict

        assert self.settings is not None
        if not str(opts.port).isdigit() or not 0 < int(opts.port) < 65536:
            raise CommandFailed(f"--port: {opts.port!r} is not a port number (1-65535)")
        # The proof fetch runs `scrapy objection probe` with the same -s settings (store, policies, contact, ...).
        overrides = {k: v for k, v in arglist_to_dict(opts.set or []).items() if k != "COMPLIANCE_ADMIN_TOKEN"}
        # Signing: the receipts the portal hands out carry an inclusion proof and a signed tree head.
        store = self.open_signing_store()
        app = create_app(self.settings, store=store, policies=self.policies(), probe_overrides=overrides)
        print(f"portal: http://{opts.host}:{opts.port}/ (store {store.url})", flush=True)
        # What startup built (SQLAlchemy, Starlette, the templates: some 45,000 objects) is left out of
        # the garbage collector's full passes, which otherwise stop a request for 10-15 ms now and then
        # to walk it (bench/ledger_scale.py, proofs). Python's advice for long-running servers.
        gc.collect()
        gc.freeze()
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 by
        # default; the app trusts only COMPLIANCE_TRUSTED_PROXIES (crawler/portal/app.py).
        # No access log: objection pages are capability URLs (/objections/<secret id>); a log must not hold them.
        uvicorn.run(app, host=opts.host, port=int(opts.port), proxy_headers=False, server_header=False,
                    log_level="info", access_log=False)  # fmt: skip
        return 0
