"""Data protection after collection: retention schedules, erasure requests that stick, and telling recipients.

The pure core (no Scrapy imports) of three duties every data-protection law
names (FACTS §10): keep data no longer than its purpose needs
(:mod:`.retention`, GDPR Art. 5(1)(e), BIPA §15(a)'s published schedule);
erase what concerns a person who asks, and keep it erased (:mod:`.identifiers`
normalises and extracts e-mail addresses, phone numbers, handles, names and
URLs; :mod:`.search` finds them with the database's own full-text index;
:mod:`.suppression` keeps keyed hashes every crawl checks before storing an
item; :mod:`.erasure` ties them to the purge, GDPR Art. 17); and tell everyone
the data was disclosed to (:mod:`.exports`: export manifests, deletion
requests in ``var/outbox/``, webhooks, GDPR Art. 19). The tables they use are
in :mod:`.tables`; the purge itself is :mod:`crawler.compliance.purge`'s.
"""
