"""The site owner's side: a transparency and objection portal at the contact URL.

A site owner sees what the crawler holds about their registered domain
(``/holdings``), files an objection (``/objections/new``), which pauses
collection from its scope at once in every running crawl (a pending
objection is a ``pause`` notice in the store's registry: stop, do not
delete, expires), proves control of the site (a file at
``/.well-known/ethical-crawler-verification.txt`` or a ``<meta>`` tag on the
home page, fetched by the crawler itself, signed), and gets the purge's
receipt. The operator approves or rejects objections at ``/admin`` or with
``scrapy objection``. The portal and the crawls share only the store.

- :mod:`crawler.portal.objections`: the objection book and its life cycle (no Scrapy, no web framework);
- :mod:`crawler.portal.proof`: the proof of control, checked (pure) and fetched (a Scrapy spider, in a subprocess);
- :mod:`crawler.portal.app`: the ASGI application (Starlette, Jinja2);
- :mod:`crawler.portal.crawlerpage`: the page that explains the crawler, as the portal serves it.
"""
