"""Scrapy extensions: thin adapters over crawler.compliance."""
