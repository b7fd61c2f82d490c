BOT_NAME = "bookshelf"
SPIDER_MODULES = ["bookshelf.spiders"]
NEWSPIDER_MODULE = "bookshelf.spiders"

# As `scrapy startproject` writes it: accepted, and means the compliance stack's robots.txt.
ROBOTSTXT_OBEY = True

# The three lines that adopt the framework.
ADDONS = {"crawler.addon.Compliance": 0}
COMPLIANCE_CONTACT = "mailto:crawler-ops@bookshelf.example"
COMPLIANCE_PURGE_LOCATIONS = ["bookshelf.purge.ShelfTable"]

ITEM_PIPELINES = {"bookshelf.pipelines.ShelfPipeline": 300}
# The project's own copy of what it collects (relative to this project's folder).
BOOKSHELF_DB = "var/shelf.sqlite3"
