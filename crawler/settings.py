"""Scrapy settings of the compliance project.

Every COMPLIANCE_* setting is documented once, in docs/settings.md.
"""

BOT_NAME = "crawler"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

ADDONS = {"crawler.addon.Compliance": 0}

# robots.txt is enforced by crawler.middlewares.robots (RFC 9309 semantics),
# whether this says True or False; Scrapy's own middleware stays off.
ROBOTSTXT_OBEY = True

# The operator's contact, put in the User-Agent. Required: set it here or with
# -s COMPLIANCE_CONTACT=... ; a crawl without it refuses to start.
COMPLIANCE_CONTACT = ""

# The pace per host comes from policies/default.yaml (and a platform's own
# policy); robots.txt Crawl-delay can only make it slower.

DOWNLOAD_TIMEOUT = 30
FEED_EXPORT_ENCODING = "utf-8"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
LOG_LEVEL = "INFO"
