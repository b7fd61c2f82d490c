"""Downloader and spider middlewares: thin Scrapy adapters over crawler.compliance."""
