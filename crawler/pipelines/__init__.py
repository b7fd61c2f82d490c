"""Item pipelines: thin Scrapy adapters over crawler.compliance."""
