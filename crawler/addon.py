"""The Scrapy add-on that switches the compliance stack on.

In this project it is enabled in ``crawler/settings.py``. In another Scrapy
project, add ``ADDONS = {"crawler.addon.Compliance": 0}`` and set
``COMPLIANCE_CONTACT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

DOWNLOADER_MIDDLEWARES = {
    # Before everything else, so nothing is downloaded that robots.txt forbids
    # and every request (robots.txt fetches included) carries our identity.
    "crawler.middlewares.identity.IdentityMiddleware": 40,
    # Literal private addresses and localhost names: refused before robots.txt
    # is even fetched for them (crawler/middlewares/network.py).
    "crawler.middlewares.network.NetworkGate": 41,
    # Platform terms again (a policy may have changed while the request
    # waited) and the policy's pace for the host.
    "crawler.middlewares.terms.TermsMiddleware": 42,
    # Image URLs are refused before robots.txt is even consulted, and image
    # responses are cut off on their headers or first bytes.
    "crawler.middlewares.images.ImageDownloadGate": 45,
    # A host skipped for a Retry-After above COMPLIANCE_MAX_RETRY_AFTER:
    # refused before its robots.txt is even asked for again.
    "crawler.middlewares.courtesy.CourtesyGate": 48,
    "crawler.middlewares.robots.RobotsTxtMiddleware": 50,
    # TDMRep's well-known file, once per origin (only for train-ai crawls).
    "crawler.middlewares.tdmrep.TdmRepMiddleware": 55,
    # Reads X-Robots-Tag, meta robots, TDMRep, Content-Usage, Content-Signal.
    "crawler.middlewares.optouts.OptOutDownloaderMiddleware": 60,
    # Scrapy's decompression, with its DOWNLOAD_MAXSIZE cuts recorded as content.too-large.
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": None,
    "crawler.middlewares.bounds.BoundedHttpCompressionMiddleware": 590,
    # After HttpProxyMiddleware (750: the proxy is known) and before
    # RetryMiddleware sees a failure (process_exception runs from the
    # highest order down): the resolver's refusals become Decisions, not retries.
    "crawler.middlewares.network.ResolverGuard": 760,
    # Between the downloader and RetryMiddleware (550; process_response runs
    # from the highest order down): the request whose answer skipped its host
    # is refused, not retried. Pauses and back-off themselves are applied at
    # the transfer gate (crawler/middlewares/courtesy.py says why).
    "crawler.middlewares.courtesy.CourtesyRetryGuard": 560,
    # Last of all (Scrapy's own end at 900): every request is signed (Web Bot
    # Auth) as it leaves the chain for the downloader, after every header is set.
    "crawler.identity.middleware.RequestSigningMiddleware": 980,
}
#: Sizes that fit a text crawler (Scrapy's defaults are 1 GiB and 32 MiB).
#: Set with the add-on's priority: a project's settings.py may raise them.
#: DOWNLOAD_MAXSIZE also bounds the decompressed body (HttpCompressionMiddleware).
SIZE_LIMITS = {"DOWNLOAD_MAXSIZE": 8 * 1024 * 1024, "DOWNLOAD_WARNSIZE": 2 * 1024 * 1024}
#: Replaced by crawler.middlewares.robots (RFC 9309 semantics), whatever ROBOTSTXT_OBEY says.
STOCK_ROBOTS_MIDDLEWARE = "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"
SPIDER_MIDDLEWARES = {
    # Drops the items of pages that opted out of the crawl's purposes and the
    # links of nofollow pages. A subclass of DepthMiddleware that takes its
    # place (see its docstring: one spider-middleware layer fewer).
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "crawler.middlewares.optouts.OptOutSpiderMiddleware": 900,
}
ITEM_PIPELINES = {
    # Early: the project's own pipelines get items without images.
    "crawler.pipelines.images.ImageScrubPipeline": 100,
    # Last: whatever a pipeline added since is scrubbed again, right before
    # the store writes the item and the feed exports it.
    "crawler.pipelines.images.FinalImageScrubPipeline": 2_000_000_000,
    "crawler.pipelines.store.StorePipeline": 2_000_000_001,
}
EXTENSIONS = {
    "crawler.extensions.lifecycle.CrawlLifecycle": 0,
    # Before scheduling: a refused request (an image URL, from any spider,
    # start requests and redirect targets included) never enters the queue.
    "crawler.extensions.scheduling.SchedulingGate": 0,
    "crawler.extensions.policywatch.PolicyWatcher": 0,
    # Polls the notice registry, gates every transfer, records where the
    # crawl writes and applies purges to its own files when it stops.
    "crawler.extensions.notices.NoticeWatcher": 0,
    # Only with COMPLIANCE_DISTRIBUTED: heartbeats, requeueing a dead
    # worker's requests, and staying open while the cluster has work.
    "crawler.extensions.cluster.ClusterWorker": 0,
    # A live line of progress, on a terminal only (COMPLIANCE_PROGRESS);
    # after the lifecycle, whose close sets the finish reason it shows.
    "crawler.extensions.progress.CrawlProgress": 0,
    # Retention runs (at open and every COMPLIANCE_RETENTION_INTERVAL), the
    # erasure suppression list the store pipeline checks, feed manifests.
    "crawler.extensions.dataprotection.DataProtection": 0,
}


def distributed_settings(crawl_id: str, redis_url: str) -> dict[str, object]:
    """The scrapy-redis settings for one distributed crawl (every worker gets the same)."""
    from crawler.cluster import keys_for

    keys = keys_for(crawl_id)
    return {
        "SCHEDULER": "crawler.clusterqueue.ClusterScheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "crawler.clusterqueue.LeasedPriorityQueue",
        "SCHEDULER_QUEUE_KEY": keys["requests"],
        "SCHEDULER_DUPEFILTER_KEY": keys["dupefilter"],
        # Without it the first worker to finish clears the shared queue.
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_FLUSH_ON_START": False,
        "REDIS_URL": redis_url,
    }


class Compliance:
    def update_settings(self, settings: BaseSettings) -> None:
        from crawler.config import flag

        for name, components in (
            ("DOWNLOADER_MIDDLEWARES", DOWNLOADER_MIDDLEWARES),
            ("SPIDER_MIDDLEWARES", SPIDER_MIDDLEWARES),
            ("ITEM_PIPELINES", ITEM_PIPELINES),
            ("EXTENSIONS", EXTENSIONS),
        ):
            settings[name].update(components, priority="addon")
        # ROBOTSTXT_OBEY = True (Scrapy's project template sets it) means
        # "obey robots.txt": this stack does, so the stock middleware stays
        # off even if a project lists it, and the setting is left as it is.
        settings["DOWNLOADER_MIDDLEWARES"].set(STOCK_ROBOTS_MIDDLEWARE, None, priority="cmdline")
        for name, value in SIZE_LIMITS.items():
            settings.set(name, value, priority="addon")
        # A host's max_concurrency held on the asyncio reactor (see crawler.pacing).
        settings.set("DOWNLOADER", "crawler.pacing.SlotBoundDownloader", priority="addon")
        if settings.get("COMPLIANCE_CASSETTE"):
            # Replay a recorded site offline (crawler/cassettes.py).
            handler = "crawler.cassettes.CassetteDownloadHandler"
            settings["DOWNLOAD_HANDLERS"].update({"http": handler, "https": handler}, priority="addon")
        if flag(settings, "COMPLIANCE_DISTRIBUTED") and settings.get("COMPLIANCE_CRAWL_ID"):
            redis_url = str(settings.get("COMPLIANCE_REDIS_URL") or "redis://127.0.0.1:6379/0")
            for name, value in distributed_settings(str(settings.get("COMPLIANCE_CRAWL_ID")), redis_url).items():
                settings.set(name, value, priority="addon")
