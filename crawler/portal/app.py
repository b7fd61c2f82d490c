"""The portal as an ASGI application: Starlette routes, Jinja2 templates (autoescape), no JavaScript.

Safety of the portal itself, each in one place:

- CSRF: asgi-csrf on every POST (a signed token in a cookie and in a hidden field);
- rate limit: per client address (a moving window kept in the store, crawler/portal/ratelimit.py) on filing, verifying and admin log-in;
- validation: the notice model's validators (crawler/portal/objections.py ``parse_form``), sizes bounded;
- escaping: Jinja2 autoescape on every template, and a Content-Security-Policy without scripts;
- disclosure: stored URLs and texts only to the operator or to the holder of a verified objection for that domain;
- redirects: only to paths this application builds (ids it made), never to a URL from the request;
- client address: the socket's peer; X-Forwarded-* only from COMPLIANCE_TRUSTED_PROXIES (uvicorn's ProxyHeadersMiddleware).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from crawler.compliance.notices import PAUSE_TAG, CompiledScope, Notice, Scope, load_notice_files
from crawler.compliance.store import Store, domain_filter, items, refusals
from crawler.portal.objections import OBJECTION_KINDS, PROOF_FILE_PATH, PROOF_META_NAME, ObjectionBook, ObjectionError, parse_form
from crawler.portal.settings import PortalSettings

#: How many stored items the holdings page lists for the operator or a verified owner.
MAX_LISTED_ITEMS = 200
ADMIN_COOKIE = "portal_admin"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


class Portal:
    """Everything a request needs: the store, the book, the settings, the templates, the limiter."""

    def __init__(self, settings: Any, store: Store, book: ObjectionBook, options: PortalSettings, policies: Any,
                 probe_overrides: Mapping[str, str]) -> None:  # fmt: skip
        from limits import parse_many

        from crawler.portal.ratelimit import StoreRateLimiter

        self.settings = settings
        self.store = store
        self.book = book
        self.options = options
        self.policies = policies
        self.probe_overrides = dict(probe_overrides)
        self.templates = Environment(loader=PackageLoader("crawler.portal", "templates"), autoescape=True)
        # In the store, not in memory: a restart must not hand every client a fresh allowance.
        self.limiter = StoreRateLimiter(store, parse_many(options.rate_limit))

    # -- helpers --

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        csrf = request.scope.get("csrftoken")
        html = self.templates.get_template(name).render(
            csrftoken=csrf() if callable(csrf) else "", admin_enabled=self.options.admin_token is not None,
            contact=self.options.contact, **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def allowed(self, request: Request, action: str) -> bool:
        """Count one ``action`` for this client; False when over the limit (nothing is done then)."""
        return self.limiter.hit(action, self.client(request))

    def too_many(self, request: Request) -> HTMLResponse:
        response = self.render(request, "error.html", 429, title="Too many requests",
                               message="Too many requests from your address; try again in a minute.")  # fmt: skip
        response.headers["retry-after"] = "60"
        return response

    def is_admin(self, request: Request) -> bool:
        token = self.options.admin_token
        if token is None:
            return False
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            # Guesses count against the log-in limit; past it, not even the right token opens /admin.
            good = hmac.compare_digest(bearer[7:].strip().encode(), token.encode())
            if not good:
                self.allowed(request, "login")
                return False
            return self.limiter.test("login", self.client(request))
        cookie = request.cookies.get(ADMIN_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.admin_session().encode())

    def admin_session(self) -> str:
        assert self.options.admin_token is not None
        return hmac.new(self.options.admin_token.encode(), b"ethical-crawler portal admin session 1", hashlib.sha256).hexdigest()

    # -- the crawler page and the key directory --

    def home(self, request: Request) -> Response:
        from crawler.portal.crawlerpage import crawler_page_content

        return self.render(request, "home.html", page=crawler_page_content(self.settings, self.policies))

    def key_directory(self, request: Request) -> Response:
        from urllib.parse import urlsplit

        from crawler.identity import keyring
        from crawler.identity.config import identity_settings
        from crawler.identity.signing import DIRECTORY_MEDIA_TYPE, directory_body, signed_directory

        options = identity_settings(self.settings)
        try:
            ring = keyring.load(options.key_path)
        except keyring.KeyFileError as exc:
            return PlainTextResponse(f"no key directory: {exc}\n", status_code=404)
        # Signed for the host COMPLIANCE_SIGNATURE_AGENT names, never for the
        # Host header a client sends (that would hand out a directory bound to any host).
        authority = urlsplit(options.agent).netloc if options.agent else ""
        if not authority:
            return Response(directory_body(ring.published()), media_type=DIRECTORY_MEDIA_TYPE)
        import time

        headers, body = signed_directory(ring.published(), authority, created=int(time.time()), lifetime=3600)
        return Response(body, headers={k: v for k, v in headers.items() if k.lower() != "content-type"}, media_type=DIRECTORY_MEDIA_TYPE)

    # -- holdings --

    def holdings(self, request: Request) -> Response:
        domain = str(request.query_params.get("domain") or "").strip().lower()
        if not domain:
            return self.render(request, "holdings.html", domain="", error="", data=None)
        try:
            Scope(domains=[domain])
        except ValueError as exc:
            from crawler.portal.objections import _first_error

            return self.render(request, "holdings.html", 400, domain=domain, error=_first_error(exc).removeprefix("domains: "), data=None)
        objection_id = str(request.query_params.get("objection") or "")
        owner = bool(objection_id) and self.book.verified_for(objection_id, domain)
        privileged = owner or self.is_admin(request)
        data = holdings_of(self.store, domain, privileged)
        data["notices"] = self.notices_for(domain)
        data["purposes"] = list(self.options.purposes)
        return self.render(request, "holdings.html", domain=domain, error="", data=data, privileged=privileged, owner=owner)

    def notices_for(self, domain: str | None) -> list[dict[str, Any]]:
        from crawler.config import policy_dir

        files, _ = load_notice_files(policy_dir(self.settings))
        from crawler.compliance.notices import merge_notices

        rows = [(Notice.model_validate(r.data), r.resolved_domains) for r in self.store.notice_rows()]
        now = datetime.now(UTC)
        shown = []
        for active in merge_notices(files, rows, self.policies):
            notice = active.notice
            if domain is not None and domain not in active.scope.hosts:
                continue
            expired = notice.expires_at is not None and notice.expires_at < now
            in_force = notice.status == "active" and notice.demands.stop_collection and not expired
            if domain is not None and not in_force:
                continue
            shown.append({
                "id": notice.id, "type": "cease-and-desist" if notice.is_cease_and_desist else notice.type,
                "pause": PAUSE_TAG in notice.tags, "sender": notice.sender_name, "scope": notice.scope.describe(),
                "effective_at": notice.effective_at.isoformat(timespec="seconds"), "status": notice.status if not expired else "expired",
                "expires_at": notice.expires_at.isoformat(timespec="seconds") if notice.expires_at else "",
                "delete": notice.demands.delete_existing,
            })  # fmt: skip
        return shown

    # -- objections --

    def new_objection(self, request: Request) -> Response:
        return self.render(request, "new.html", kinds=OBJECTION_KINDS, errors=[], form={})

    async def file_objection(self, request: Request) -> Response:
        form_data = await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)
        fields = {k: str(v) for k, v in form_data.items() if isinstance(v, str)}
        # The limiter is in the store: off the event loop, like every store call of an async handler.
        if not await run_in_threadpool(self.allowed, request, "objection"):
            return self.too_many(request)
        form, errors = parse_form(fields)
        if form is None:
            return self.render(request, "new.html", 400, kinds=OBJECTION_KINDS, errors=errors, form=fields)
        record = await run_in_threadpool(self.book.file, form, self.client(request))
        return RedirectResponse(f"/objections/{record['id']}", status_code=303)

    def objection(self, request: Request) -> Response:
        record = self.book.get(request.path_params["objection_id"])
        if record is None:
            return self.render(request, "error.html", 404, title="No such objection", message="No objection has this address.")
        self.book.sweep()
        record = self.book.get(record["id"])
        return self.render(request, "objection.html", o=record, proof_path=PROOF_FILE_PATH, meta_name=PROOF_META_NAME,
                           lines=request.query_params.get("checked") == "1")  # fmt: skip

    def verify(self, request: Request) -> Response:
        from crawler.portal.proof import fetch_proofs, summary

        record = self.book.get(request.path_params["objection_id"])
        if record is None:
            return self.render(request, "error.html", 404, title="No such objection", message="No objection has this address.")
        if not self.allowed(request, "verify"):
            return self.too_many(request)
        if record["status"] != "pending":
            return RedirectResponse(f"/objections/{record['id']}", status_code=303)
        attempts, problem = fetch_proofs(record["domain"], record["token"], record["pause_notice_id"], self.probe_overrides, cwd=os.getcwd())
        proved, lines = summary(attempts)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self.book.record_attempt(record["id"], {"at": at, "proved": proved is not None, "lines": lines or [problem]})
        if proved is not None:
            try:
                self.book.complete(record["id"], "verified", {"method": proved["method"], "url": proved.get("final_url") or proved["url"]},
                                   f"site owner (objection {record['public_id']})")  # fmt: skip
            except ObjectionError:
                pass  # decided meanwhile: the page says how
        return RedirectResponse(f"/objections/{record['id']}?checked=1", status_code=303)

    # -- the ledger's signed heads and proofs, for anyone holding a receipt --

    def ledger_head(self, request: Request) -> Response:
        """The latest signed tree head (one is signed first if entries were appended without the key)."""
        from crawler.compliance.store import StoreError

        try:
            head = self.store.sign_tree_head() if self.store.head_key is not None else self.store.latest_tree_head()
        except StoreError as exc:
            return PlainTextResponse(f"no signed tree head: {exc}\n", status_code=503)
        if head is None:
            return PlainTextResponse("no signed tree head yet\n", status_code=404)
        return JSONResponse(head)

    def ledger_consistency(self, request: Request) -> Response:
        """``?old=N&new=M``: the proof that the tree of size N is unchanged inside the signed tree of size M."""
        try:
            old = int(str(request.query_params.get("old", "")))
            new = int(str(request.query_params.get("new", "")))
        except ValueError:
            return PlainTextResponse("old and new: tree sizes (whole numbers), e.g. ?old=6&new=9\n", status_code=400)
        head = self.store.tree_head(new) if new >= 1 else None
        if head is None:
            return PlainTextResponse(f"new={new}: no signed tree head of that size (see /ledger/head)\n", status_code=404)
        if not 1 <= old <= new:
            return PlainTextResponse(f"old={old}: must be 1..{new}\n", status_code=400)
        proof = self.store.consistency_proof(old, new)
        return JSONResponse({"old_size": old, "new_size": new, "proof": [h.hex() for h in proof], "new_head": head})

    def receipt(self, request: Request) -> Response:
        record = self.book.get(request.path_params["objection_id"])
        if record is None or record["receipt"] is None:
            return PlainTextResponse("no receipt for this address\n", status_code=404)
        body = json.dumps(record["receipt"], indent=2, sort_keys=True, default=str) + "\n"
        name = f"objection-{record['public_id']}-receipt.json"
        return Response(body, media_type="application/json", headers={"content-disposition": f'attachment; filename="{name}"'})

    # -- the operator --

    def admin(self, request: Request) -> Response:
        if self.options.admin_token is None:
            return self.render(request, "error.html", 404, title="Not found", message="The admin pages are off (COMPLIANCE_ADMIN_TOKEN is not set).")
        if not self.is_admin(request):
            return self.render(request, "login.html", 401, failed=False)
        self.book.sweep()
        return self.render(request, "admin.html", objections=self.book.list(), notices=self.notices_for(None),
                           message=request.query_params.get("done", "")[:200])  # fmt: skip

    async def admin_login(self, request: Request) -> Response:
        if self.options.admin_token is None:
            return self.render(request, "error.html", 404, title="Not found", message="The admin pages are off.")
        form = await request.form(max_files=0, max_fields=5)
        if not await run_in_threadpool(self.allowed, request, "login"):
            return self.too_many(request)
        given = str(form.get("token") or "")
        if not hmac.compare_digest(given.encode(), self.options.admin_token.encode()):
            return self.render(request, "login.html", 401, failed=True)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, self.admin_session(), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")  # fmt: skip
        return response

    def admin_logout(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, path="/")
        return response

    async def admin_decide(self, request: Request) -> Response:
        if not await run_in_threadpool(self.is_admin, request):
            return self.render(request, "error.html", 403, title="Forbidden", message="Operator only.")
        form = await request.form(max_files=0, max_fields=5)
        record = self.book.by_public_id(request.path_params["public_id"])
        if record is None:
            return self.render(request, "error.html", 404, title="No such objection", message="No such objection.")
        action = request.path_params["action"]
        try:
            if action == "approve":
                await run_in_threadpool(self.book.complete, record["id"], "approved",
                                        {"method": "operator", "note": str(form.get("note") or "")[:2000]}, "operator (portal)")  # fmt: skip
            elif action == "reject":
                await run_in_threadpool(self.book.reject, record["id"], str(form.get("reason") or ""), "operator (portal)")
            else:
                return self.render(request, "error.html", 404, title="Not found", message="No such action.")
        except ObjectionError as exc:
            return self.render(request, "error.html", 400, title="Not done", message=str(exc))
        return RedirectResponse(f"/admin?done={action}d+{record['public_id']}", status_code=303)


def holdings_of(store: Store, domain: str, privileged: bool) -> dict[str, Any]:
    """Per host: stored items, first and last fetch; refusals by reason; and (``privileged``) the items themselves."""
    where = domain_filter(items, domain)
    with store.engine.connect() as conn:
        hosts = conn.execute(
            sa.select(items.c.host, sa.func.count(), sa.func.min(items.c.fetched_at), sa.func.max(items.c.fetched_at))
            .where(where).group_by(items.c.host).order_by(items.c.host)
        ).all()  # fmt: skip
        refused = conn.execute(
            sa.select(refusals.c.reason, sa.func.count()).where(domain_filter(refusals, domain))
            .group_by(refusals.c.reason).order_by(sa.func.count().desc(), refusals.c.reason)
        ).all()  # fmt: skip
        listed = []
        if privileged:
            listed = [
                {"url": r.url, "title": r.title, "fetched_at": _when(r.fetched_at), "text": (r.text or "")[:300]}
                for r in conn.execute(
                    sa.select(items.c.url, items.c.title, items.c.fetched_at, items.c.text).where(where).order_by(items.c.id).limit(MAX_LISTED_ITEMS)
                )
            ]  # fmt: skip
    return {
        "hosts": [{"host": h, "items": int(n), "first": _when(a), "last": _when(b)} for h, n, a, b in hosts],
        "total": sum(int(n) for _, n, _, _ in hosts),
        "refusals": [{"reason": r, "count": int(n)} for r, n in refused],
        "items": listed,
    }


def _when(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")
    return ""


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pure ASGI, so streaming and errors are covered)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


#: The largest form body the portal reads (an objection's statement is bounded far below this).
MAX_FORM_BYTES = 64 * 1024


class SameOriginPosts:
    """Refuses a POST that a browser says comes from another site, or that cannot carry the form's token.

    asgi-csrf checks the token against its cookie, but lets a POST without
    any cookie through unchecked; the portal's cookies are SameSite=Strict,
    so a form posted from another site arrives exactly like that. Every
    form of the portal is served with its CSRF cookie, so a POST without it
    is refused here, as is one whose ``Sec-Fetch-Site`` says ``cross-site``
    or whose ``Origin`` is not the portal's own host, and a body over
    :data:`MAX_FORM_BYTES`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        why = _cross_site(headers)
        if why is None and int(headers.get("content-length") or 0) > MAX_FORM_BYTES:
            why, status = f"the form is larger than {MAX_FORM_BYTES} bytes", 413
        else:
            status = 403
        if why is not None:
            body = f"refused: {why}\n".encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _cross_site(headers: Mapping[str, str]) -> str | None:
    """Why a POST with these headers is refused as cross-site (None: it may go on to the CSRF token check)."""
    from urllib.parse import urlsplit

    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "a form posted from another site (Sec-Fetch-Site: cross-site)"
    origin = headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        return f"a form posted from another origin ({origin[:100]})"
    if "csrftoken=" not in headers.get("cookie", ""):
        return "the form's token cookie is missing (load the form again; forms posted from other sites carry none)"
    return None


#: Seconds between two sweeps of the objections while the portal runs (expired pauses recorded, claimed ones finished).
SWEEP_INTERVAL = 60.0


def _sweeping(book: ObjectionBook, limiter: Any) -> Any:
    """A lifespan that sweeps the objections every :data:`SWEEP_INTERVAL` seconds while the portal serves.

    A pause expires by itself in the crawls; the sweep writes ``objection.expired``
    to the ledger (with the moment it expired) without waiting for a visitor,
    and forgets the rate-limit rows of clients that left the longest window.
    """
    import asyncio
    import contextlib
    import logging

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(SWEEP_INTERVAL)
                try:
                    await run_in_threadpool(book.sweep)
                    await run_in_threadpool(limiter.prune)
                except Exception:  # noqa: BLE001 - a store hiccup: logged, tried again next time
                    logging.getLogger("crawler.portal").exception("Sweeping the objections failed; retrying in %gs", SWEEP_INTERVAL)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def create_app(settings: Any, *, store: Store | None = None, policies: Any = None, probe_overrides: Mapping[str, str] | None = None) -> Any:
    """The portal's ASGI application on the store and policies of ``settings`` (Scrapy settings)."""
    from asgi_csrf import asgi_csrf

    from crawler.config import store_url
    from crawler.portal.settings import open_book, portal_settings
    from crawler.runtime import load_policies_or_fail

    options = portal_settings(settings)
    if policies is None:
        from crawler.config import policy_dir, policy_dir_required

        policies = load_policies_or_fail(policy_dir(settings), policy_dir_required(settings))
    store = store or Store(store_url(settings))
    book = open_book(settings, store, policies)
    book.sweep()
    portal = Portal(settings, store, book, options, policies, probe_overrides or {})
    routes = [
        Route("/", portal.home),
        Route("/.well-known/http-message-signatures-directory", portal.key_directory),
        Route("/holdings", portal.holdings),
        Route("/objections/new", portal.new_objection),
        Route("/objections", portal.file_objection, methods=["POST"]),
        Route("/objections/{objection_id}", portal.objection),
        Route("/objections/{objection_id}/verify", portal.verify, methods=["POST"]),
        Route("/objections/{objection_id}/receipt.json", portal.receipt),
        Route("/ledger/head", portal.ledger_head),
        Route("/ledger/consistency", portal.ledger_consistency),
        Route("/admin", portal.admin),
        Route("/admin/login", portal.admin_login, methods=["POST"]),
        Route("/admin/logout", portal.admin_logout, methods=["POST"]),
        Route("/admin/objections/{public_id}/{action}", portal.admin_decide, methods=["POST"]),
    ]
    app: Any = Starlette(routes=routes, lifespan=_sweeping(book, portal.limiter))
    app.state.portal = portal
    # A fresh secret per process: a form served before a restart must be loaded again.
    secret = str(settings.get("COMPLIANCE_PORTAL_SECRET") or "") or secrets.token_hex(32)
    app = asgi_csrf(app, signing_secret=secret, always_set_cookie=True, cookie_samesite="Strict")
    app = SameOriginPosts(app)
    app = SecurityHeaders(app)
    if options.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app = ProxyHeadersMiddleware(app, trusted_hosts=list(options.trusted_proxies))
    return app
